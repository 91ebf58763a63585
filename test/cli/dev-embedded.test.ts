import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ROOT, baseEnv } from './cli-process.ts'

/**
 * Issue 17 item 2: `taskrelay dev` on a machine with no Postgres and no Redis.
 * The real CLI runs in an empty network namespace (`unshare -n`, loopback
 * only), so nothing answers on 5432 or 6379; other commands join that
 * namespace with nsenter. Needs root (unshare, nsenter), as on CI.
 */
const BIN = join(ROOT, 'bin/taskrelay.js')
const canUnshare = spawnSync('unshare', ['-n', 'true']).status === 0
// Nothing from the parent may point dev at a server: it must find none and start its own.
const ENV = baseEnv({ DATABASE_URL: undefined, REDIS_URL: undefined, TASKRELAY_LOG_FORMAT: 'json' })
const EMBEDDED_LINE = /^no Postgres on 127\.0\.0\.1:5432 and no DATABASE_URL: using an embedded Postgres in \.taskrelay\/postgres$/

let project: string
const running: ChildProcess[] = []

beforeAll(() => {
  project = mkdtempSync(join(tmpdir(), 'taskrelay-dev-embedded-'))
  chmodSync(project, 0o755) // as root, postgres runs as the postgres user and must reach its data directory
})
afterEach(async () => {
  const killed = running.splice(0).filter((c) => c.exitCode === null)
  for (const c of killed) c.kill('SIGKILL')
  await Promise.all(killed.map((c) => new Promise((r) => c.once('exit', r))))
  // A dev killed above cannot stop its server (own session): do it here, by the pid postgres wrote.
  const pidFile = join(project, '.taskrelay/postgres/postmaster.pid')
  if (existsSync(pidFile)) spawnSync('kill', ['-QUIT', readFileSync(pidFile, 'utf8').split('\n')[0]!])
})
afterAll(() => {
  rmSync(project, { recursive: true, force: true })
})

interface Dev {
  child: ChildProcess
  logs: Array<Record<string, unknown>>
  waitFor(msg: RegExp | string, timeoutMs?: number): Promise<Record<string, unknown>>
  exited: Promise<number | null>
}

/** `taskrelay dev` in a fresh network namespace, its cwd the project. unshare and sh exec, so the pid is node's. */
function startDev(): Dev {
  // detached: a process group of its own, as a shell gives a foreground job, so a "Ctrl-C" can reach the whole group.
  const child = spawn('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, BIN, 'dev'], {
    cwd: project,
    env: ENV,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  running.push(child)
  const logs: Array<Record<string, unknown>> = []
  let out = ''
  let err = ''
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
    const lines = out.split('\n')
    out = lines.pop()!
    for (const l of lines) if (l.startsWith('{')) logs.push(JSON.parse(l) as Record<string, unknown>)
  })
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const matches = (msg: RegExp | string) => (l: Record<string, unknown>) => (typeof msg === 'string' ? l.msg === msg : msg.test(String(l.msg)))
  const waitFor = async (msg: RegExp | string, timeoutMs = 30_000) => {
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      const found = logs.find(matches(msg))
      if (found) return found
      if (child.exitCode !== null) break
    }
    throw new Error(`dev did not log ${msg} (exit ${child.exitCode})\nlogs: ${logs.map((l) => l.msg).join('\n')}\nstderr: ${err}`)
  }
  return { child, logs, waitFor, exited }
}

