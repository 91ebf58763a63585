import { Worker as Thread } from 'node:worker_threads'
import type pg from 'pg'
import type { Logger } from 'pino'
import type { LeaseGuardData } from './lease-guard-thread.ts'

/**
 * Keeps a worker's leases while its event loop is blocked. Heartbeats are
 * timers on the handlers' own thread: synchronous code that runs longer than
 * leaseMs − heartbeatMs would let the leases expire while the code still
 * runs, and the sweeper would hand the task to another worker (two runs at
 * once). A thread of its own, with its own connection, watches the loop's
 * pulse and renews the leases whenever the loop misses a heartbeat. It costs
 * the hot path nothing: one timer writes a number into shared memory.
 */
export class LeaseGuard {
  readonly #data: Omit<LeaseGuardData, 'shared'>
  readonly #log: Logger
  #clock: BigInt64Array | null = null
  #thread: Thread | null = null
  #pulse: NodeJS.Timeout | null = null

  constructor(data: Omit<LeaseGuardData, 'shared'>, log: Logger) {
    this.#data = data
    this.#log = log
  }

  /**
   * What a thread can connect with: pg.Pool's own settings when they can be
   * copied to it, else null (a password function, say) and no guard.
   */
  static connectionOf(pool: pg.Pool | null): pg.ClientConfig | null {
    if (!pool) return null
    const base = (pool as unknown as { options: pg.PoolConfig }).options
    const keys = ['connectionString', 'host', 'port', 'user', 'database', 'ssl', 'options', 'client_encoding', 'keepAlive'] as const
    const config: Record<string, unknown> = {}
    for (const key of keys) if (base[key] !== undefined) config[key] = base[key]
    // pg-pool hides the password from enumeration; a function cannot cross to a thread.
    if (typeof base.password === 'function') return null
    if (base.password !== undefined) config.password = base.password
    try {
      return structuredClone(config) as pg.ClientConfig
    } catch {
      return null
    }
  }

  start(): void {
    if (this.#thread) return
    const shared = new SharedArrayBuffer(16)
    const clock = (this.#clock = new BigInt64Array(shared))
    const beat = () => Atomics.store(clock, 0, BigInt(Date.now()))
    beat()
    // A pulse four times per heartbeat: the thread acts only once a whole heartbeat is missed.
    this.#pulse = setInterval(beat, Math.max(10, Math.floor(this.#data.heartbeatMs / 4)))
    this.#pulse.unref()
    // Built output runs .js; the sources run under Node's type stripping.
    const file = import.meta.url.endsWith('.ts') ? './lease-guard-thread.ts' : './lease-guard-thread.js'
    const thread = new Thread(new URL(file, import.meta.url), { workerData: { ...this.#data, shared } satisfies LeaseGuardData })
    thread.unref()
    thread.on('message', (m: { type: string; count?: number; blockedMs: number; message?: string }) => {
      if (m.type === 'renewed') {
        this.#log.warn(
          { blockedMs: m.blockedMs, renewed: m.count },
          'the event loop was blocked past a heartbeat (a handler running synchronous code); the lease guard renewed the leases',
        )
      } else {
        this.#log.error({ blockedMs: m.blockedMs, err: m.message }, 'the lease guard could not renew leases while the event loop was blocked')
      }
    })
    thread.on('error', (err) => this.#log.error({ err }, 'lease guard thread failed; leases depend on the event loop alone'))
    this.#thread = thread
  }

  /** When the guard last renewed this worker's leases (epoch ms; 0 if never). */
  get lastRenewedAt(): number {
    return this.#clock ? Number(Atomics.load(this.#clock, 1)) : 0
  }

  async stop(): Promise<void> {
    if (this.#pulse) clearInterval(this.#pulse)
    this.#pulse = null
    const thread = this.#thread
    this.#thread = null
    await thread?.terminate()
  }
}
