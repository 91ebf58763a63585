import { z } from 'zod/v4'
import type { Logger } from 'pino'
import { InvalidOptionsError } from './errors.ts'
import { delayMs, maxAttemptsSchema, prioritySchema, queueNameSchema, strictOptions, taskNameSchema, timerMs, zodProblems } from './config.ts'
import { parseQueueSettings, type QueueSettings, type QueueSettingsRow } from './queue-settings.ts'
import { clampDelayMs } from './duration.ts'
import type { TaskRecord } from './task-record.ts'
import type { TaskScheduleSpec } from './scheduler/spec.ts'
import type { Queryable } from './db/executor.ts'

/** How long to wait before attempt n+1 after attempt n failed. */
export type BackoffPolicy =
  | { type: 'exponential'; baseMs?: number; maxMs?: number; jitter?: boolean }
  | { type: 'fixed'; delayMs: number; jitter?: boolean }
  | ((attempt: number, error: Error) => number)

/** What a handler gets besides its payload. */
export interface TaskContext {
  /** Aborted on timeout, cancellation, lost lease or forced shutdown. */
  readonly signal: AbortSignal
  /** 1 for the first attempt. */
  readonly attempt: number
  readonly task: Pick<TaskRecord, 'id' | 'name' | 'queue' | 'attempt' | 'maxAttempts' | 'priority' | 'createdAt'> & {
    /** the workflow this task is a step of (null: none); add steps to it with enqueueWorkflow(trx, flow, { addTo }) */
    readonly workflowId: string | null
  }
  /** Child logger carrying taskId, task name, queue and attempt. */
  readonly log: Logger
  /** Renew the lease now (leases are also renewed automatically). Throws LeaseLostError if it is gone. */
  heartbeat(): Promise<void>
  /**
   * Finish this attempt as succeeded with `result`, inside your own
   * transaction on taskrelay's database (a Kysely Transaction or a pg client
   * after BEGIN): your writes, tasks enqueued in it and this task's success
   * commit together or not at all. Throws LeaseLostError when the attempt is
   * no longer current (its lease expired and another attempt took the task,
   * or it was cancelled), so your transaction rolls back. The worker writes
   * no outcome of its own afterwards: the handler's return value is ignored,
   * and if the transaction did not commit, the task is retried once its lease
   * expires.
   */
  complete(trx: Queryable, result?: unknown): Promise<void>
  /**
   * The remote side rate-limits (an HTTP 429, say): end this attempt and run
   * the task again after `retryAfterMs` (0 .. 24 h) without spending an
   * attempt; its group (or queue, for a task with no group) starts nothing
   * before then, on every worker. Throws, so nothing after it runs.
   */
  rateLimited(retryAfterMs: number): never
  /**
   * Report how far this attempt got: `value` from 0 to 100, `info` any small
   * JSON (≤ 8 KiB). Throttled (the latest report of each attempt is written
   * at most once a second per worker), visible in getTask().progress,
   * `taskrelay status`, the dashboard and tr.events. Throws
   * InvalidOptionsError for a bad value; never waits.
   */
  progress(value: number, info?: unknown): void
}

/**
 * Standard Schema v1 (standardschema.dev), the types-only spec that zod 3.24+
 * and 4, valibot and arktype implement: what a task's payload schema must be.
 * Written out here rather than imported: the spec asks libraries to copy it.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1
    readonly vendor: string
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>
    readonly types?: { readonly input: Input; readonly output: Output } | undefined
  }
}
export type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<{ readonly message: string; readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined }> }
/** What a schema accepts (enqueue's payload type). */
export type InferInput<S extends StandardSchemaV1> = NonNullable<S['~standard']['types']>['input']
/** What a schema produces (the handler's payload type). */
export type InferOutput<S extends StandardSchemaV1> = NonNullable<S['~standard']['types']>['output']

export interface PayloadIssue {
  path: string
  message: string
}
/** A validation: the parsed value, or the schema's issues. */
export type PayloadCheck = { ok: true; value: unknown } | { ok: false; issues: PayloadIssue[] }

export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  // arktype's schemas are functions, the others objects.
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false
  const std = (value as Partial<StandardSchemaV1>)['~standard']
  return typeof std === 'object' && std !== null && std.version === 1 && typeof std.validate === 'function'
}

