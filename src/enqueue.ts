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
import { MAX_DELAY_MS } from './duration.ts'
import { jsonbProblem } from './jsonb.ts'

/** Per-call enqueue options; each overrides the task's own policy. */
export interface EnqueueOptions {
  /** Not dispatched before this time: 1970-01-01 .. 10 years from now (MAX_DELAY_MS). */
  runAt?: Date
  /** Not dispatched for this many ms (database clock), at most MAX_DELAY_MS (10 years). Give runAt or delayMs, not both. */
  delayMs?: number
  /** -1000..1000, higher first. */
  priority?: number
  queue?: string
  maxAttempts?: number
  /**
   * A second enqueue of the same task name with the same key returns the
   * first task's id and writes nothing. Keys are scoped per task name, last
   * as long as the task row (retention prunes it, and the key is free
   * again), and may not start with "schedule:" (the scheduler's fires).
   */
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

/** Idempotency keys the scheduler writes (src/scheduler/fire.ts fireKey); callers may not use them. */
export const RESERVED_KEY_PREFIX = 'schedule:'
/** The earliest runAt: older dates are surely a bug, and Postgres refuses those before 4714 BC. */
const MIN_RUN_AT = new Date(0)

/** runAt within 1970 .. now + MAX_DELAY_MS, the range a delayMs can reach too. */
function checkRunAt(d: Date, ctx: z.RefinementCtx): void {
  const latest = new Date(Date.now() + MAX_DELAY_MS)
  if (Number.isNaN(d.getTime()) || (d >= MIN_RUN_AT && d <= latest)) return
  const message = `must be between ${MIN_RUN_AT.toISOString()} and 10 years from now (${latest.toISOString()}), got ${d.toISOString()}`
  ctx.addIssue({ code: 'custom', message })
}

const enqueueOptionsSchema = z
  .strictObject({
    runAt: z.date().refine((d) => !Number.isNaN(d.getTime()), 'invalid date').superRefine(checkRunAt).optional(),
    // Integer check as a refinement, after max: z.int() would add a second complaint to a huge value.
    delayMs: z
      .number()
      .min(0, 'must not be negative')
      .max(MAX_DELAY_MS, `must be at most ${MAX_DELAY_MS} ms (10 years)`)
      .refine(Number.isInteger, 'must be an integer number of ms')
      .optional(),
    priority: z.number().int().min(-1000).max(1000).optional(),
    queue: z.string().regex(QUEUE_PATTERN, 'use 1-100 characters from A-Z a-z 0-9 _ . -').optional(),
    maxAttempts: z.number().int().min(1).max(1000).optional(),
    idempotencyKey: z
      .string()
      .min(1)
      .max(500)
      .refine((k) => !k.includes('\u0000'), 'contains the NUL character (\\u0000), which PostgreSQL cannot store; remove it')
      .refine((k) => k.isWellFormed(), 'contains a lone UTF-16 surrogate, which PostgreSQL cannot store; make it well-formed with str.toWellFormed()')
      .refine((k) => !k.startsWith(RESERVED_KEY_PREFIX), `the prefix "${RESERVED_KEY_PREFIX}" is reserved for the scheduler's fires; use another prefix`)
      .optional(),
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

/** Enqueue options checked as prepareTask() checks them (the CLI's SQL path uses this alone); InvalidOptionsError names `where`. */
export function parseEnqueueOptions(where: string, options: EnqueueOptions | undefined): z.output<typeof enqueueOptionsSchema> {
  if (options === undefined) return {}
  const parsed = enqueueOptionsSchema.safeParse(options)
  if (!parsed.success) throw new InvalidOptionsError(where, zodProblems(parsed.error))
  return parsed.data
}

/**
 * Validate everything before any SQL runs, so bad input writes nothing.
 */
export function prepareTask(task: Task, payload: unknown, options: EnqueueOptions | undefined, maxPayloadBytes: number): PreparedTask {
  const opts = parseEnqueueOptions(`enqueue options for task "${task.name}"`, options)
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
  // Refused here, not by jsonb: a refused INSERT would abort the caller's transaction.
  const unstorable = jsonbProblem(payloadJson)
  if (unstorable !== null) throw new PayloadValidationError(task.name, [splitProblem(unstorable)])
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

/** jsonbProblem()'s ".a.b[2]: contains ..." as an issue { path: 'a.b[2]', message: 'contains ...' }. */
function splitProblem(problem: string): { path: string; message: string } {
  const at = problem.lastIndexOf(': contains ')
  if (at < 0) return { path: '', message: problem }
  return { path: problem.slice(0, at).replace(/^\./, ''), message: problem.slice(at + 2) }
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
