import { execFileSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * The package as `npm publish` would ship it, and an app that installs it
 * from the tarball, as a user's app installs it from the registry.
 */
export const ROOT = new URL('../../', import.meta.url).pathname

/** Top-level entries the pack never needs: a copy without them builds and packs like a clean checkout. */
const NOT_COPIED = new Set(['node_modules', 'dist', '.git', 'test', 'bench'])

export interface Packed {
  /** Where this run's files live (removed by the caller). */
  dir: string
  tarball: string
  /** The tarball's entries, relative to its package/ folder. */
  files: string[]
  /** The tarball unpacked, to read the shipped files. */
  unpacked: string
}

function run(cmd: string, args: string[], cwd: string, timeout = 240_000): string {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: 'pipe', timeout })
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string }
    throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`)
  }
}

/**
 * `npm pack` (with its prepack build) in a copy of the working tree, so the
 * build never replaces the dist/ that other tests of this run import.
 */
export function packTarball(): Packed {
  const dir = mkdtempSync(join(tmpdir(), 'taskrelay-pack-'))
  const source = join(dir, 'source')
  cpSync(ROOT, source, { recursive: true, filter: (src) => !NOT_COPIED.has(src.slice(ROOT.length).split('/')[0]!) })
  // The build's TypeScript compiler.
  symlinkSync(join(ROOT, 'node_modules'), join(source, 'node_modules'), 'dir')
  run('npm', ['pack', '--silent', '--pack-destination', dir], source)
  const tarball = join(dir, readdirSync(dir).find((f) => f.endsWith('.tgz'))!)
  const unpacked = join(dir, 'unpacked')
  mkdirSync(unpacked)
  run('tar', ['-xzf', tarball, '-C', unpacked], dir)
  const files = run('tar', ['-tzf', tarball], dir)
    .split('\n')
    .filter((f) => f && !f.endsWith('/'))
    .map((f) => f.replace(/^package\//, ''))
  return { dir, tarball, files, unpacked: join(unpacked, 'package') }
}

/**
 * A fresh app directory with the tarball and `packages` installed in ONE
 * npm install (the slow part of the test), from the cache when it can.
 */
export function installApp(dir: string, tarball: string, packages: string[], sources: Record<string, string>): string {
  const app = join(dir, 'app')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'taskrelay-tarball-app', private: true, type: 'module' }, null, 2))
  for (const [name, text] of Object.entries(sources)) writeFileSync(join(app, name), text)
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball, ...packages], app)
  return app
}

/** Relative links ([text](path)) of a markdown file, without anchors; web and mail links left out. */
export function relativeLinks(markdown: string): string[] {
  return [...markdown.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
    .map((m) => m[1]!.split('#')[0]!)
    .filter((target) => target !== '' && !/^[a-z][a-z0-9+.-]*:/i.test(target))
}

/** Module specifiers a source file imports (static and dynamic imports, re-exports). */
export function importedSpecifiers(source: string): string[] {
  return [...source.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g)].map((m) => m[1]!)
}
