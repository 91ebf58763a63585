import { z } from 'zod'
import type { Task } from './define-task.ts'
import { QUEUE_PATTERN } from './define-task.ts'
import { zodProblems } from './config.ts'
import { toTaskId } from './task-record.ts'
import {
  DependencyNotFoundError,
  InvalidOptionsError,
  PayloadNotSerializableError,
  PayloadTooLargeError,
  PayloadValidationError,
  TransactionRequiredError,
} from './errors.ts'
import type { Executor } from './db/executor.ts'
import { enqueueStatement, loadSql, plainArray } from './db/sql.ts'

/** Per-call enqueue options; each overrides the task's own policy. */
export interface EnqueueOptions {
  /** Not dispatched before this time. */
  runAt?: Date
  /** Not dispatched for this many ms (database clock). Give runAt or delayMs, not both. */
  delayMs?: number
  /** -1000..1000, higher first. */
  priority?: number
  queue?: string
  maxAttempts?: number
  /** A second enqueue with the same key returns the first task's id and writes nothing. */
  idempotencyKey?: string
  /**
   * Ids of tasks that must succeed first (up to 1000). The task waits
   * (state 'waiting') until all have succeeded; if one fails or is
   * cancelled, it is cancelled without running.
   */
  dependsOn?: ReadonlyArray<string | number | bigint>
}

const MAX_DEPENDENCIES = 1000
const taskId = z
  .union([z.string(), z.number(), z.bigint()])
  .refine((id) => toTaskId(id) !== null, 'a task id is a positive integer below 2^63')

const enqueueOptionsSchema = z
  .strictObject({
    runAt: z.date().refine((d) => !Number.isNaN(d.getTime()), 'invalid date').optional(),
    delayMs: z.number().int('must be an integer number of ms').min(0, 'must not be negative').optional(),
    priority: z.number().int().min(-1000).max(1000).optional(),
    queue: z.string().regex(QUEUE_PATTERN, 'use 1-100 characters from A-Z a-z 0-9 _ . -').optional(),
    maxAttempts: z.number().int().min(1).max(1000).optional(),
    idempotencyKey: z.string().min(1).max(500).optional(),
    dependsOn: z.array(taskId).min(1, 'give at least one id, or leave dependsOn out').max(MAX_DEPENDENCIES).readonly().optional(),
  })
  .refine((o) => o.runAt === undefined || o.delayMs === undefined, {
    message: 'give runAt or delayMs, not both',
    path: ['delayMs'],
  })

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

/**
 * Validate everything before any SQL runs, so bad input writes nothing.
 */
export function prepareTask(task: Task, payload: unknown, options: EnqueueOptions | undefined, maxPayloadBytes: number): PreparedTask {
  let opts: z.output<typeof enqueueOptionsSchema> = {}
  if (options !== undefined) {
    const parsedOptions = enqueueOptionsSchema.safeParse(options)
    if (!parsedOptions.success) {
      throw new InvalidOptionsError(`enqueue options for task "${task.name}"`, zodProblems(parsedOptions.error))
    }
    opts = parsedOptions.data
  }
  const parsed = task.payload.safeParse(payload)
  if (!parsed.success) {
    throw new PayloadValidationError(
      task.name,
      parsed.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message })),
    )
  }
  // Store what the caller sent (the schema's input), not the parsed output:
  // the worker parses again, so transforms and defaults run exactly once, there.
  // Only a missing payload becomes {}: a null the schema accepted is stored as
  // JSON null, or the worker would parse {} against a schema that wanted null.
  let payloadJson: string | undefined
  try {
    payloadJson = JSON.stringify(payload === undefined ? {} : payload)
  } catch (err) {
    throw new PayloadNotSerializableError(task.name, (err as Error).message)
  }
  if (payloadJson === undefined) throw new PayloadNotSerializableError(task.name, 'JSON.stringify returned nothing')
  const bytes = Buffer.byteLength(payloadJson)
  if (bytes > maxPayloadBytes) throw new PayloadTooLargeError(task.name, bytes, maxPayloadBytes)
  // The worker sees the payload after a JSON round trip: a z.date() or a Map
  // passes here and would fail there on every attempt. Check that form too.
  const stored = task.payload.safeParse(JSON.parse(payloadJson))
  if (!stored.success) {
    throw new PayloadValidationError(
      task.name,
      stored.error.issues.map((i) => ({
        path: i.path.map(String).join('.'),
        message: `${i.message} after the JSON round trip the worker sees (use z.coerce.date() or strings for dates, plain objects for maps)`,
      })),
    )
  }
  return {
    name: task.name,
    queue: opts.queue ?? task.policy.queue,
    payloadJson,
    priority: opts.priority ?? task.policy.priority,
    maxAttempts: opts.maxAttempts ?? task.policy.maxAttempts,
    runAt: opts.runAt ?? null,
    delayMs: opts.delayMs ?? 0,
    idempotencyKey: opts.idempotencyKey ?? null,
    dependsOn: opts.dependsOn ? [...new Set(opts.dependsOn.map((id) => String(toTaskId(id))))] : null,
  }
}

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
  const existing = await taskFindByIdempotencyKeys(db, schema, [t.idempotencyKey!])
  const found = existing.get(t.idempotencyKey!)
  if (found === undefined) throw new Error(`idempotency key ${t.idempotencyKey} conflicted but no task holds it`)
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
  const res = await run<{ id: string; idempotency_key: string | null }>(db, enqueueStatement('task-insert-many.sql', schema), [
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
  const res = await run<{ id: string; idempotency_key: string | null }>(db, loadSql('task-insert-dependent.sql', schema), [
    ...columnParams(tasks),
    tasks.map((t) => t.idempotencyKey),
    tasks.map((t) => plainArray(t.dependsOn ?? [])),
  ])
  return idsInInputOrder(db, schema, tasks, res.rows)
}

/** Ids in input order from an insert's rows: skipped (idempotent) rows are found by their key. */
async function idsInInputOrder(
  db: Executor,
  schema: string,
  tasks: readonly PreparedTask[],
  rows: ReadonlyArray<{ id: string; idempotency_key: string | null }>,
): Promise<string[]> {
  const byKey = new Map<string, string>()
  const keyless: string[] = []
  for (const row of rows) {
    if (row.idempotency_key === null) keyless.push(String(row.id))
    else byKey.set(row.idempotency_key, String(row.id))
  }
  const missingKeys = tasks
    .map((t) => t.idempotencyKey)
    .filter((k): k is string => k !== null && !byKey.has(k))
  if (missingKeys.length > 0) {
    for (const [k, id] of await taskFindByIdempotencyKeys(db, schema, missingKeys)) byKey.set(k, id)
  }
  // Keyless rows are never skipped and come back in insertion (= input) order.
  let next = 0
  return tasks.map((t) => {
    if (t.idempotencyKey !== null) {
      const id = byKey.get(t.idempotencyKey)
      if (id === undefined) throw new Error(`idempotency key ${t.idempotencyKey} conflicted but no task holds it`)
      return id
    }
    return keyless[next++]!
  })
}

async function taskFindByIdempotencyKeys(db: Executor, schema: string, keys: string[]): Promise<Map<string, string>> {
  const res = await db.query<{ id: string; idempotency_key: string }>(
    loadSql('task-find-by-idempotency-key.sql', schema),
    [keys],
  )
  return new Map(res.rows.map((r) => [r.idempotency_key, String(r.id)]))
}