/** Validate with the schema; a Promise only when the schema itself validates asynchronously. */
export function validatePayload(schema: StandardSchemaV1, value: unknown): PayloadCheck | Promise<PayloadCheck> {
  const result = schema['~standard'].validate(value)
  return result instanceof Promise ? result.then(toCheck) : toCheck(result)
}

function toCheck(result: StandardResult<unknown>): PayloadCheck {
  if (!result.issues) return { ok: true, value: (result as { value: unknown }).value }
  const issues = result.issues.map((i) => ({
    path: (i.path ?? []).map((seg) => String(typeof seg === 'object' && seg !== null ? seg.key : seg)).join('.'),
    message: i.message,
  }))
  // A failure with no issues still fails, and says so.
  return { ok: false, issues: issues.length > 0 ? issues : [{ path: '', message: 'rejected by the schema (no issues given)' }] }
}

/** "a.b: message; c: message", for one-line error texts. */
export function formatIssues(issues: readonly PayloadIssue[]): string {
  return issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')
}

export interface TaskPolicy {
  queue: string
  priority: number
  maxAttempts: number
  backoff: BackoffPolicy
  /** Abort ctx.signal and count the attempt as failed after this long. 0 = no limit. */
  timeoutMs: number
}

export interface TaskDefinition<S extends StandardSchemaV1, R> extends Partial<TaskPolicy> {
  /** Unique, stable name; stored in each row. 1-200 of A-Z a-z 0-9 _ . : / - */
  name: string
  /** Validates payloads at enqueue (input type) and again before running (output type): a zod schema, or any Standard Schema. */
  payload: S
  run(payload: InferOutput<S>, ctx: TaskContext): R | Promise<R>
  /** Periodic schedules synced by the scheduler at start (see src/scheduler). */
  schedules?: ReadonlyArray<Omit<TaskScheduleSpec, 'payload'> & { payload?: InferInput<S> }>
  /**
   * The queue's flow settings (limits, rates), synced into Postgres when a
   * worker starts; settings changed at run time (configure(), the CLI, SQL)
   * are kept. Tasks of one queue that declare settings must declare the same.
   */
  queueSettings?: QueueSettings
}

const TASK_BRAND: unique symbol = Symbol.for('taskrelay.task')

/** A typed task handle: pass it to enqueue and to workers. */
export interface Task<S extends StandardSchemaV1 = StandardSchemaV1, R = unknown> {
  readonly [TASK_BRAND]: true
  readonly name: string
  readonly payload: S
  readonly policy: Readonly<TaskPolicy>
  readonly schedules: ReadonlyArray<TaskScheduleSpec>
  /** the queue settings it declares, in stored form (null: none) */
  readonly queueSettings: QueueSettingsRow | null
  // A method, so a Task of any schema is a Task (its parameter is then bivariant).
  run(payload: InferOutput<S>, ctx: TaskContext): R | Promise<R>
}

/** The payload type `enqueue` accepts for a task. */
export type PayloadOf<T> = T extends Task<infer S, any> ? InferInput<S> : never
/** The result type a task's handler returns. */
export type ResultOf<T> = T extends Task<any, infer R> ? Awaited<R> : never

const backoffSchema = z.union([
  strictOptions({
    type: z.literal('exponential'),
    baseMs: delayMs(1).optional(),
    maxMs: delayMs(1).optional(),
    jitter: z.boolean().optional(),
  }),
  strictOptions({ type: z.literal('fixed'), delayMs: delayMs(0), jitter: z.boolean().optional() }),
  z.custom<(attempt: number, error: Error) => number>((v) => typeof v === 'function', 'expected a function'),
])

const SCHEMA_REQUIRED =
  'expected a zod schema (zod 3.25.1 or later) or another schema implementing Standard Schema v1, such as valibot 1 or arktype 2 (it has ["~standard"].validate)'

const definitionSchema = strictOptions({
  name: taskNameSchema,
  payload: z.custom<StandardSchemaV1>(isStandardSchema, SCHEMA_REQUIRED),
  run: z.custom<() => unknown>((v) => typeof v === 'function', 'expected a function'),
  queue: queueNameSchema.default('default'),
  priority: prioritySchema.default(0),
  maxAttempts: maxAttemptsSchema.default(3),
  backoff: backoffSchema.default({ type: 'exponential', baseMs: 1000, maxMs: 3_600_000, jitter: true }),
  // Drives the attempt's timer: a longer one would fire after 1 ms.
  timeoutMs: timerMs(0).default(0),
  // Checked in depth by the scheduler (cron syntax, time zone, payload).
  schedules: z.array(z.looseObject({ name: z.string().min(1) })).default([]),
  // Checked in depth by parseQueueSettings below.
  queueSettings: z.looseObject({}).optional(),
})

