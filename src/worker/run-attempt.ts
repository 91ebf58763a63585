import { backoffDelay, formatIssues, validatePayload, type PayloadCheck, type Task } from '../define-task.ts'
import { NonRetryableError, RateLimitedError, TaskTimeoutError, coerceError } from '../errors.ts'
import type { TaskErrorRecord } from '../task-record.ts'
import { clampDelayMs } from '../duration.ts'
import { jsonbProblem, storableText, truncateText } from '../jsonb.ts'
import { AttemptContext, type Attempt, type AttemptHost } from './attempt.ts'
import type { ClaimedTask } from '../db/worker-queries.ts'

/**
 * What one attempt decided; the completer turns it into the fenced UPDATE.
 * Every field is already storable: results are JSON Postgres accepts within
 * MAX_RESULT_BYTES, error texts are capped and well-formed, delays clamped.
 */
export type AttemptOutcome =
  | { state: 'succeeded'; result: string }
  | { state: 'pending' | 'failed' | 'throttled'; error: TaskErrorRecord; delayMs: number }

/** What runAttempt decided: an outcome to write, or none (ctx.complete() wrote it in the handler's transaction). */
export type AttemptResult = AttemptOutcome | { state: 'completed-in-transaction' }

const COMPLETED_IN_TRANSACTION: AttemptResult = { state: 'completed-in-transaction' }

/** Largest handler result stored, as JSON bytes; a larger one fails the attempt (invalid_result). */
export const MAX_RESULT_BYTES = 1024 * 1024
/** Longest stored error message, in characters; longer ones are cut and marked. */
export const MAX_ERROR_MESSAGE_CHARS = 8192
/** Longest stored stack trace, in characters. */
export const MAX_ERROR_STACK_CHARS = 4000

/** How long a handler may take to notice ctx.signal after a timeout before the failure is recorded anyway. */
export const ABORT_GRACE_MAX_MS = 5000

/**
 * The stored form of an error: every field read once and defensively (a
 * getter that throws must not turn a failure into a lost worker), then made
 * storable and capped, so one bad error cannot fail the outcome batch.
 */
export function errorRecord(error: Error, attempt: number, kind: string): TaskErrorRecord {
  const message = readText(() => error.message, '(the error\'s message could not be read)')
  const name = readText(() => error.name, 'Error')
  const stack = readText(() => error.stack, '')
  return {
    message: truncateText(storableText(message), MAX_ERROR_MESSAGE_CHARS),
    name: truncateText(storableText(name), 200),
    ...(stack ? { stack: truncateText(storableText(stack), MAX_ERROR_STACK_CHARS) } : {}),
    attempt,
    at: new Date().toISOString(),
    kind,
  }
}

function readText(read: () => unknown, fallback: string): string {
  try {
    const value = read()
    return typeof value === 'string' ? value : value === undefined || value === null ? fallback : String(value)
  } catch {
    return fallback
  }
}

/**
 * Run one attempt: check the task can run here, validate the payload, run the
 * handler under its timeout, and classify the result. Returns the outcome
 * directly when the handler returned without a promise. Handler errors become
 * outcomes; it throws (or rejects) only on a bug in taskrelay's own code.
 */
export function runAttempt(attempt: Attempt, task: Task, host: AttemptHost): AttemptResult | Promise<AttemptResult> {
  // A schema that throws is the task's failure, like its handler's; an async one costs a promise.
  let check: PayloadCheck | Promise<PayloadCheck>
  try {
    check = validatePayload(task.payload, attempt.claimed.payload)
  } catch (error) {
    return rejected(task, attempt, error)
  }
  if (!(check instanceof Promise)) return runChecked(attempt, task, host, check)
  return check.then(
    (c) => runChecked(attempt, task, host, c),
    (error: unknown) => rejected(task, attempt, error),
  )
}

function runChecked(attempt: Attempt, task: Task, host: AttemptHost, check: PayloadCheck): AttemptResult | Promise<AttemptResult> {
  const { claimed } = attempt
  if (!check.ok) {
    return failed(
      new NonRetryableError(`payload of task "${claimed.name}" (queue "${claimed.queue}") no longer matches its schema: ${formatIssues(check.issues)}`),
      claimed,
      'invalid_payload',
    )
  }

  attempt.handlerStarted = true
  let returned: unknown
  try {
    returned = task.run(check.value, new AttemptContext(attempt, host))
  } catch (error) {
    attempt.markHandlerDone(host)
    return rejected(task, attempt, error)
  }
  if (!isPromiseLike(returned)) {
    attempt.markHandlerDone(host)
    return returnedOutcome(attempt, returned)
  }
  return awaitHandler(attempt, task, host, returned)
}

/**
 * The first of: the handler settles; its timeout fires (abort, then up to a
 * grace for it to stop); another abort (lease lost, cancel, shutdown) plus a
 * grace. A handler that ignores its signal keeps its slot (markHandlerDone
 * waits for it), but its outcome is recorded on time.
 */
