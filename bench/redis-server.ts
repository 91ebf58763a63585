/**
 * A redis-server of the scenario's own for S7, on a free loopback port,
 * without persistence, that the bench SIGKILLs by pid and restarts empty on
 * the same port. The same approach as test/support/redis-servers.ts (which
 * the bench does not import: test code stays out of the bench).
 */
import net from 'node:net'
import { spawn, type ChildProcess } from 'node:child_process'
import { Redis } from 'ioredis'
import { sleep } from './common.ts'

const BIN = process.env.REDIS_SERVER_BIN ?? 'redis-server'
const live = new Set<ChildProcess>()
// A crashed or interrupted run must not leave its redis-server behind.
process.on('exit', () => {
  for (const c of live) {
    try {
      if (c.pid) process.kill(c.pid, 'SIGKILL')
    } catch {
      /* already gone */
    }
  }
})

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))))
    })
  })
}

async function ping(port: number): Promise<boolean> {
  const c = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500, enableOfflineQueue: false })
  c.on('error', () => {})
  try {
    await c.connect()
    return (await c.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    c.disconnect()
  }
}

export class BenchRedis {
  readonly port: number
  #child: ChildProcess | null = null
  #exited: Promise<void> = Promise.resolve()

  private constructor(port: number) {
    this.port = port
  }

  static async start(): Promise<BenchRedis> {
    const r = new BenchRedis(await freePort())
    await r.start()
    return r
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start(timeoutMs = 10_000): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--maxmemory-policy', 'noeviction']
    const child = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let failed: string | null = null
    child.once('error', (err) => (failed = `${BIN}: ${err.message} (install redis-server or set REDIS_SERVER_BIN)`))
    this.#exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        failed ??= `redis-server exited (code ${code}, signal ${signal})`
        live.delete(child)
        resolve()
      }),
    )
    live.add(child)
    this.#child = child
    const deadline = Date.now() + timeoutMs
    while (!(await ping(this.port))) {
      if (failed) throw new Error(failed)
      if (Date.now() > deadline) {
        await this.kill()
        throw new Error(`redis-server on port ${this.port} did not answer PING within ${timeoutMs} ms`)
      }
      await sleep(20)
    }
  }

  /** SIGKILL by pid: no shutdown, everything in memory is gone. */
  async kill(): Promise<void> {
    const pid = this.#child?.pid
    this.#child = null
    if (!pid) return
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      /* already gone */
    }
    await this.#exited
  }
}
