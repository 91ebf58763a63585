import { execFileSync, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, baseEnv } from './cli-process.ts'

/**
 * Issue 13, item 1: the machine's own Node (20 on a fresh machine) must not
 * meet the TypeScript sources with a stack trace. npm scripts and npx run the
 * project's Node (the "node" dev dependency); the bin script run directly by
 * an old Node says what to do in one line.
 */
const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin'

function systemNode(): { path: string; version: string } {
  const path = execFileSync('sh', ['-c', 'command -v node'], { env: { PATH: SYSTEM_PATH }, encoding: 'utf8' }).trim()
  const version = execFileSync(path, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim()
  return { path, version }
}

function olderThan2218(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number)
  return major < 22 || (major === 22 && minor < 18)
}

describe('the machine Node and the project Node', () => {
  it('bin/taskrelay.js on the machine Node: one line saying what to do when it is too old, the CLI otherwise', () => {
    const node = systemNode()
    const res = spawnSync(node.path, [join(ROOT, 'bin/taskrelay.js'), '--help'], { cwd: ROOT, env: baseEnv(), encoding: 'utf8' })
    if (olderThan2218(node.version)) {
      expect(res.status).toBe(1)
      expect(res.stderr.trim().split('\n')).toHaveLength(1)
      expect(res.stderr).toContain(`needs Node.js 22.18 or newer, this is v${node.version}`)
      expect(res.stderr).toContain('npm run dev')
      expect(res.stderr).not.toMatch(/ERR_UNKNOWN_FILE_EXTENSION|\n\s+at /)
    } else {
      expect(res.status, res.stderr).toBe(0)
      expect(res.stdout).toContain('Usage: taskrelay')
    }
  })

  it('npm scripts run the project Node (the "node" dev dependency), whatever Node is first on PATH', () => {
    const res = spawnSync('npm', ['exec', '--', 'node', '-p', 'process.version'], {
      cwd: ROOT,
      env: { ...baseEnv(), PATH: SYSTEM_PATH },
      encoding: 'utf8',
    })
    expect(res.status, res.stderr).toBe(0)
    const version = res.stdout.trim().replace(/^v/, '')
    expect(olderThan2218(version)).toBe(false)
    expect(version.split('.')[0]).toBe(process.versions.node.split('.')[0])
  })
})
