import { DependencyNotFoundError, TransactionRequiredError } from '../errors.ts'
import type { Executor } from './executor.ts'
import { enqueueStatement, loadSql, plainArray } from './sql.ts'
import type { Context } from '@opentelemetry/api'
import { startProducerSpans } from '../otel/producer.ts'

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
  /** the group within the queue ('' for none) */
  groupKey: string
  /** a windowed idempotency key, a singleton or a debounce (enqueue_keyed(), 0015); null: none */
  keyed: { kind: 'idempotency' | 'singleton' | 'debounce'; key: string; windowMs: number | null; maxWaitMs: number | null } | null
  /** ids, deduplicated; null: depends on nothing */
  dependsOn: string[] | null
  /** the enqueuing code's context when it had an active span (a producer span is made at the INSERT); null: not traced */
  traceParent: Context | null
  /** set by the insert: the producer span's context as JSON, for tasks.trace_context */
  traceContext?: string | null
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

/** An inserted (or found) task: its id, and whether this insert created it (EnqueueResult's outcome). */
export interface InsertedTask {
  id: string
  outcome: 'created' | 'existing' | 'debounced'
}

/** Insert one prepared task; returns its id (or the existing id for a repeated idempotency key). */
export async function taskInsertOne(db: Executor, schema: string, t: PreparedTask): Promise<InsertedTask> {
  if (t.traceParent === null) return insertOne(db, schema, t)
  return traced([t], ([one]) => insertOne(db, schema, one!), (r) => [r.id])
}

/** Insert many prepared tasks in one statement; ids come back in input order. */
export async function taskInsertMany(db: Executor, schema: string, tasks: readonly PreparedTask[]): Promise<string[]> {
  if (!tasks.some((t) => t.traceParent !== null)) return insertMany(db, schema, tasks)
  return traced(tasks, (withContext) => insertMany(db, schema, withContext), (ids) => ids)
}

/** Run `insert` inside a producer span per traced task, the tasks given their trace contexts (src/otel/producer.ts). */
async function traced<R>(tasks: readonly PreparedTask[], insert: (tasks: PreparedTask[]) => Promise<R>, idsOf: (r: R) => readonly string[]): Promise<R> {
  const spans = startProducerSpans(tasks)!
  try {
    const result = await insert(tasks.map((t, i) => ({ ...t, traceContext: spans.carriers[i] ?? null })))
    spans.end(idsOf(result))
    return result
  } catch (err) {
    spans.fail(err)
    throw err
  }
}

/** The trace_context column of a batch: null when no task is traced (the statement's unnest pads it with nulls). */
function traceColumn(tasks: readonly PreparedTask[]): Array<string | null> | null {
  return tasks.some((t) => t.traceContext != null) ? tasks.map((t) => t.traceContext ?? null) : null
}

async function insertOne(db: Executor, schema: string, t: PreparedTask): Promise<InsertedTask> {
  if (t.keyed !== null) return taskInsertKeyed(db, schema, t)
  if (t.dependsOn !== null) {
    const created = new Set<string>()
    const id = (await taskInsertDependent(db, schema, [t], created))[0]!
    return { id, outcome: created.has(id) ? 'created' : 'existing' }
  }
  if (t.idempotencyKey === null) {
    const plain = await run<{ id: string }>(db, enqueueStatement('task-insert-one-plain.sql', schema), [...rowParams(t), t.groupKey, t.traceContext ?? null])
    return { id: String(plain.rows[0]!.id), outcome: 'created' }
  }
  const res = await run<{ id: string }>(db, enqueueStatement('task-insert-one.sql', schema), [...rowParams(t), t.idempotencyKey, t.groupKey, t.traceContext ?? null])
  const id = res.rows[0]?.id
  if (id !== undefined) return { id: String(id), outcome: 'created' }
  const found = (await taskFindByIdempotencyKeys(db, schema, [t])).get(keyOf(t.name, t.idempotencyKey))
  if (found === undefined) throw new Error(`idempotency key ${t.idempotencyKey} of task ${t.name} conflicted but no task holds it`)
  return { id: found, outcome: 'existing' }
}

/** A windowed idempotency key, a singleton or a debounce: enqueue_keyed() (task-insert-keyed.sql). */
async function taskInsertKeyed(db: Executor, schema: string, t: PreparedTask): Promise<InsertedTask> {
  const k = t.keyed!
  const res = await run<InsertedTask>(db, enqueueStatement('task-insert-keyed.sql', schema), [
    ...rowParams(t),
    t.groupKey,
    k.kind,
    k.key,
    k.windowMs,
    k.maxWaitMs,
  ])
  const row = res.rows[0]!
  // enqueue_keyed() takes no trace context: a traced one that wrote the row stores it after.
  if (t.traceContext != null && row.outcome !== 'existing') {
    await run(db, loadSql('task-insert-trace-context.sql', schema), [String(row.id), t.traceContext])
  }
  return { id: String(row.id), outcome: row.outcome }
}

async function insertMany(db: Executor, schema: string, tasks: readonly PreparedTask[]): Promise<string[]> {
  if (tasks.length === 0) return []
  // Singletons, debounces and windowed keys go one by one (each takes its key's lock), the rest in one statement.
  if (tasks.some((t) => t.keyed !== null)) return insertKeyedApart(db, schema, tasks)
  if (tasks.some((t) => t.dependsOn !== null)) return taskInsertDependent(db, schema, tasks)
  const groupKeys = tasks.map((t) => t.groupKey)
  if (tasks.every((t) => t.idempotencyKey === null)) {
    const plain = await run<{ id: string }>(db, enqueueStatement('task-insert-many-plain.sql', schema), [...columnParams(tasks), groupKeys, traceColumn(tasks)])
    return plain.rows.map((r) => String(r.id))
  }
  const res = await run<KeyedRow>(db, enqueueStatement('task-insert-many.sql', schema), [
    ...columnParams(tasks),
    tasks.map((t) => t.idempotencyKey),
    groupKeys,
    traceColumn(tasks),
  ])
  return idsInInputOrder(db, schema, tasks, res.rows)
}

async function insertKeyedApart(db: Executor, schema: string, tasks: readonly PreparedTask[]): Promise<string[]> {
  const rest = tasks.filter((t) => t.keyed === null)
  const restIds = await insertMany(db, schema, rest)
  const ids: string[] = []
  let next = 0
  for (const t of tasks) ids.push(t.keyed === null ? restIds[next++]! : (await taskInsertKeyed(db, schema, t)).id)
  return ids
}

/**
 * Insert tasks of which some depend on others (task-insert-dependent.sql),
 * after checking that every task named exists: a missing one is a clear
 * error before anything is written, not a foreign key violation that
 * aborts the caller's transaction.
 */
async function taskInsertDependent(db: Executor, schema: string, tasks: readonly PreparedTask[], created?: Set<string>): Promise<string[]> {
  const named = [...new Set(tasks.flatMap((t) => t.dependsOn ?? []))]
  const missing = await run<{ id: string }>(db, loadSql('task-dependencies-missing.sql', schema), [plainArray(named)])
  if (missing.rows.length > 0) throw new DependencyNotFoundError(missing.rows.map((r) => String(r.id)))
  const res = await run<KeyedRow>(db, loadSql('task-insert-dependent.sql', schema), [
    ...columnParams(tasks),
    tasks.map((t) => t.idempotencyKey),
    tasks.map((t) => plainArray(t.dependsOn ?? [])),
    tasks.map((t) => t.groupKey),
    traceColumn(tasks),
  ])
  for (const row of res.rows) created?.add(String(row.id))
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
