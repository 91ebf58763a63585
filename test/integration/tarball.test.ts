import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { dirname, join, normalize } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { databaseUrl, redisUrl, uniqueSchema } from '../support/db.ts'
import { APP_TS, TSCONFIG_JSON } from '../support/tarball-app.ts'
import { ROOT, importedSpecifiers, installApp, packTarball, relativeLinks, type Packed } from '../support/tarball.ts'

// The package as users get it: `npm pack` (what `npm publish` uploads),
// installed into an app of its own with pg and zod at the lower bounds of
// the peer ranges. One pack and one install per run: they are the slow part.
let packed: Packed
let app: string
const schema = uniqueSchema('tarball')

interface Manifest {
  dependencies: Record<string, string>
  peerDependencies: Record<string, string>
  devDependencies?: Record<string, string>
}
const manifest = (): Manifest => JSON.parse(readFileSync(join(packed.unpacked, 'package.json'), 'utf8'))

/** The lowest version a range admits: its first version (`^3.25.0 || ^4.0.0` → 3.25.0). */
function lowerBound(range: string): string {
  return /\d+\.\d+\.\d+/.exec(range)![0]
}

const repoManifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Required<Manifest>

beforeAll(() => {
  packed = packTarball()
  const { peerDependencies: peers, dependencies: deps } = manifest()
  app = installApp(
    packed.dir,
    packed.tarball,
    [
      `pg@${lowerBound(peers.pg!)}`,
      `zod@${lowerBound(peers.zod!)}`,
      // The app uses kysely itself, in the range taskrelay depends on (one copy).
      `kysely@${deps.kysely}`,
      // A TypeScript app's types for Node and for the pg it installed.
      `@types/node@${repoManifest.devDependencies['@types/node']}`,
      `@types/pg@~${lowerBound(peers.pg!)}`,
    ],
    { 'app.ts': APP_TS, 'tsconfig.json': TSCONFIG_JSON },
  )
}, 600_000)

afterAll(async () => {
  if (packed) rmSync(packed.dir, { recursive: true, force: true })
  const pool = new pg.Pool({ connectionString: databaseUrl() })
  await pool.query(`drop schema if exists "${schema}" cascade`)
  await pool.end()
})

/**
 * The checkout's development files, which the README links for contributors
 * and the package leaves out on purpose: sources (it ships dist/), tests,
 * benchmarks, and the compose file that builds an image from the sources.
 */
const REPOSITORY_ONLY = /^(src|test|bench|\.ci)(\/|$)|^(docker-compose\.yml|Dockerfile)$/

