import type { PreparedTask } from './db/task-insert.ts'
import { enqueueTraceParent } from './otel/producer.ts'
import { z } from 'zod/v4'
import { validatePayload, type PayloadCheck, type PayloadOf, type Task } from './define-task.ts'
import { delayMs, maxAttemptsSchema, prioritySchema, queueNameSchema, strictOptions, zodProblems } from './config.ts'
import { toTaskId } from './task-record.ts'
import { InvalidOptionsError, PayloadNotSerializableError, PayloadTooLargeError, PayloadValidationError } from './errors.ts'
import { MAX_DELAY_MS, parseDuration } from './duration.ts'
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
  /**
   * The task's group within its queue, such as a tenant id (1-200
   * characters). Groups take turns, and the queue's groupConcurrency and
   * groupRateLimit apply to each group (tr.queue(name).configure()).
   */
  groupKey?: string
  /**
   * With idempotencyKey: the key dedupes only this long after the first
   * enqueue (ms, or a duration such as '10m'); a later enqueue creates a new task.
   */
  idempotencyWindow?: number | string
  /**
   * At most one unfinished (waiting, pending or running) task of this task
   * name per key: a second enqueue returns the first task's id with
   * outcome 'existing' and writes nothing.
   */
  singletonKey?: string
  /**
   * Debounce: the task runs `delay` after the last enqueue with this key,
   * with the last payload. An enqueue while the key's task is still pending
   * (not started) replaces its payload and pushes its run time back, but
   * never past `maxWait` after the first enqueue; it returns that task's id
   * with outcome 'debounced'. Once the task has started, a new one is created.
   */
  debounce?: { key: string; delay: number | string; maxWait?: number | string }
}

/** What enqueue returns: the task's id, and whether this call created it. */
export interface EnqueueResult {
  id: string
  /**
   * 'created': a new task. 'existing': an earlier task with the same
   * idempotencyKey (within its window) or singletonKey; this payload was not
   * used. 'debounced': the key's pending task now carries this payload.
   */
  outcome: 'created' | 'existing' | 'debounced'
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

/** A key Postgres can store: 1-500 well-formed characters, no NUL. */
function keySchema(max: number) {
  return z
    .string()
    .min(1)
    .max(max)
    .refine((k) => !k.includes('\u0000'), 'contains the NUL character (\\u0000), which PostgreSQL cannot store; remove it')
    .refine((k) => k.isWellFormed(), 'contains a lone UTF-16 surrogate, which PostgreSQL cannot store; make it well-formed with str.toWellFormed()')
}

/** A duration in ms or as text ('10m'), within 1 ms .. MAX_DELAY_MS. */
const windowSchema = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = typeof v === 'number' ? v : parseDuration(v)
  if (ms === null || !Number.isFinite(ms) || ms < 1 || ms > MAX_DELAY_MS) {
    ctx.addIssue({ code: 'custom', message: `expected milliseconds (1 .. 10 years) or a duration such as "30s", "10m"; got ${JSON.stringify(v)}` })
    return z.NEVER
  }
  return Math.round(ms)
})

const debounceSchema = z.object(
  {
    key: keySchema(500),
    delay: windowSchema,
    maxWait: windowSchema.optional(),
  },
  { error: 'expected { key, delay, maxWait? }' },
).strict()

const enqueueOptionsSchema = strictOptions({
  runAt: z.date().refine((d) => !Number.isNaN(d.getTime()), 'invalid date').superRefine(checkRunAt).optional(),
  delayMs: delayMs(0).optional(),
  priority: prioritySchema.optional(),
  queue: queueNameSchema.optional(),
  maxAttempts: maxAttemptsSchema.optional(),
  idempotencyKey: keySchema(500)
    .refine((k) => !k.startsWith(RESERVED_KEY_PREFIX), `the prefix "${RESERVED_KEY_PREFIX}" is reserved for the scheduler's fires; use another prefix`)
    .optional(),
  groupKey: keySchema(200).optional(),
  idempotencyWindow: windowSchema.optional(),
  singletonKey: keySchema(500).optional(),
  debounce: debounceSchema.optional(),
  dependsOn: z.array(taskId).min(1, 'give at least one id, or leave dependsOn out').max(MAX_DEPENDENCIES).readonly().optional(),
})
  .refine((o) => o.runAt === undefined || o.delayMs === undefined, {
    message: 'give runAt or delayMs, not both',
    path: ['delayMs'],
  })
  .refine((o) => o.idempotencyWindow === undefined || o.idempotencyKey !== undefined, {
    message: 'a window needs an idempotencyKey to apply to',
    path: ['idempotencyWindow'],
  })
  .refine((o) => [o.idempotencyKey, o.singletonKey, o.debounce].filter((k) => k !== undefined).length <= 1, {
    message: 'give one of idempotencyKey, singletonKey and debounce',
    path: ['singletonKey'],
  })
  .refine((o) => o.debounce === undefined || (o.runAt === undefined && o.delayMs === undefined), {
    message: 'a debounced task runs debounce.delay after the last enqueue; leave runAt and delayMs out',
    path: ['debounce'],
  })
  .refine((o) => o.dependsOn === undefined || (o.singletonKey === undefined && o.debounce === undefined && o.idempotencyWindow === undefined), {
    message: 'a task with dependsOn cannot be a singleton, debounced or have an idempotencyWindow',
    path: ['dependsOn'],
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
        idempotencyKey: opts.idempotencyWindow === undefined ? (opts.idempotencyKey ?? null) : null,
        groupKey: opts.groupKey ?? '',
        keyed: keyedEnqueue(opts),
        dependsOn: opts.dependsOn ? [...new Set(opts.dependsOn.map((id) => String(toTaskId(id))))] : null,
        traceParent: enqueueTraceParent(),
      }
    })
  })
}

/** The enqueue_keyed() call an option asks for (a windowed idempotency key, a singleton, a debounce), or null. */
function keyedEnqueue(o: z.output<typeof enqueueOptionsSchema>): PreparedTask['keyed'] {
  if (o.idempotencyKey !== undefined && o.idempotencyWindow !== undefined) {
    return { kind: 'idempotency', key: o.idempotencyKey, windowMs: o.idempotencyWindow, maxWaitMs: null }
  }
  if (o.singletonKey !== undefined) return { kind: 'singleton', key: o.singletonKey, windowMs: null, maxWaitMs: null }
  if (o.debounce !== undefined) return { kind: 'debounce', key: o.debounce.key, windowMs: o.debounce.delay, maxWaitMs: o.debounce.maxWait ?? null }
  return null
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
