import net from 'node:net'
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, createWriteStream, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'

/**
 * Real redis-server processes for resilience tests: a primary, replicas and
 * sentinels on free loopback ports, without persistence, that a test can
 * SIGKILL, SIGSTOP and restart (empty) on the same port.
 *
 * There is no fallback and no skip: when the redis-server binary is missing
 * the test fails with a message that says what to install.
 */

const live = new Set<ChildProcess>()
let exitHookInstalled = false

/** Kill every server this process started, even when the test crashes. */
function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const child of live) {
      try {
        if (child.pid) process.kill(child.pid, 'SIGKILL')
      } catch {
        /* already gone */
      }
    }
  })
}

let binaryChecked: string | null = null

/** The redis-server binary, or a clear error. */
export function redisServerBinary(): string {
  if (binaryChecked) return binaryChecked
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server'
  let version: string
  try {
    version = execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 5000 })
  } catch (err) {
    throw new Error(
      `The resilience tests need the redis-server binary (>= 7.0, for BLMPOP and Sentinel) and could not run "${bin} --version": ` +
        `${(err as Error).message}. Install it (apt-get install redis-server, brew install redis) or set REDIS_SERVER_BIN.`,
    )
  }
  const m = /v=(\d+)\.(\d+)/.exec(version)
  if (!m || Number(m[1]) < 7) throw new Error(`redis-server >= 7.0 is required for the resilience tests, found: ${version.trim()}`)
  binaryChecked = bin
  return bin
}

/** A port nobody listens on right now (the kernel picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))))
    })
  })
}

async function sleep(ms: number) {
  await new Promise((r) => setTimeout(r, ms))
}

/** Send one command to a port and read the reply (no client library state). */
export async function redisCommand(port: number, args: string[], timeoutMs = 2000): Promise<unknown> {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    enableReadyCheck: false,
    enableOfflineQueue: false,
  })
  client.on('error', () => {})
  try {
    await client.connect()
    return await client.call(args[0]!, ...args.slice(1))
  } finally {
    client.disconnect()
  }
}

export interface RedisServerOptions {
  /** default: a free port */
  port?: number
  /** start as a replica of this port on 127.0.0.1 */
  replicaOf?: number
  /** extra config directives, e.g. ['--maxmemory', '64mb'] */
  args?: string[]
  /** a label for logs */
  name?: string
}

/**
 * One redis-server (or sentinel) process. `kill()` SIGKILLs it by pid,
 * `restart()` starts a fresh process on the same port (empty: no persistence),
 * `pause()`/`resume()` SIGSTOP/SIGCONT it.
 */
export class RedisServer {
  readonly name: string
  readonly port: number
  readonly dir: string
  readonly logFile: string
  readonly #argv: () => string[]
  #child: ChildProcess | null = null
  #exited: Promise<void> = Promise.resolve()
  #paused = false

