import type pg from 'pg'
import type { Logger } from 'pino'

/**
 * One LISTEN connection per TaskRelay for waitFor(): the notification payload
 * is a comma-separated list of task ids that reached a final state.
 * Reconnects on its own; after a reconnect every waiter re-checks its row,
 * since notifications sent while disconnected are gone.
 */
export class TaskListener {
  readonly #pool: pg.Pool
  readonly #channel: string
  readonly #log: Logger
  readonly #waiters = new Map<string, Set<() => void>>()
  #client: pg.PoolClient | null = null
  #connecting: Promise<void> | null = null
  #closed = false

  constructor(pool: pg.Pool, channel: string, log: Logger) {
    this.#pool = pool
    this.#channel = channel
    this.#log = log
  }

  subscribe(id: string, onFinished: () => void): () => void {
    let set = this.#waiters.get(id)
    if (!set) this.#waiters.set(id, (set = new Set()))
    set.add(onFinished)
    return () => {
      set.delete(onFinished)
      if (set.size === 0) this.#waiters.delete(id)
    }
  }

  ready(): Promise<void> {
    if (this.#client) return Promise.resolve()
    this.#connecting ??= this.#connect().finally(() => (this.#connecting = null))
    return this.#connecting
  }

  async #connect(): Promise<void> {
    const client = await this.#pool.connect()
    client.on('notification', (msg) => {
      if (msg.channel !== this.#channel || !msg.payload) return
      for (const id of msg.payload.split(',')) for (const fn of this.#waiters.get(id) ?? []) fn()
    })
    client.on('error', (err) => {
      this.#log.warn({ err }, 'waitFor listener connection lost; reconnecting')
      client.release(err)
      this.#client = null
      if (this.#closed) return
      setTimeout(() => {
        this.ready().then(
          () => this.#recheckAll(),
          (e) => this.#log.error({ err: e }, 'waitFor listener could not reconnect'),
        )
      }, 500)
    })
    await client.query(`listen ${client.escapeIdentifier(this.#channel)}`)
    this.#client = client
  }

  #recheckAll() {
    for (const set of this.#waiters.values()) for (const fn of set) fn()
  }

  async close(): Promise<void> {
    this.#closed = true
    const client = this.#client
    this.#client = null
    if (client) {
      try {
        await client.query(`unlisten ${client.escapeIdentifier(this.#channel)}`)
      } finally {
        client.release()
      }
    }
  }
}
