/**
 * Every error taskrelay throws on purpose is a {@link TaskRelayError} with a
 * stable `code`. Messages say what was wrong and what to do; context goes in
 * properties, never spliced into someone else's message.
 *
 * @example
 * try { await tr.enqueue(trx, sendEmail, input) }
 * catch (err) { if (err instanceof PayloadValidationError) console.log(err.issues) }
 */
export class TaskRelayError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** The payload did not match the task's zod schema. Nothing was written. */
export class PayloadValidationError extends TaskRelayError {
  readonly taskName: string
  readonly issues: ReadonlyArray<{ path: string; message: string }>
  constructor(taskName: string, issues: ReadonlyArray<{ path: string; message: string }>) {
    const list = issues.map((i) => `  - ${i.path || '(root)'}: ${i.message}`).join('\n')
    super('PAYLOAD_INVALID', `payload for task "${taskName}" is invalid:\n${list}`)
    this.taskName = taskName
    this.issues = issues
  }
}

/** The payload cannot be stored: not JSON-serialisable or over the size limit. */
export class PayloadTooLargeError extends TaskRelayError {
  constructor(taskName: string, bytes: number, limit: number) {
    super(
      'PAYLOAD_TOO_LARGE',
      `payload for task "${taskName}" is ${bytes} bytes, over the limit of ${limit} bytes; ` +
        'store large data elsewhere and enqueue a reference, or raise maxPayloadBytes',
    )
  }
}

/** The payload is not JSON (cycles, BigInt, functions...). */
export class PayloadNotSerializableError extends TaskRelayError {
  constructor(taskName: string, reason: string) {
    super('PAYLOAD_NOT_JSON', `payload for task "${taskName}" cannot be stored as JSON: ${reason}`)
  }
}