  constructor(name: string, port: number, dir: string, argv: () => string[]) {
    this.name = name
    this.port = port
    this.dir = dir
    this.logFile = join(dir, `${name}.log`)
    this.#argv = argv
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  get pid(): number | null {
    return this.#child?.pid ?? null
  }

  get running(): boolean {
    return this.#child !== null
  }

  async start(timeoutMs = 10_000): Promise<void> {
    if (this.#child) throw new Error(`${this.name} already runs (pid ${this.#child.pid})`)
    installExitHook()
    const child = spawn(redisServerBinary(), this.#argv(), { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] })
    const log = createWriteStream(this.logFile, { flags: 'a' })
    child.stdout!.pipe(log, { end: false })
    child.stderr!.pipe(log, { end: false })
    live.add(child)
    this.#child = child
    let exitInfo: string | null = null
    this.#exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        exitInfo = `code ${code} signal ${signal}`
        live.delete(child)
        if (this.#child === child) this.#child = null
        resolve()
      })
    })
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (exitInfo) throw new Error(`${this.name} exited at start (${exitInfo}); log ${this.logFile}:\n${this.logTail()}`)
      try {
        if ((await redisCommand(this.port, ['PING'], 500)) === 'PONG') return
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) {
        await this.kill()
        throw new Error(`${this.name} did not answer PING on port ${this.port} within ${timeoutMs} ms; log:\n${this.logTail()}`)
      }
      await sleep(20)
    }
  }

  /** SIGKILL by pid and wait until the process is gone. */
  async kill(): Promise<void> {
    const child = this.#child
    if (!child?.pid) return
    try {
      process.kill(child.pid, 'SIGKILL')
    } catch {
      /* already gone */
    }
    await this.#exited
    this.#paused = false
  }

  /** SIGSTOP: the process keeps its sockets but answers nothing. */
  pause(): void {
    if (!this.#child?.pid) throw new Error(`${this.name} is not running`)
    process.kill(this.#child.pid, 'SIGSTOP')
    this.#paused = true
  }

  resume(): void {
    if (this.#child?.pid && this.#paused) process.kill(this.#child.pid, 'SIGCONT')
    this.#paused = false
  }

  /** A new process on the same port: empty, since nothing persists. */
  async restart(timeoutMs = 10_000): Promise<void> {
    await this.kill()
    await this.start(timeoutMs)
  }

  logTail(lines = 40): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n')
    } catch {
      return '(no log)'
    }
  }
}

function makeDir(): string {
  return mkdtempSync(join(tmpdir(), 'tr-redis-'))
}

function serverArgs(port: number, options: RedisServerOptions): string[] {
  return [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--protected-mode', 'no',
    '--save', '',
    '--appendonly', 'no',
    '--daemonize', 'no',
    '--maxmemory-policy', 'noeviction',
    ...(options.replicaOf ? ['--replicaof', '127.0.0.1', String(options.replicaOf)] : []),
    ...(options.args ?? []),
  ]
}

/** Start a redis-server without persistence on a free (or the given) port. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  redisServerBinary()
  // Another process may grab a "free" port before we bind it: try a few.
  for (let tries = 0; ; tries++) {
    const port = options.port ?? (await freePort())
    const dir = makeDir()
    const server = new RedisServer(options.name ?? `redis-${port}`, port, dir, () => serverArgs(port, options))
    try {
      await server.start()
      return server
    } catch (err) {
      if (options.port || tries >= 3) throw err
    }
  }
}

export interface SentinelOptions {
  masterName?: string
  masterPort: number
  quorum?: number
  downAfterMs?: number
  failoverTimeoutMs?: number
  name?: string
}

/** Start one sentinel (`redis-server <conf> --sentinel`) with a generated, writable config. */
export async function startSentinel(options: SentinelOptions): Promise<RedisServer> {
  redisServerBinary()
  const masterName = options.masterName ?? 'mymaster'
  for (let tries = 0; ; tries++) {
    const port = await freePort()
    const dir = makeDir()
    const conf = join(dir, 'sentinel.conf')
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        'protected-mode no',
        'daemonize no',
        `dir ${dir}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${options.masterPort} ${options.quorum ?? 2}`,
        `sentinel down-after-milliseconds ${masterName} ${options.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${masterName} ${options.failoverTimeoutMs ?? 3000}`,
        `sentinel parallel-syncs ${masterName} 1`,
        '',
      ].join('\n'),
    )
    // The sentinel rewrites its config (it learns replicas, peers, epochs): a restart reads that back.
    const server = new RedisServer(options.name ?? `sentinel-${port}`, port, dir, () => [conf, '--sentinel'])
    try {
      await server.start()
      return server
    } catch (err) {
      if (tries >= 3) throw err
    }
  }
}

export interface SentinelSet {
  masterName: string
  primary: RedisServer
  replicas: RedisServer[]
  sentinels: RedisServer[]
  /** redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,.../mymaster */
  url: string
  /** every server, for cleanup */
  all(): RedisServer[]
  stop(): Promise<void>
}

