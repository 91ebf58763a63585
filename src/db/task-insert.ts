import { DependencyNotFoundError, TransactionRequiredError } from '../errors.ts'
import type { Executor } from './executor.ts'
import { enqueueStatement, loadSql, plainArray } from './sql.ts'

/** A validated row, ready for the INSERT. */
export interface PreparedTask {
  name: string
  queue: string
  payloadJson: string
  priority: number
  maxAttempts: number
  runAt: Date | null
  delayMs: number
  idempotencyKey: string | null
  /** ids, deduplicated; null: depends on nothing */
  dependsOn: string[] | null
}

/** The INSERTs of prepared (validated) tasks: one, many, with dependencies, with idempotency keys. */

/**
 * Run an enqueue statement. The transaction check before it reads pg's client
 * state, which lags by one message after a failed statement (pg rejects the
 * query on ErrorResponse, before ReadyForQuery says the transaction failed),
 * and Kysely has no such state at all; so a statement refused because the
 * caller's transaction already failed (SQLSTATE 25P02) is reported as the same
 * TransactionRequiredError the check would have thrown.
 */
async function run<R>(db: Executor, text: string, values: readonly unknown[]) {
  try {
    return await db.query<R>(text, values)
  } catch (err) {
    if ((err as { code?: unknown } | null)?.code === '25P02') {
      const refused = new TransactionRequiredError('the connection is inside a failed transaction (ROLLBACK it first)')
      Object.defineProperty(refused, 'cause', { value: err, writable: true, configurable: true })
      throw refused
    }
    throw err
  }
}

/** $1..$7 of every insert statement (task-insert-*.sql), in their order; keyed statements add $8. */
function rowParams(t: PreparedTask): unknown[] {
  return [t.name, t.queue, t.payloadJson, t.priority, t.maxAttempts, t.runAt, t.delayMs]
}

/** The same parameters as arrays, one per column, for the unnest() batch statements. */
function columnParams(tasks: readonly PreparedTask[]): unknown[][] {
  const rows = tasks.map(rowParams)
  return rows[0]!.map((_, column) => rows.map((row) => row[column]))
}

/** Insert one prepared task; returns its id (or the existing id for a repeated idempotency key). */
export async function taskInsertOne(db: Executor, schema: string, t: PreparedTask): Promise<string> {
  if (t.dependsOn !== null) return (await taskInsertDependent(db, schema, [t]))[0]!
  if (t.idempotencyKey === null) {
    const plain = await run<{ id: string }>(db, enqueueStatement('task-insert-one-plain.sql', schema), rowParams(t))
    return String(plain.rows[0]!.id)
  }
  const res = await run<{ id: string }>(db, enqueueStatement('task-insert-one.sql', schema), [...rowParams(t), t.idempotencyKey])
  const id = res.rows[0]?.id
  if (id !== undefined) return String(id)
  const found = (await taskFindByIdempotencyKeys(db, schema, [t])).get(keyOf(t.name, t.idempotencyKey))
  if (found === undefined) throw new Error(`idempotency key ${t.idempotencyKey} of task ${t.name} conflicted but no task holds it`)
  return found
}

/** Insert many prepared tasks in one statement; ids come back in input order. */
export async function taskInsertMany(db: Executor, schema: string, tasks: readonly PreparedTask[]): Promise<string[]> {
  if (tasks.length === 0) return []
  if (tasks.some((t) => t.dependsOn !== null)) return taskInsertDependent(db, schema, tasks)
  if (tasks.every((t) => t.idempotencyKey === null)) {
    const plain = await run<{ id: string }>(db, enqueueStatement('task-insert-many-plain.sql', schema), columnParams(tasks))
    return plain.rows.map((r) => String(r.id))
  }
  const res = await run<KeyedRow>(db, enqueueStatement('task-insert-many.sql', schema), [
    ...columnParams(tasks),
    tasks.map((t) => t.idempotencyKey),
  ])
  return idsInInputOrder(db, schema, tasks, res.rows)
}

/**
 * Insert tasks of which some depend on others (task-insert-dependent.sql),
 * after checking that every task named exists: a missing one is a clear
 * error before anything is written, not a foreign key violation that
 * aborts the caller's transaction.
 */
async function taskInsertDependent(db: Executor, schema: string, tasks: readonly PreparedTask[]): Promise<string[]> {
  const named = [...new Set(tasks.flatMap((t) => t.dependsOn ?? []))]
  const missing = await run<{ id: string }>(db, loadSql('task-dependencies-missing.sql', schema), [plainArray(named)])
  if (missing.rows.length > 0) throw new DependencyNotFoundError(missing.rows.map((r) => String(r.id)))
  const res = await run<KeyedRow>(db, loadSql('task-insert-dependent.sql', schema), [
    ...columnParams(tasks),
    tasks.map((t) => t.idempotencyKey),
    tasks.map((t) => plainArray(t.dependsOn ?? [])),
  ])
  return idsInInputOrder(db, schema, tasks, res.rows)
}

/** A row returned by a keyed insert (or found by its key). */
interface KeyedRow {
  id: string
  name: string
  idempotency_key: string | null
}

/** A key is unique per task name (migration 0009): map by both. JSON keeps "a:b"+"c" apart from "a"+"b:c". */
function keyOf(name: string, key: string): string {
  return JSON.stringify([name, key])
}

/** Ids in input order from an insert's rows: skipped (idempotent) rows are found by name and key. */
async function idsInInputOrder(db: Executor, schema: string, tasks: readonly PreparedTask[], rows: readonly KeyedRow[]): Promise<string[]> {
  const byKey = new Map<string, string>()
  const keyless: string[] = []
  for (const row of rows) {
    if (row.idempotency_key === null) keyless.push(String(row.id))
    else byKey.set(keyOf(row.name, row.idempotency_key), String(row.id))
  }
  const skipped = tasks.filter((t) => t.idempotencyKey !== null && !byKey.has(keyOf(t.name, t.idempotencyKey)))
  if (skipped.length > 0) {
    for (const [k, id] of await taskFindByIdempotencyKeys(db, schema, skipped)) byKey.set(k, id)
  }
  // Keyless rows are never skipped and come back in insertion (= input) order.
  let next = 0
  return tasks.map((t) => {
    if (t.idempotencyKey !== null) {
      const id = byKey.get(keyOf(t.name, t.idempotencyKey))
      if (id === undefined) throw new Error(`idempotency key ${t.idempotencyKey} of task ${t.name} conflicted but no task holds it`)
      return id
    }
    return keyless[next++]!
  })
}

/** Existing ids of keyed tasks, by keyOf(name, key). */
async function taskFindByIdempotencyKeys(db: Executor, schema: string, tasks: readonly PreparedTask[]): Promise<Map<string, string>> {
  const res = await db.query<KeyedRow & { idempotency_key: string }>(loadSql('task-find-by-idempotency-key.sql', schema), [
    tasks.map((t) => t.name),
    tasks.map((t) => t.idempotencyKey),
  ])
  return new Map(res.rows.map((r) => [keyOf(r.name, r.idempotency_key), String(r.id)]))
}