function awaitHandler(attempt: Attempt, task: Task, host: AttemptHost, handler: PromiseLike<unknown>): Promise<AttemptResult> {
  const { claimed } = attempt
  const timeoutMs = task.policy.timeoutMs
  return new Promise<AttemptResult>((resolve, reject) => {
    let finished = false
    let timer: NodeJS.Timeout | undefined
    let timedOut: TaskTimeoutError | undefined
    const finish = (outcome: () => AttemptResult) => {
      if (finished) return
      finished = true
      if (timer) clearTimeout(timer)
      attempt.onAbort(undefined)
      try {
        resolve(outcome())
      } catch (err) {
        reject(err)
      }
    }
    // After a timeout the attempt failed by timeout, however the handler then ends.
    const timeoutOutcome = () => retryOrFail(task, claimed, timedOut!, 'timeout')
    handler.then(
      (value) => {
        attempt.markHandlerDone(host)
        finish(timedOut ? timeoutOutcome : () => returnedOutcome(attempt, value))
      },
      (error: unknown) => {
        attempt.markHandlerDone(host)
        finish(timedOut ? timeoutOutcome : () => rejected(task, attempt, error))
      },
    )
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        timedOut = new TaskTimeoutError(timeoutMs)
        attempt.abort(timedOut)
        // Give the handler a moment to honour ctx.signal, so a retry rarely overlaps it.
        timer = setTimeout(() => {
          host.log(attempt).warn({ timeoutMs }, 'handler ignored ctx.signal after its timeout; recording the failure anyway')
          finish(timeoutOutcome)
        }, Math.min(ABORT_GRACE_MAX_MS, timeoutMs))
        timer.unref()
      }, timeoutMs)
    }
    // A lease lost or a cancel also aborts the signal: stop waiting after the grace.
    attempt.onAbort((reason) => {
      if (reason === timedOut) return // the timeout has its own grace
      setTimeout(() => finish(() => retryOrFail(task, claimed, reason, 'aborted')), Math.min(ABORT_GRACE_MAX_MS, Math.max(timeoutMs, 1000))).unref()
    })
  })
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function'
}

function returnedOutcome(attempt: Attempt, value: unknown): AttemptResult {
  return attempt.completedInTransaction ? COMPLETED_IN_TRANSACTION : storableResult(value, attempt.claimed)
}

/** A result Postgres cannot store, or larger than MAX_RESULT_BYTES, fails this attempt alone (invalid_result). */
export function storableResult(value: unknown, claimed: ClaimedTask): AttemptOutcome {
  let json: string
  try {
    json = JSON.stringify(value ?? null) ?? 'null'
  } catch (err) {
    return invalidResult(`is not JSON: ${readText(() => (err as Error).message, 'JSON.stringify failed')}`, claimed)
  }
  const problem = jsonbProblem(json)
  if (problem) return invalidResult(`cannot be stored: ${problem}`, claimed)
  // Only long strings can pass the limit; measuring bytes of every result would cost the drain.
  if (json.length > MAX_RESULT_BYTES / 3) {
    const bytes = Buffer.byteLength(json)
    if (bytes > MAX_RESULT_BYTES) {
      return invalidResult(`is ${bytes} bytes of JSON, over the limit of ${MAX_RESULT_BYTES}; store large results elsewhere and return a reference`, claimed)
    }
  }
  return { state: 'succeeded', result: json }
}

function invalidResult(why: string, claimed: ClaimedTask): AttemptOutcome {
  return failed(new NonRetryableError(`the result of task "${claimed.name}" ${why}`), claimed, 'invalid_result')
}

function rejected(task: Task, attempt: Attempt, thrown: unknown): AttemptOutcome {
  let error: Error
  try {
    error = coerceError(thrown)
  } catch {
    error = new Error('the handler threw a value that cannot be read as an error')
  }
  if (error instanceof NonRetryableError) return failed(error, attempt.claimed, 'non_retryable')
  // Not a failure: runs again later, the attempt not spent (task-finish-batch.sql).
  if (error instanceof RateLimitedError) {
    return { state: 'throttled', error: errorRecord(error, attempt.claimed.attempt, 'rate_limited'), delayMs: clampDelayMs(error.retryAfterMs) }
  }
  return retryOrFail(task, attempt.claimed, error, 'error')
}

function failed(error: Error, claimed: ClaimedTask, kind: string): AttemptOutcome {
  return { state: 'failed', error: errorRecord(error, claimed.attempt, kind), delayMs: 0 }
}

function retryOrFail(task: Task, claimed: ClaimedTask, error: Error, kind: string): AttemptOutcome {
  const record = errorRecord(error, claimed.attempt, kind)
  if (claimed.attempt >= claimed.max_attempts) return { state: 'failed', error: record, delayMs: 0 }
  let delayMs: number
  try {
    delayMs = backoffDelay(task.policy.backoff, claimed.attempt, error)
  } catch (err) {
    // A broken backoff function must not lose the retry: fall back to the default curve.
    delayMs = backoffDelay({ type: 'exponential' }, claimed.attempt, error)
    record.message += ` (backoff function failed: ${truncateText(storableText(readText(() => (err as Error).message, 'unreadable error')), 500)})`
  }
  // 1e20 ms would overflow the bigint the finish statement reads: clamp where the delay is made.
  return { state: 'pending', error: record, delayMs: clampDelayMs(delayMs) }
}
