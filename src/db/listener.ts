import type pg from 'pg'
import type { Logger } from 'pino'

/**
 * A dedicated LISTEN connection that reconnects by itself. Notifications
 * sent while it was disconnected are gone, so `onReconnect` lets the owner
 * catch up (relays run a round, waiters re-read their rows).
 */
export class PgListener {
  readonly #pool: pg.Pool
  readonly #channels: readonly string[]
  readonly #onNotify: (channel: string, payload: string) => void
  readonly #onReconnect: () => void
  readonly #log: Logger
  #client: pg.PoolClient | null = null
  #release: ((err?: Error) => void) | null = null
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
    const client = await this.#pool.connect()
    let released = false
    const release = (err?: Error) => {
      if (released) return
      released = true
      client.release(err ?? true)
    }
    const onLost = (err?: Error) => {
      if (released) return
      release(err)
      if (this.#client === client) this.#client = null
      if (this.#closed) return
      this.#log.warn({ err }, 'LISTEN connection lost; reconnecting')
      this.#scheduleReconnect()
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
    this.#client = client
    this.#release = release
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
    const client = this.#client
    const release = this.#release
    this.#client = null
    this.#release = null
    if (client && release) {
      try {
        await client.query('unlisten *')
        release()
      } catch (err) {
        release(err as Error)
      }
    }
  }
}
