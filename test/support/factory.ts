import { randomUUID } from 'node:crypto'
import type { TaskRow } from '../../src/task-record.ts'
import type { TaskState } from '../../src/task-state.ts'

/**
 * Test fixture factory: writes task rows directly (not through enqueue), so any
 * state is reachable, with any column overridden — River's testfactory, Oban's
 * insert!/2.
 *
 * @example
 * const id = await makeTask(db.pool, db.schema, { state: 'dispatched', dispatchedAt: ago(10 * MIN) })
 * const id2 = await makeTask(db.pool, db.schema, { state: 'running', leaseExpiresAt: dbNow(-5 * SEC) })
 *
 * Defaults follow the state, so a row looks like one the services would have
 * written (a running row has an attempt, a lease, a worker...). `undefined`
 * keeps the default, `null` writes NULL. Timestamps default to the database
 * clock (`now()`: the transaction's start when `db` is a client inside BEGIN).
 */

export const SEC = 1000
export const MIN = 60 * SEC
export const HOUR = 60 * MIN

/** A Date `ms` before now (test process clock). */
export function ago(ms: number): Date {
  return new Date(Date.now() - ms)
}

/** A Date `ms` after now (test process clock). */
export function fromNow(ms: number): Date {
  return new Date(Date.now() + ms)
}

/** A SQL expression written into the INSERT as is. */
export class SqlExpr {
  readonly text: string
  constructor(text: string) {
    this.text = text
  }
}

/** Raw SQL for a column value, e.g. `sqlExpr("now() - interval '1 day'")`. */
export function sqlExpr(text: string): SqlExpr {
  return new SqlExpr(text)
}

/** The database clock shifted by `offsetMs` (negative = in the past). */
export function dbNow(offsetMs = 0): SqlExpr {
  return new SqlExpr(offsetMs === 0 ? 'now()' : `now() + (${Math.trunc(offsetMs)} * interval '1 millisecond')`)
}

type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S

type JsonColumns = 'payload' | 'result' | 'last_error'

/** Every column of the tasks table, camelCased; jsonb columns take any JSON value. */
export type TaskColumnValues = {
  [K in keyof TaskRow as CamelCase<K & string>]: K extends JsonColumns ? unknown : K extends 'id' ? string | number | bigint : TaskRow[K]
}

export type TaskOverrides = {
  [K in keyof TaskColumnValues]?: TaskColumnValues[K] | SqlExpr | null
} & {
  /** snake_case columns not (yet) in TaskRow, e.g. from a newer migration. */
  columns?: Record<string, unknown>
}

/** Anything with pg's `query(text, values)`: a pg.Pool or a pg client. */
export interface QueryRunner {
  query(text: string, values?: unknown[]): Promise<{ rows: any[] }>
}

function snakeCase(key: string): string {
  return key.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase())
}

const FINAL: readonly TaskState[] = ['succeeded', 'failed', 'cancelled']

/** Defaults for a row in `state`, snake_case, before overrides. */
function stateDefaults(state: TaskState, o: TaskOverrides): Record<string, unknown> {
  const now = dbNow()
  const maxAttempts = typeof o.maxAttempts === 'number' ? o.maxAttempts : 3
  const d: Record<string, unknown> = {
    name: 'test.task',
    queue: 'default',
    payload: {},
    state,
    priority: 0,
    attempt: 0,
    max_attempts: maxAttempts,
    run_at: now,
    created_at: now,
  }
  if (state === 'dispatched' || state === 'running') {
    d.dispatched_at = now
    d.dispatch_token = randomUUID()
  }
  // Rows that went through a worker's claim (a cancelled row may never have).
  if (state === 'running' || state === 'succeeded' || state === 'failed') {
    d.attempt = state === 'failed' ? maxAttempts : 1
    d.dispatched_at = now
    d.started_at = now
    d.worker_id = 'test-worker'
  }
  if (state === 'running') d.lease_expires_at = dbNow(30 * SEC)
  if (FINAL.includes(state)) d.finished_at = now
  if (state === 'failed') {
    d.last_error = { message: 'test failure', name: 'Error', attempt: d.attempt, at: new Date().toISOString(), kind: 'error' }
  }
  return d
}

const columnCache = new Map<string, Map<string, string>>()

/** Column name → SQL type of `<schema>.tasks`, read once per schema. */
async function taskColumns(db: QueryRunner, schema: string): Promise<Map<string, string>> {
  const cached = columnCache.get(schema)
  if (cached) return cached
  const res = await db.query(
    `select a.attname as name, format_type(a.atttypid, a.atttypmod) as type
       from pg_attribute a
      where a.attrelid = to_regclass($1) and a.attnum > 0 and not a.attisdropped`,
    [`"${schema.replaceAll('"', '""')}".tasks`],
  )
  if (res.rows.length === 0) throw new Error(`makeTask: table ${schema}.tasks does not exist (migrated?)`)
  const columns = new Map<string, string>(res.rows.map((r: { name: string; type: string }) => [r.name, r.type]))
  columnCache.set(schema, columns)
  return columns
}

function rowValues(overrides: TaskOverrides): Record<string, unknown> {
  const { columns: extra, ...typed } = overrides
  const state = (typed.state ?? 'pending') as TaskState
  const values = stateDefaults(state, overrides)
  for (const [key, value] of Object.entries(typed)) {
    if (value !== undefined) values[snakeCase(key)] = value
  }
  for (const [key, value] of Object.entries(extra ?? {})) {
    if (value !== undefined) values[key] = value
  }
  return values
}

/**
 * Insert task rows directly, one INSERT for all of them; returns their ids
 * (strings) in input order.
 */
export async function makeTasks(db: QueryRunner, schema: string, rows: readonly TaskOverrides[]): Promise<string[]> {
  if (rows.length === 0) return []
  const columns = await taskColumns(db, schema)
  const prepared = rows.map(rowValues)
  const names = [...new Set(prepared.flatMap((r) => Object.keys(r)))]
  for (const name of names) {
    if (!columns.has(name)) {
      throw new Error(`makeTask: ${schema}.tasks has no column "${name}" (columns: ${[...columns.keys()].join(', ')})`)
    }
  }
  const params: unknown[] = []
  const tuples = prepared.map((row) => {
    const cells = names.map((name) => {
      if (!(name in row)) return 'default'
      const value = row[name]
      if (value === null) return 'null'
      if (value instanceof SqlExpr) return `(${value.text})`
      const type = columns.get(name)!
      params.push(type === 'jsonb' || type === 'json' ? JSON.stringify(value) : typeof value === 'bigint' ? String(value) : value)
      return `$${params.length}::${type}`
    })
    return `(${cells.join(', ')})`
  })
  const table = `"${schema.replaceAll('"', '""')}".tasks`
  const res = await db.query(
    `insert into ${table} (${names.map((n) => `"${n}"`).join(', ')}) values ${tuples.join(', ')} returning id`,
    params,
  )
  return res.rows.map((r: { id: string | number }) => String(r.id))
}

/** Insert one task row directly; returns its id as a string. */
export async function makeTask(db: QueryRunner, schema: string, overrides: TaskOverrides = {}): Promise<string> {
  const [id] = await makeTasks(db, schema, [overrides])
  return id!
}

/** The raw row (snake_case, as stored), or undefined. */
export async function taskRow(db: QueryRunner, schema: string, id: string | number | bigint): Promise<TaskRow | undefined> {
  const res = await db.query(`select * from "${schema.replaceAll('"', '""')}".tasks where id = $1`, [String(id)])
  return res.rows[0] as TaskRow | undefined
}