/** Another taskrelay command inside dev's network namespace. */
function inNamespace(dev: Dev, databaseUrl: string, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('nsenter', [`--net=/proc/${dev.child.pid}/ns/net`, process.execPath, BIN, ...args], {
    cwd: project,
    env: { ...ENV, DATABASE_URL: databaseUrl },
    encoding: 'utf8',
    timeout: 30_000,
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** The task's state once it is `want` or the time is up; with its last error, if any, to show why. */
async function stateOf(dev: Dev, url: string, id: string, want: string, timeoutMs = 30_000): Promise<string> {
  let task = { state: '', lastError: null as unknown }
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline && task.state !== want; await new Promise((r) => setTimeout(r, 250))) {
    const r = inNamespace(dev, url, 'status', id, '--json')
    expect(r.code, r.stderr).toBe(0)
    task = JSON.parse(r.stdout) as typeof task
  }
  return task.lastError ? `${task.state}: ${JSON.stringify(task.lastError)}` : task.state
}

/**
 * SIGTERM to dev, or SIGINT to its whole process group as a terminal's Ctrl-C
 * sends it; then: exit 0, no warning but Redis's, and postgres stopped
 * (it removes its pid file on a clean shutdown).
 */
async function stopCleanly(dev: Dev, how: 'SIGTERM' | 'ctrl-c'): Promise<void> {
  if (how === 'ctrl-c') process.kill(-dev.child.pid!, 'SIGINT')
  else dev.child.kill('SIGTERM')
  expect(await dev.exited).toBe(0)
  expect(dev.logs.filter((l) => Number(l.level) >= 40 && !/redis/i.test(`${l.msg} ${JSON.stringify(l.err ?? '')}`))).toEqual([])
  expect(dev.logs.at(-1)?.msg).toBe('stopped')
  expect(existsSync(join(project, '.taskrelay/postgres/postmaster.pid'))).toBe(false)
}

describe.skipIf(!canUnshare)('taskrelay dev with nothing running', () => {
  let taskId = ''

  it('starts an embedded Postgres, says so in one line, runs an example task to succeeded, and stops it', async () => {
    const dev = startDev()
    const line = await dev.waitFor(EMBEDDED_LINE, 60_000)
    expect(line).toMatchObject({ dataDir: '.taskrelay/postgres', created: true, database: `postgres://postgres@127.0.0.1:${line.port}/postgres` })
    const ready = await dev.waitFor('dev ready: enqueue a task from another terminal; Ctrl-C stops')
    expect(dev.logs.filter((l) => EMBEDDED_LINE.test(String(l.msg)))).toHaveLength(1)
    const url = String(line.database)
    expect(ready.try).toContain(`DATABASE_URL=${url} taskrelay enqueue`)

    const enq = inNamespace(dev, url, 'enqueue', 'email.welcome', '{"userId":1,"email":"ada@example.com"}', '--json')
    expect(enq.code, enq.stderr).toBe(0)
    taskId = String((JSON.parse(enq.stdout) as { id: string }).id)
    // Redis is down in the namespace: this needs the worker's Postgres lane.
    expect(await stateOf(dev, url, taskId, 'succeeded')).toBe('succeeded')

    await stopCleanly(dev, 'SIGTERM')
    expect(readFileSync(join(project, '.taskrelay/.gitignore'), 'utf8')).toContain('*')
  }, 90_000)

  it('reuses the data directory on the next start: no initdb, the task is still there', async () => {
    expect(taskId).not.toBe('')
    const version = readFileSync(join(project, '.taskrelay/postgres/PG_VERSION'), 'utf8')
    const dev = startDev()
    const line = await dev.waitFor(EMBEDDED_LINE, 60_000)
    expect(line.created).toBe(false)
    await dev.waitFor('taskrelay ready')
    expect(await stateOf(dev, String(line.database), taskId, 'succeeded', 5_000)).toBe('succeeded')
    expect(readFileSync(join(project, '.taskrelay/postgres/PG_VERSION'), 'utf8')).toBe(version)
    // Ctrl-C: postgres runs in a session of its own, so it outlives the services' stop instead of dropping their connections.
    await stopCleanly(dev, 'ctrl-c')
  }, 90_000)

  it('uses no embedded Postgres when DATABASE_URL is given, nor for production commands', () => {
    const other = mkdtempSync(join(tmpdir(), 'taskrelay-no-embedded-'))
    try {
      const run = (env: NodeJS.ProcessEnv, ...args: string[]) =>
        spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, BIN, ...args], {
          cwd: other,
          env,
          encoding: 'utf8',
          timeout: 30_000,
        })
      const given = run({ ...ENV, DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres' }, 'dev')
      expect(given.status).not.toBe(0)
      expect(given.stdout + given.stderr).not.toMatch(/embedded/)
      const migrate = run(ENV, 'migrate')
      expect(migrate.status).toBe(2)
      expect(migrate.stderr).toMatch(/DATABASE_URL/)
      expect(existsSync(join(other, '.taskrelay'))).toBe(false)
    } finally {
      rmSync(other, { recursive: true, force: true })
    }
  }, 60_000)
})