/**
 * A primary, `replicas` replicas and `sentinels` sentinels, waiting until the
 * replicas are in sync and every sentinel knows the replicas and its peers
 * (otherwise a failover cannot reach quorum or has no one to promote).
 */
export async function startSentinelSet(
  options: { replicas?: number; sentinels?: number; masterName?: string; downAfterMs?: number; failoverTimeoutMs?: number } = {},
): Promise<SentinelSet> {
  const masterName = options.masterName ?? 'mymaster'
  const started: RedisServer[] = []
  try {
    const primary = await startRedisServer({ name: 'primary' })
    started.push(primary)
    const replicas: RedisServer[] = []
    for (let i = 0; i < (options.replicas ?? 1); i++) {
      const r = await startRedisServer({ name: `replica${i + 1}`, replicaOf: primary.port })
      started.push(r)
      replicas.push(r)
    }
    for (const r of replicas) {
      await waitFor(`${r.name} in sync with the primary`, async () => {
        const info = String(await redisCommand(r.port, ['INFO', 'replication']))
        return /master_link_status:up/.test(info)
      })
    }
    const sentinels: RedisServer[] = []
    const count = options.sentinels ?? 3
    for (let i = 0; i < count; i++) {
      const s = await startSentinel({
        masterName,
        masterPort: primary.port,
        quorum: Math.floor(count / 2) + 1,
        downAfterMs: options.downAfterMs ?? 1000,
        failoverTimeoutMs: options.failoverTimeoutMs ?? 3000,
        name: `sentinel${i + 1}`,
      })
      started.push(s)
      sentinels.push(s)
    }
    for (const s of sentinels) {
      await waitFor(`${s.name} to know ${replicas.length} replica(s) and ${count - 1} peer sentinel(s)`, async () => {
        const reps = (await redisCommand(s.port, ['SENTINEL', 'REPLICAS', masterName])) as string[][]
        const peers = (await redisCommand(s.port, ['SENTINEL', 'SENTINELS', masterName])) as string[][]
        const healthy = reps.filter((r) => {
          const flags = r[r.indexOf('flags') + 1] ?? ''
          return !/s_down|o_down|disconnected/.test(flags)
        })
        return healthy.length >= replicas.length && peers.length >= count - 1
      }, 30_000)
    }
    const url = `redis+sentinel://${sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/${masterName}`
    const all = () => [...sentinels, primary, ...replicas]
    return {
      masterName,
      primary,
      replicas,
      sentinels,
      url,
      all,
      async stop() {
        await stopServers(all())
      },
    }
  } catch (err) {
    await stopServers(started)
    throw err
  }
}

/** Which port the sentinels currently name as the primary. */
export async function currentPrimaryPort(set: SentinelSet): Promise<number | null> {
  for (const s of set.sentinels) {
    if (!s.running) continue
    try {
      const reply = (await redisCommand(s.port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', set.masterName])) as string[] | null
      if (reply) return Number(reply[1])
    } catch {
      /* try the next sentinel */
    }
  }
  return null
}

/** Wait until every running sentinel sees the replica on `port` as healthy and linked to its primary. */
export async function waitSentinelsSeeReplica(set: SentinelSet, port: number, timeoutMs = 30_000): Promise<void> {
  for (const s of set.sentinels.filter((x) => x.running)) {
    await waitFor(`${s.name} to see the replica on port ${port} as healthy`, async () => {
      const reps = (await redisCommand(s.port, ['SENTINEL', 'REPLICAS', set.masterName])) as string[][]
      return reps.some((r) => {
        const field = (name: string) => r[r.indexOf(name) + 1]
        return field('port') === String(port) && field('flags') === 'slave' && field('master-link-status') === 'ok'
      })
    }, timeoutMs)
  }
}

/** SIGKILL every server given, by pid, and remove their directories. */
export async function stopServers(servers: Iterable<RedisServer>): Promise<void> {
  for (const s of servers) {
    s.resume()
    await s.kill()
    rmSync(s.dir, { recursive: true, force: true })
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      if (await check()) return
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    await sleep(50)
  }
}
