import { createHash } from 'node:crypto'
import { isKysely } from '../config/db-kinds.ts'
import { CompiledQuery, type Kysely, type Transaction } from 'kysely'
import pg from 'pg'
import { TransactionRequiredError } from '../errors.ts'

/**
 * The one seam between taskrelay's SQL and whatever connection the caller
 * holds: a Kysely instance or transaction, a pg Pool, or a pg client.
 */
export interface Executor {
  query<R = Record<string, unknown>>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>>
}

export interface QueryResult<R> {
  rows: R[]
  rowCount: number
}

/** Anything a user may pass as `trx` / `db`. */
export type Queryable = Kysely<any> | Transaction<any> | pg.Pool | pg.PoolClient | pg.Client


function isPgQueryable(value: unknown): value is pg.Pool | pg.ClientBase {
  return typeof value === 'object' && value !== null && typeof (value as { query?: unknown }).query === 'function'
}

const statementNames = new Map<string, string>()

/**
 * Statement names are derived from the text, so each text is prepared once
 * per connection. Cached: hashing on every call cost ~7 us per enqueue.
 */
function statementName(text: string): string {
  let name = statementNames.get(text)
  if (name === undefined) {
    name = 'taskrelay_' + createHash('sha1').update(text).digest('hex').slice(0, 16)
    if (statementNames.size < 1000) statementNames.set(text, name)
  }
  return name
}

/** A new name for `text`, so that no connection reuses its stale prepared statement. */
function renameStatement(text: string): void {
  const name = statementName(text)
  const generation = Number(/_g(\d+)$/.exec(name)?.[1] ?? 0) + 1
  statementNames.set(text, `${name.replace(/_g\d+$/, '')}_g${generation}`)
}

export function pgExecutor(client: pg.Pool | pg.ClientBase, opts: { prepare?: boolean } = {}): Executor {
  return {
    async query<R>(text: string, values: readonly unknown[] = []) {
      const run = (name?: string) => client.query({ text, values: values as unknown[], ...(name ? { name } : {}) })
      let res
      try {
        res = await run(opts.prepare ? statementName(text) : undefined)
      } catch (err) {
        // A statement prepared before a migration changed its result type is
        // refused, on every execution, until it is prepared again: give the
        // text a new name (every connection prepares it once more), and
        // outside a transaction send it again at once.
        if (!opts.prepare || !isStalePlan(err)) throw err
        renameStatement(text)
        if (!outsideTransaction(client)) throw err
        res = await run(statementName(text))
      }
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 }
    },
  }
}

/** Postgres refused a prepared statement whose result columns changed since it was prepared. */
function isStalePlan(err: unknown): boolean {
  return (err as { code?: unknown })?.code === '0A000' && /cached plan must not change result type/.test(String((err as Error).message))
}

/** A pool, or a client not inside a transaction: the failed statement aborted nothing. */
function outsideTransaction(client: pg.Pool | pg.ClientBase): boolean {
  const status = (client as { getTransactionStatus?: () => string | null }).getTransactionStatus?.()
  return status === undefined ? 'totalCount' in client : status === 'I'
}

export function kyselyExecutor(db: Kysely<any> | Transaction<any>): Executor {
  return {
    async query<R>(text: string, values: readonly unknown[] = []) {
      const res = await db.executeQuery<R>(CompiledQuery.raw(text, values as unknown[]))
      return { rows: res.rows as R[], rowCount: Number(res.numAffectedRows ?? res.rows.length) }
    },
  }
}

export function toExecutor(value: Queryable, opts: { prepare?: boolean } = {}): Executor {
  if (isKysely(value)) return kyselyExecutor(value)
  if (isPgQueryable(value)) return pgExecutor(value, opts)
  throw new TypeError('expected a Kysely instance/transaction, a pg.Pool or a pg client')
}

/** An executor on the caller's transaction, or TransactionRequiredError saying why `trx` is none. */
export function transactionExecutor(trx: Queryable): Executor {
  const problem = transactionProblem(trx)
  if (problem) throw new TransactionRequiredError(problem)
  return isKysely(trx) ? kyselyExecutor(trx) : pgExecutor(trx as pg.ClientBase, { prepare: true })
}

/**
 * Why the given value cannot carry a transactional enqueue, or null when it can.
 * Costs no round trip: Kysely marks transactions, and pg tracks the
 * ReadyForQuery transaction status of each client.
 */
export function transactionProblem(value: Queryable): string | null {
  // enqueue(maybeTrx, ...) with maybeTrx undefined must be a clear error, not a
  // TypeError from reading a property of undefined.
  if (typeof value !== 'object' || value === null) {
    return `expected a Kysely Transaction or a pg client, got ${value === null ? 'null' : typeof value}`
  }
  if (isKysely(value)) {
    return (value as { isTransaction?: boolean }).isTransaction
      ? null
      : 'got a Kysely instance, not a Transaction'
  }
  const v = value as { getTransactionStatus?: () => string | null; totalCount?: number }
  if (typeof v.totalCount === 'number' && typeof v.getTransactionStatus !== 'function') {
    return 'got a pg.Pool; a pool has no transaction of its own'
  }
  if (typeof v.getTransactionStatus === 'function') {
    const status = v.getTransactionStatus()
    if (status === 'T') return null
    if (status === 'E') return 'the pg client is inside a failed transaction (ROLLBACK it first)'
    if (status === 'I') return 'the pg client is not inside a transaction (no BEGIN)'
    return 'the pg client has not connected yet'
  }
  return 'unrecognised executor'
}

/**
 * Run on each new connection of the pools for the relay's and worker's batch
 * statements (TaskRelay.batchExecutor). No sequential scans: a generic plan
 * made while a table was small must not scan it once it is large. No JIT:
 * these statements take a millisecond, and a scan that has to stay (a tiny
 * table) carries the "disabled" cost, which crosses every JIT threshold; a
 * compile then cost each execution 600 ms.
 */
export const BATCH_SESSION_SQL = 'set enable_seqscan = off; set jit = off'

/**
 * A pool of 4 connected like `base`, each connection running `setup` first.
 * The settings are SET on connect rather than sent as startup options, which
 * pgbouncer refuses and a URL's own ?options= would replace.
 */
export function sidePool(base: pg.Pool, setup: string, onIdleError: (err: Error) => void): pg.Pool {
  const options = (base as unknown as { options: pg.PoolConfig }).options
  const pool = new pg.Pool({
    ...options,
    // pg-pool hides the password from enumeration; a spread would drop it.
    password: options.password,
    max: 4,
    // Awaited before the connection is handed out; a failure fails that acquire.
    onConnect: async (client: pg.ClientBase) => {
      await client.query(setup)
      await options.onConnect?.(client)
    },
  })
  pool.on('error', onIdleError)
  // The caller's own per-connection setup (SET ROLE, search_path...) too.
  for (const listener of base.listeners('connect')) pool.on('connect', listener as (client: pg.PoolClient) => void)
  return pool
}

/** Prove the server answers on `pool` (a CLI's first contact with Postgres). */
export async function databasePing(pool: pg.Pool): Promise<void> {
  await pool.query('select 1')
}