/**
 * Define a task: its name, payload schema, handler and retry policy.
 *
 * @example
 * const sendWelcome = defineTask({
 *   name: 'email.welcome',
 *   payload: z.object({ userId: z.number() }),
 *   maxAttempts: 5,
 *   async run({ userId }, ctx) { await mailer.send(userId, { signal: ctx.signal }) },
 * })
 */
export function defineTask<S extends StandardSchemaV1, R>(definition: TaskDefinition<S, R>): Task<S, R> {
  const parsed = definitionSchema.safeParse(definition)
  if (!parsed.success) {
    throw new InvalidOptionsError(`task definition${typeof definition?.name === 'string' ? ` "${definition.name}"` : ''}`, zodProblems(parsed.error))
  }
  const d = parsed.data
  const where = `queueSettings of task "${d.name}"`
  const queueSettings = definition.queueSettings === undefined ? null : Object.freeze(parseQueueSettings(where, definition.queueSettings))
  return Object.freeze({
    [TASK_BRAND]: true as const,
    name: d.name,
    payload: definition.payload,
    run: definition.run,
    schedules: Object.freeze([...(definition.schedules ?? [])]) as ReadonlyArray<TaskScheduleSpec>,
    queueSettings,
    policy: Object.freeze({
      queue: d.queue,
      priority: d.priority,
      maxAttempts: d.maxAttempts,
      backoff: d.backoff as BackoffPolicy,
      timeoutMs: d.timeoutMs,
    }),
  })
}

export function isTask(value: unknown): value is Task {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[TASK_BRAND] === true
}

/**
 * Tasks by name, the one way to index them (worker, scheduler, CLI loader):
 * the same name on two different handles is a conflict (which would run?),
 * reported by index so each caller words it for its own input.
 */
export function tasksByName(tasks: readonly unknown[]): { byName: Map<string, Task>; notTasks: number[]; conflicts: Array<{ index: number; name: string }> } {
  const byName = new Map<string, Task>()
  const notTasks: number[] = []
  const conflicts: Array<{ index: number; name: string }> = []
  for (const [index, task] of tasks.entries()) {
    if (!isTask(task)) {
      notTasks.push(index)
      continue
    }
    const seen = byName.get(task.name)
    if (seen && seen !== task) conflicts.push({ index, name: task.name })
    else byName.set(task.name, task)
  }
  return { byName, notTasks, conflicts }
}

/** Milliseconds to wait before the next attempt, after `attempt` failed. */
export function backoffDelay(policy: BackoffPolicy, attempt: number, error: Error, random = Math.random): number {
  if (typeof policy === 'function') {
    const ms = policy(attempt, error)
    // A NaN/Infinity/negative from user code must not park the task forever or spin.
    if (typeof ms !== 'number' || !Number.isFinite(ms)) throw new TypeError(`backoff function returned ${String(ms)}; return a finite number of ms`)
    return clampDelayMs(ms)
  }
  let delay: number
  if (policy.type === 'fixed') delay = policy.delayMs
  else {
    const base = policy.baseMs ?? 1000
    const max = policy.maxMs ?? 3_600_000
    delay = Math.min(max, base * 2 ** Math.min(attempt - 1, 40))
  }
  // "Equal jitter": spread retries of a burst of failures over [d/2, d].
  if (policy.jitter ?? policy.type === 'exponential') delay = delay / 2 + random() * (delay / 2)
  // A policy built without defineTask is unchecked: the result must still fit run_at.
  return clampDelayMs(delay)
}

/**
 * Input of tr.schedules.upsert(): a schedule plus its task, given
 * as the handle from defineTask (payload type-checked) or by name (looked up
 * in the tasks passed alongside).
 */
export interface ScheduleSpec<T extends Task = Task> extends Omit<TaskScheduleSpec, 'payload'> {
  task: T | string
  payload?: PayloadOf<T>
}
