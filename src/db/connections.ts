import pg from 'pg'
import { isKysely, isPgPool } from '../config/db-kinds.ts'
import type { Kysely } from 'kysely'
import type { Logger } from 'pino'
import { BATCH_SESSION_SQL, kyselyExecutor, pgExecutor, sidePool, type Executor } from './executor.ts'
import { PgListener } from './listener.ts'
import { Poller, type Wakeups } from './poller.ts'

/** What taskrelay can open connections and transactions on: a pg.Pool (any copy of pg 8) or a Kysely instance. */
export type Database = pg.Pool | Kysely<any>


/**
 * Run `fn` on one session-bound connection (an advisory lock's session).
 * `discard` marks it unfit for reuse: a pool's connection is then destroyed.
 * Kysely cannot be told so, but pg-pool drops a connection that broke by
 * itself, and those are the ones a failed statement leaves behind.
 */
export async function withSession<R>(
  db: Database,
  fn: (conn: Executor, discard: (err: Error) => void) => Promise<R>,
  opts: { prepare?: boolean } = {},
): Promise<R> {
  if (isKysely(db)) return db.connection().execute((conn) => fn(kyselyExecutor(conn), () => {}))
  const client = await db.connect()
  let broken: Error | undefined
  // pg-pool takes its error listener off a client it lends out, and pg emits
  // 'error' when the server ends a session between two statements (a
  // terminated backend, a restart): without a listener that would crash the
  // process. The next statement fails instead, and the client is destroyed.
  const onError = (err: Error) => void (broken ??= err)
  client.on('error', onError)
  try {
    return await fn(pgExecutor(client, opts), (err) => (broken ??= err))
  } finally {
    client.removeListener('error', onError)
    client.release(broken)
  }
}

/** Run `fn` in one transaction; over a pool, a connection whose ROLLBACK failed is destroyed. */
export function withTransaction<R>(db: Database, fn: (trx: Executor) => Promise<R>): Promise<R> {
  if (isKysely(db)) return db.transaction().execute((trx) => fn(kyselyExecutor(trx)))
  return withSession(
    db,
    async (conn, discard) => {
      await conn.query('begin')
      try {
        const result = await fn(conn)
        await conn.query('commit')
        return result
      } catch (err) {
        await conn.query('rollback').catch(discard)
        throw err
      }
    },
    { prepare: true },
  )
}

/**
 * The connections behind one TaskRelay: the caller's pool, Kysely instance or
 * a pool made from a connection string, plus the small side pools of the
 * relay's and worker's batch statements (pools only).
 */
export class Connections {
  /** Present when db was a pool or connection string: LISTEN and side pools need one. */
  readonly pool: pg.Pool | null
  readonly database: Database
  /** Autocommit executor on the caller's pool or Kysely instance. */
  readonly executor: Executor
  readonly #ownsPool: boolean
  readonly #onIdleError: (err: Error) => void
  #sidePools: pg.Pool[] = []
  #transition: Executor | null = null
  #batch: Executor | null = null
  #closed = false

  constructor(db: string | Database, log: Logger) {
    this.#onIdleError = (err) => log.warn({ err }, 'idle postgres connection failed')
    this.#ownsPool = typeof db === 'string'
    if (typeof db === 'string') {
      this.pool = new pg.Pool({ connectionString: db })
      this.pool.on('error', this.#onIdleError)
    } else {
      this.pool = isPgPool(db) ? db : null
    }
    this.database = this.pool ?? (db as Kysely<any>)
    this.executor = this.pool ? pgExecutor(this.pool, { prepare: true }) : kyselyExecutor(this.database as Kysely<any>)
  }

  /** See TaskRelay.batchExecutor; the main executor over Kysely. */
  get batchExecutor(): Executor {
    this.#batch ??= this.#sideExecutor(BATCH_SESSION_SQL)
    return this.#batch ?? this.executor
  }

  /** See TaskRelay.transitionExecutor. */
  transitionExecutor(durable: boolean): Executor {
    if (durable) return this.batchExecutor
    this.#transition ??= this.#sideExecutor(`set synchronous_commit = off; ${BATCH_SESSION_SQL}`)
    return this.#transition ?? this.executor
  }

  /** A pool of 4 for batch statements (see sidePool); null without a pool to copy, or after close(). */
  #sideExecutor(setup: string): Executor | null {
    if (!this.pool || this.#closed) return null
    const pool = sidePool(this.pool, setup, this.#onIdleError)
    this.#sidePools.push(pool)
    return pgExecutor(pool, { prepare: true })
  }

  /**
   * LISTEN on `channels` where there is a pool; over Kysely, which hides its
   * pg client, poll instead: `onCatchUp` (what a listener runs after a
   * reconnect) every pollMs, said once in `log`.
   */
  listen(
    channels: readonly string[],
    handlers: { onNotify: (channel: string, payload: string) => void; onCatchUp: () => void },
    log: Logger,
    pollMs: number,
  ): Wakeups {
    if (this.pool) return new PgListener(this.pool, channels, handlers.onNotify, log, handlers.onCatchUp)
    log.info({ pollMs }, 'db is a Kysely instance, which cannot LISTEN: polling instead (pass a pg.Pool to be woken by NOTIFY)')
    return new Poller(pollMs, handlers.onCatchUp)
  }

  transaction<R>(fn: (trx: Executor) => Promise<R>): Promise<R> {
    return withTransaction(this.database, fn)
  }

  /** Close the side pools, and the pool when it was made here. */
  async close(): Promise<void> {
    this.#closed = true
    await Promise.all(this.#sidePools.splice(0).map((pool) => pool.end()))
    this.#transition = null
    this.#batch = null
    if (this.#ownsPool) await this.pool?.end()
  }
}
