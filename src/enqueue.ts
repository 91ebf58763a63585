import type { PreparedTask } from './db/task-insert.ts'
import { z } from 'zod/v4'
import { validatePayload, type PayloadCheck, type PayloadOf, type Task } from './define-task.ts'
import { delayMs, maxAttemptsSchema, prioritySchema, queueNameSchema, strictOptions, zodProblems } from './config.ts'
import { toTaskId } from './task-record.ts'
import { InvalidOptionsError, PayloadNotSerializableError, PayloadTooLargeError, PayloadValidationError } from './errors.ts'
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

const enqueueOptionsSchema = strictOptions({
  runAt: z.date().refine((d) => !Number.isNaN(d.getTime()), 'invalid date').superRefine(checkRunAt).optional(),
  delayMs: delayMs(0).optional(),
  priority: prioritySchema.optional(),
  queue: queueNameSchema.optional(),
  maxAttempts: maxAttemptsSchema.optional(),
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

/** One enqueue of a batch. */
export interface EnqueueItem<T extends Task = Task> {
  task: T
  payload: PayloadOf<T>
  options?: EnqueueOptions
}

/** Each item's payload is checked against its own task's schema at compile time. */
export type EnqueueItems<T extends readonly Task<any, any>[]> = {
  readonly [K in keyof T]: { task: T[K]; payload: PayloadOf<T[K]>; options?: EnqueueOptions }
}

/** Enqueue options checked as prepareTask() checks them (the CLI's SQL path uses this alone); InvalidOptionsError names `where`. */
export function parseEnqueueOptions(where: string, options: EnqueueOptions | undefined): z.output<typeof enqueueOptionsSchema> {
  if (options === undefined) return {}
  const parsed = enqueueOptionsSchema.safeParse(options)
  if (!parsed.success) throw new InvalidOptionsError(where, zodProblems(parsed.error))
  return parsed.data
}

/**
 * Validate everything before any SQL runs, so bad input writes nothing. For
 * callers that cannot wait (a schedule checked at construction, the CLI's
 * check before connecting); a schema that validates asynchronously is refused
 * here with a clear error: use prepareTaskAwaitable.
 */
export function prepareTask(task: Task, payload: unknown, options: EnqueueOptions | undefined, maxPayloadBytes: number): PreparedTask {
  const prepared = prepareTaskAwaitable(task, payload, options, maxPayloadBytes)
  if (!(prepared instanceof Promise)) return prepared
  prepared.catch(() => {}) // abandoned: its outcome is not wanted
  throw new PayloadValidationError(task.name, [
    { path: '', message: 'its schema validates asynchronously (an async refinement?), and this check cannot wait; use a schema that validates synchronously' },
  ])
}

/**
 * prepareTask for callers that can wait: any Standard Schema, sync or async.
 * Synchronous all the way (it throws) unless the schema answers with a
 * Promise, which zod, valibot and arktype do only for async refinements; so
 * an enqueue reaches its group commit in the call itself (see close()).
 */
export function prepareTaskAwaitable(
  task: Task,
  payload: unknown,
  options: EnqueueOptions | undefined,
  maxPayloadBytes: number,
): PreparedTask | Promise<PreparedTask> {
  const opts = parseEnqueueOptions(`enqueue options for task "${task.name}"`, options)
  return then(validatePayload(task.payload, payload), (sent) => {
    if (!sent.ok) throw new PayloadValidationError(task.name, sent.issues)
    const payloadJson = toStoredJson(task, payload, maxPayloadBytes)
    // The worker sees the payload after a JSON round trip: a z.date() or a Map
    // passes here and would fail there on every attempt. Check that form too.
    return then(validatePayload(task.payload, JSON.parse(payloadJson)), (stored) => {
      if (!stored.ok) {
        throw new PayloadValidationError(
          task.name,
          stored.issues.map((i) => ({
            path: i.path,
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
    })
  })
}

function then<R>(check: PayloadCheck | Promise<PayloadCheck>, next: (check: PayloadCheck) => R | Promise<R>): R | Promise<R> {
  return check instanceof Promise ? check.then(next) : next(check)
}

/**
 * The JSON stored for a valid payload: what the caller sent (the schema's
 * input), not the parsed output, since the worker parses again, so transforms
 * and defaults run exactly once, there. Only a missing payload becomes {}: a
 * null the schema accepted is stored as JSON null, or the worker would parse
 * {} against a schema that wanted null.
 */
function toStoredJson(task: Task, payload: unknown, maxPayloadBytes: number): string {
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
  return payloadJson
}

/** jsonbProblem()'s ".a.b[2]: contains ..." as an issue { path: 'a.b[2]', message: 'contains ...' }. */
function splitProblem(problem: string): { path: string; message: string } {
  const at = problem.lastIndexOf(': contains ')
  if (at < 0) return { path: '', message: problem }
  return { path: problem.slice(0, at).replace(/^\./, ''), message: problem.slice(at + 2) }
}
