import pg from 'pg'
import type { Logger } from 'pino'

/**
 * A dedicated LISTEN connection that reconnects by itself. Notifications
 * sent while it was disconnected are gone, so `onReconnect` lets the owner
 * catch up (relays run a round, waiters re-read their rows).
 *
 * The connection is made with the pool's settings but outside the pool: held
 * for as long as it listens, a pooled client would shrink the pool for every
 * other query, and on a pool of one leave none (waitFor's reads then waited
 * forever).
 */
export class PgListener {
  readonly #pool: pg.Pool
  readonly #channels: readonly string[]
  readonly #onNotify: (channel: string, payload: string) => void
  readonly #onReconnect: () => void
  readonly #log: Logger
  #client: pg.ClientBase | null = null
  #end: (() => Promise<void>) | null = null
  #connecting: Promise<void> | null = null
  #closed = false
  #retryTimer: NodeJS.Timeout | null = null
  #failures = 0

  constructor(
    pool: pg.Pool,
    channels: readonly string[],
    onNotify: (channel: string, payload: string) => void,
    log: Logger,
    onReconnect: () => void = () => {},
  ) {
    this.#pool = pool
    this.#channels = channels
    this.#onNotify = onNotify
    this.#log = log
    this.#onReconnect = onReconnect
  }

  get connected(): boolean {
    return this.#client !== null
  }

  /** Connect and LISTEN; resolves once listening. */
  ready(): Promise<void> {
    if (this.#client) return Promise.resolve()
    this.#connecting ??= this.#connect().finally(() => (this.#connecting = null))
    return this.#connecting
  }

  async #connect(): Promise<void> {
    // pg-pool's own recipe for a new client: its Client class, its options
    // (the password is a hidden property there, passed on as is).
    const pool = this.#pool as unknown as { Client?: typeof pg.Client; options: pg.ClientConfig }
    const client = new (pool.Client ?? pg.Client)(pool.options)
    let ended = false
    const end = async () => {
      if (ended) return
      ended = true
      await client.end().catch(() => {})
    }
    const onLost = (err?: Error) => {
      if (ended) return
      void end()
      if (this.#client === client) this.#client = null
      if (this.#closed) return
      this.#log.warn({ err }, 'LISTEN connection lost; reconnecting')
      this.#scheduleReconnect()
    }
    // Failing to connect is the caller's error to handle (as pool.connect() was).
    client.on('error', () => {})
    try {
      await client.connect()
    } catch (err) {
      await end()
      throw err
    }
    client.on('notification', (msg) => this.#onNotify(msg.channel, msg.payload ?? ''))
    client.on('error', onLost)
    client.on('end', () => onLost())
    try {
      for (const channel of this.#channels) await client.query(`listen ${client.escapeIdentifier(channel)}`)
    } catch (err) {
      onLost(err as Error)
      throw err
    }
    if (this.#closed) return end()
    this.#client = client
    this.#end = end
    this.#failures = 0
  }

  #scheduleReconnect() {
    if (this.#retryTimer || this.#closed) return
    const delay = Math.min(100 * 2 ** this.#failures++, 5000)
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null
      this.ready().then(
        () => this.#onReconnect(),
        () => this.#scheduleReconnect(),
      )
    }, delay)
  }

  async close(): Promise<void> {
    this.#closed = true
    if (this.#retryTimer) clearTimeout(this.#retryTimer)
    await this.#connecting?.catch(() => {})
    const end = this.#end
    this.#client = null
    this.#end = null
    // Ending the session ends its LISTENs.
    await end?.()
  }
}