/** Options given to enqueue, defineTask or a service were invalid. */
export class InvalidOptionsError extends TaskRelayError {
  readonly problems: readonly string[]
  constructor(where: string, problems: readonly string[]) {
    super('OPTIONS_INVALID', `invalid ${where}:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.problems = problems
  }
}

/** A workflow that cannot be enqueued (an empty group, a step that is no task, too many steps, …); nothing was written. */
export class InvalidWorkflowError extends TaskRelayError {
  readonly problems: readonly string[]
  constructor(problems: readonly string[]) {
    super('WORKFLOW_INVALID', `invalid workflow, nothing was enqueued:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.problems = problems
  }
}

/** Thrown by waitForWorkflow when a step failed or the workflow was cancelled. */
export class WorkflowFailedError extends TaskRelayError {
  readonly workflowId: string
  readonly state: string
  readonly failedTaskId: string | null
  constructor(workflowId: string, state: string, failedTaskId: string | null, message: string | null) {
    super('WORKFLOW_FAILED', `workflow ${workflowId} ${state}${failedTaskId ? ` at task ${failedTaskId}` : ''}${message ? `: ${message}` : ''}`)
    this.workflowId = workflowId
    this.state = state
    this.failedTaskId = failedTaskId
  }
}

/** Configuration could not be resolved; every problem is listed. */
export class ConfigError extends TaskRelayError {
  readonly problems: readonly string[]
  constructor(problems: readonly string[]) {
    super('CONFIG_INVALID', `invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.problems = problems
  }
}

/** Transactional enqueue was asked for, but the given executor is not inside a transaction. */
export class TransactionRequiredError extends TaskRelayError {
  constructor(detail: string) {
    super(
      'TRANSACTION_REQUIRED',
      `enqueue(trx, ...) needs a transaction: ${detail}. ` +
        'Call it inside db.transaction().execute(...) or after BEGIN on a pg client, ' +
        'or call enqueue(task, payload) without trx to commit on its own.',
    )
  }
}

/** The database schema is older (or newer) than this version of taskrelay expects. */
export class SchemaVersionError extends TaskRelayError {
  /** the latest migration applied (0: none) */
  readonly found: number
  /** the latest migration this version ships */
  readonly expected: number
  readonly schema: string
  constructor(found: number, expected: number, schema: string) {
    super(
      'SCHEMA_VERSION',
      `schema "${schema}" is at migration ${found}, this taskrelay expects ${expected}; ` +
        'run `taskrelay migrate` (or tr.migrate()) first',
    )
    this.found = found
    this.expected = expected
    this.schema = schema
  }
}

/** A task id that does not exist. */
export class TaskNotFoundError extends TaskRelayError {
  readonly taskId: string
  constructor(taskId: string) {
    super('TASK_NOT_FOUND', `task ${taskId} does not exist (it may have been pruned after retention)`)
    this.taskId = taskId
  }
}

/** enqueue with dependsOn named tasks that do not exist; nothing was written. */
export class DependencyNotFoundError extends TaskRelayError {
  readonly taskIds: readonly string[]
  constructor(taskIds: readonly string[]) {
    super(
      'DEPENDENCY_NOT_FOUND',
      `dependsOn names task${taskIds.length === 1 ? '' : 's'} that do${taskIds.length === 1 ? 'es' : ''} not exist: ${taskIds.join(', ')} ` +
        '(enqueue the tasks it depends on first, in the same transaction or before)',
    )
    this.taskIds = taskIds
  }
}

/** Thrown by waitFor when the task ended in failed or cancelled. */
export class TaskFailedError extends TaskRelayError {
  readonly task: unknown
  constructor(taskId: string, state: string, message: string | undefined, task: unknown) {
    super('TASK_FAILED', `task ${taskId} ended ${state}${message ? `: ${message}` : ''}`)
    this.task = task
  }
}

/** Thrown by waitFor when the timeout passed before the task finished. */
export class WaitTimeoutError extends TaskRelayError {
  constructor(taskId: string, timeoutMs: number) {
    super('WAIT_TIMEOUT', `task ${taskId} did not finish within ${timeoutMs} ms`)
  }
}

/**
 * Throw from a handler to fail the task at once, without using the remaining
 * attempts (BullMQ's UnrecoverableError, River's JobCancel).
 */
export class NonRetryableError extends TaskRelayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NON_RETRYABLE', message, options)
  }
}

/**
 * Thrown by `ctx.rateLimited(retryAfterMs)` (or by a handler itself): the
 * remote side said "too many requests". The task goes back to pending and
 * runs again after retryAfterMs without spending an attempt, and its group
 * (or its queue, for a task with no group) starts nothing before then.
 */
export class RateLimitedError extends TaskRelayError {
  readonly retryAfterMs: number
  constructor(retryAfterMs: number, message = `rate-limited by the remote side: retry in ${Math.round(retryAfterMs)} ms`) {
    super('RATE_LIMITED', message)
    this.retryAfterMs = retryAfterMs
  }
}

/**
 * A fenced write matched nothing: this worker no longer owns the attempt
 * (lease expired and the task was handed to someone else, or it was cancelled).
 */
export class LeaseLostError extends TaskRelayError {
  constructor(taskId: string, attempt: number, why?: string) {
    super('LEASE_LOST', `task ${taskId} attempt ${attempt} is no longer owned by this worker${why ? `: ${why}` : ''}`)
  }
}

/** The abort reason (ctx.signal.reason) of an attempt that ran past its task's timeoutMs; the attempt fails and is retried. */
export class TaskTimeoutError extends TaskRelayError {
  constructor(timeoutMs: number) {
    super('TASK_TIMEOUT', `handler did not finish within timeoutMs (${timeoutMs} ms)`)
  }
}

/**
 * A schedule definition is invalid (cron, time zone, interval, payload,
 * unknown task, conflicting declarations). Nothing was written.
 *
 * @example
 * try { await tr.schedules.upsert({ name: 'nightly', task: report, cron: '0 61 * * *' }) }
 * catch (err) { if (err instanceof ScheduleError) console.log(err.scheduleName, err.problems) }
 */
export class ScheduleError extends TaskRelayError {
  /** The schedule's name, or null when it had none. */
  readonly scheduleName: string | null
  readonly problems: readonly string[]
  constructor(scheduleName: string | null, problems: readonly string[], options?: { cause?: unknown }) {
    const which = scheduleName === null ? 'schedule (unnamed)' : `schedule "${scheduleName}"`
    super('SCHEDULE_INVALID', `invalid ${which}:\n${problems.map((p) => `  - ${p}`).join('\n')}`, options)
    this.scheduleName = scheduleName
    this.problems = problems
  }
}

/** No schedule has this name. */
export class ScheduleNotFoundError extends TaskRelayError {
  readonly scheduleName: string
  constructor(scheduleName: string) {
    super('SCHEDULE_NOT_FOUND', `schedule "${scheduleName}" does not exist`)
    this.scheduleName = scheduleName
  }
}

/** Turn anything thrown into an Error without rewriting it. */
export function coerceError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown
  let text: string
  try {
    text = typeof thrown === 'string' ? thrown : JSON.stringify(thrown) ?? String(thrown)
  } catch {
    text = String(thrown)
  }
  const err = new Error(`non-Error thrown: ${text}`)
  err.name = 'NonErrorThrown'
  return err
}

/**
 * Task filters (src/admin/) that cannot be used. Each problem names the
 * filter field (`since`, or `after` and `offset` together); callers spell the
 * fields their own way (a CLI flag, a query parameter) from `problems`.
 */
export class InvalidFiltersError extends TaskRelayError {
  readonly problems: ReadonlyArray<{ fields: readonly string[]; message: string }>
  constructor(problems: ReadonlyArray<{ fields: readonly string[]; message: string }>) {
    super('FILTERS_INVALID', `invalid filters:\n${problems.map((p) => `  - ${p.fields.join(' and ')}: ${p.message}`).join('\n')}`)
    this.problems = problems
  }
}

/** ctx.signal's reason for attempts still running when their worker stops (they are handed back). */
export class ShutdownError extends TaskRelayError {
  constructor() {
    super('WORKER_SHUTDOWN', 'worker shut down before the task finished')
  }
}