describe('the packed tarball', () => {
  it('ships the license, docs, examples, migrations and compiled code, and no sources or tests', () => {
    for (const file of ['LICENSE', 'README.md', 'package.json', 'bin/taskrelay.js', 'dist/index.js', 'dist/index.d.ts', 'dist/testing.js', 'dist/cli/main.js', 'dist/db/sql/task-claim-batch.sql', 'docs/scheduling.md', 'examples/tasks.ts', 'migrations/0001_init.sql']) {
      expect(packed.files, file).toContain(file)
    }
    expect(readFileSync(join(packed.unpacked, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) the taskrelay authors\n/)
    expect(packed.files.filter((f) => /^(src|test|bench)\//.test(f))).toEqual([])
  })

  it('resolves every relative link of the shipped README and docs inside the package', () => {
    const markdown = packed.files.filter((f) => f.endsWith('.md') && !f.startsWith('dist/'))
    const broken = markdown.flatMap((file) =>
      relativeLinks(readFileSync(join(packed.unpacked, file), 'utf8'))
        .map((link) => normalize(join(dirname(file), decodeURIComponent(link))).replace(/\/$/, ''))
        .filter((target) => !REPOSITORY_ONLY.test(target))
        .filter((target) => !packed.files.some((f) => f === target || f.startsWith(target + '/')))
        .map((target) => `${file} → ${target}`),
    )
    expect(broken).toEqual([])
  })

  it('ships examples that import taskrelay by name, never files outside the package', () => {
    const { dependencies, peerDependencies } = manifest()
    const packages = new Set(['taskrelay', ...Object.keys(dependencies), ...Object.keys(peerDependencies)])
    const builtins = new Set(builtinModules)
    const bad = packed.files
      .filter((f) => f.startsWith('examples/') && f.endsWith('.ts'))
      .flatMap((file) =>
        importedSpecifiers(readFileSync(join(packed.unpacked, file), 'utf8'))
          .filter((spec) => {
            if (spec.startsWith('.')) return !packed.files.includes(normalize(join(dirname(file), spec)))
            if (spec.startsWith('node:') || builtins.has(spec)) return false
            const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!
            return !packages.has(name)
          })
          .map((spec) => `${file} imports ${spec}`),
      )
    expect(bad).toEqual([])
  })

  it('ships source maps whose sources resolve: shipped files or embedded content', () => {
    const unresolved: string[] = []
    for (const js of packed.files.filter((f) => f.endsWith('.js'))) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(packed.unpacked, js), 'utf8'))?.[1]
      if (!url) continue
      const mapFile = normalize(join(dirname(js), url))
      if (!packed.files.includes(mapFile)) {
        unresolved.push(`${js} → ${mapFile} (no such file)`)
        continue
      }
      const map = JSON.parse(readFileSync(join(packed.unpacked, mapFile), 'utf8')) as { sources: string[]; sourcesContent?: Array<string | null> }
      map.sources.forEach((source, i) => {
        const shipped = packed.files.includes(normalize(join(dirname(mapFile), source)))
        if (!shipped && typeof map.sourcesContent?.[i] !== 'string') unresolved.push(`${mapFile} → ${source}`)
      })
    }
    expect(unresolved.slice(0, 5), `${unresolved.length} unresolved`).toEqual([])
  })

  it('runs in an app of its own: pg and zod at the lower bounds, migrate, enqueue in a Kysely transaction, Worker, Relay and Sweeper in process', () => {
    const version = (pkg: string) => (JSON.parse(readFileSync(join(app, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version
    const { peerDependencies: peers } = manifest()
    expect({ pg: version('pg'), zod: version('zod') }).toEqual({ pg: lowerBound(peers.pg!), zod: lowerBound(peers.zod!) })
    // One copy of each peer: the app's own, which taskrelay must accept.
    for (const peer of ['pg', 'zod']) expect(existsSync(join(app, 'node_modules/taskrelay/node_modules', peer)), `a nested ${peer}`).toBe(false)

    const child = spawnSync(process.execPath, ['app.ts'], {
      cwd: app,
      env: { ...process.env, DATABASE_URL: databaseUrl(), REDIS_URL: redisUrl(), SCHEMA: schema, KEY_PREFIX: `tarball${randomBytes(4).toString('hex')}` },
      encoding: 'utf8',
      timeout: 60_000,
    })
    expect(child.status, `${child.stdout}\n${child.stderr}`).toBe(0)
    const out = JSON.parse(child.stdout.trim().split('\n').at(-1)!)
    const shipped = packed.files.filter((f) => /^migrations\/\d{4}_.*\.sql$/.test(f))
    expect(out).toEqual({ applied: shipped.length, state: 'succeeded', greeting: 'hello tarball', payloads: [{ who: 'tarball' }] })
  })

  it('runs the installed taskrelay command (npx taskrelay) against the app\'s peers', () => {
    const cli = spawnSync(process.execPath, [join(app, 'node_modules/.bin/taskrelay'), 'migrate'], {
      cwd: app,
      env: { ...process.env, DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: schema },
      encoding: 'utf8',
      timeout: 30_000,
    })
    expect(cli.status, `${cli.stdout}\n${cli.stderr}`).toBe(0)
  })

  it('type-checks the app against the shipped declarations: a typed result and payload', () => {
    const tsc = join(ROOT, 'node_modules/.bin/tsc')
    let output = ''
    try {
      execFileSync(tsc, ['-p', 'tsconfig.json'], { cwd: app, encoding: 'utf8', stdio: 'pipe' })
    } catch (err) {
      output = `${(err as { stdout?: string }).stdout ?? ''}${(err as { stderr?: string }).stderr ?? ''}`
    }
    expect(output).toBe('')
  })
})
