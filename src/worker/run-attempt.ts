import type { Logger } from 'pino'
import { z } from 'zod'
import { backoffDelay, type Task, type TaskContext } from '../define-task.ts'
import { NonRetryableError, TaskRelayError, coerceError } from '../errors.ts'
import type { TaskErrorRecord } from '../task-record.ts'
import type { LeasedAttempt } from './lease-keeper.ts'

/** A row the claim returned. */
export interface ClaimedTask {
  id: string
  name: string
  queue: string
  payload: unknown
  priority: number
  attempt: number
  max_attempts: number
  /** epoch milliseconds (a float parses far cheaper than a timestamptz) */
  created_ms: number
}

/** What one attempt decided; the completer turns it into the fenced UPDATE. */
export type AttemptOutcome =
  | { state: 'succeeded'; result: string }
  | { state: 'pending' | 'failed'; error: TaskErrorRecord; delayMs: number }

export class TaskTimeoutError extends TaskRelayError {
  constructor(timeoutMs: number) {
    super('TASK_TIMEOUT', `handler did not finish within timeoutMs (${timeoutMs} ms)`)
  }
}

/** How long a handler may take to notice ctx.signal after a timeout before the failure is recorded anyway. */
export const ABORT_GRACE_MAX_MS = 5000

/** What an attempt needs from the worker that runs it; one object per worker, not per attempt. */
export interface AttemptHost {
  /** the attempt's child logger, built on first use */
  log(attempt: Attempt): Logger
  /** renew this attempt's lease now; throws LeaseLostError if it is gone */
  heartbeat(attempt: Attempt): Promise<void>
  /** the handler's own code has settled: its concurrency slot is free */
  handlerDone(attempt: Attempt): void
}

/**
 * One claimed attempt while this worker holds it: its lease (renewed by the
 * LeaseKeeper while `active`), its abort signal, and whether the handler's
 * code still runs. Drains of short tasks run hundreds of thousands of these,
 * so nothing is allocated unless asked for: the AbortController exists once
 * someone reads `signal`, the child logger once something logs, and a
 * synchronous handler costs no promise at all.
 */
export class Attempt implements LeasedAttempt {
  readonly id: string
  readonly attempt: number
  readonly claimed: ClaimedTask
  /** false once the outcome is recorded or the attempt was handed back */
  active = true
  /** the outcome is queued in the completer: not renewed, not handed back */
  recording = false
  /** performance.now() when the handler was launched (for durationMs) */
  startedAt = 0
  /** the handler's code was started */
  handlerStarted = false
  /** the handler's code has settled */
  handlerDone = false
  /** the worker has given this attempt's concurrency slot back */
  slotFreed = false
  /** the child logger, once built (AttemptHost.log) */
  logger: Logger | undefined
  #controller: AbortController | undefined
  #abortReason: Error | undefined
  #onAbort: ((reason: Error) => void) | undefined
  #settledWaiters: Array<() => void> | undefined

  constructor(claimed: ClaimedTask) {
    // A string even where the application set a global int8 type parser in pg:
    // ids are compared with the ids Postgres returns from later batches.
    this.id = claimed.id = String(claimed.id)
    this.attempt = claimed.attempt
    this.claimed = claimed
  }

  /** Aborted on timeout, cancellation, lost lease or forced shutdown. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController()
      if (this.#abortReason) this.#controller.abort(this.#abortReason)
    }
    return this.#controller.signal
  }

  abort(reason: Error): void {
    if (this.#abortReason) return
    this.#abortReason = reason
    this.#controller?.abort(reason)
    this.#onAbort?.(reason)
  }

  /** Resolves once the handler's code has settled (at once if it has, or never ran). */
  settled(): Promise<void> {
    if (this.handlerDone || !this.handlerStarted) return Promise.resolve()
    return new Promise((resolve) => (this.#settledWaiters ??= []).push(resolve))
  }

  /** Run `onAbort` when the attempt is aborted (now, if it already was). */
  onAbort(handler: ((reason: Error) => void) | undefined): void {
    this.#onAbort = handler
    if (handler && this.#abortReason) handler(this.#abortReason)
  }

  markHandlerDone(host: AttemptHost): void {
    if (this.handlerDone) return
    this.handlerDone = true
    host.handlerDone(this)
    const waiters = this.#settledWaiters
    this.#settledWaiters = undefined
    if (waiters) for (const resolve of waiters) resolve()
  }
}

/** The `ctx` a handler receives: getters over the attempt, so unused parts cost nothing. */
class AttemptContext implements TaskContext {
  readonly #attempt: Attempt
  readonly #host: AttemptHost
  #task: TaskContext['task'] | undefined
  #heartbeat: (() => Promise<void>) | undefined

  constructor(attempt: Attempt, host: AttemptHost) {
    this.#attempt = attempt
    this.#host = host
  }

  get signal(): AbortSignal {
    return this.#attempt.signal
  }

  get attempt(): number {
    return this.#attempt.attempt
  }

  get task(): TaskContext['task'] {
    const c = this.#attempt.claimed
    return (this.#task ??= {
      id: c.id,
      name: c.name,
      queue: c.queue,
      attempt: c.attempt,
      maxAttempts: c.max_attempts,
      priority: c.priority,
      createdAt: new Date(Number(c.created_ms)),
    })
  }

  get log(): Logger {
    return this.#host.log(this.#attempt)
  }

  // A bound function, so `const { heartbeat } = ctx` works like the other fields.
  get heartbeat(): () => Promise<void> {
    return (this.#heartbeat ??= () => this.#host.heartbeat(this.#attempt))
  }
}

export function errorRecord(error: Error, attempt: number, kind: string): TaskErrorRecord {
  return {
    message: error.message,
    name: error.name,
    ...(error.stack ? { stack: error.stack.slice(0, 4000) } : {}),
    attempt,
    at: new Date().toISOString(),
    kind,
  }
}

/**
 * Run one attempt: check the task can run here, validate the payload, run the
 * handler under its timeout, and classify the result. Returns the outcome
 * directly when the handler returned without a promise. Handler errors become
 * outcomes; it throws (or rejects) only on a bug in taskrelay's own code.
 */
export function runAttempt(attempt: Attempt, task: Task | undefined, host: AttemptHost): AttemptOutcome | Promise<AttemptOutcome> {
  const { claimed } = attempt
  if (!task) {
    return failed(
      new NonRetryableError(
        `no handler registered for task "${claimed.name}" (queue "${claimed.queue}") in this worker; ` +
          'deploy a worker that registers it, then retry the task',
      ),
      claimed,
      'no_handler',
    )
  }
  const parsed = task.payload.safeParse(claimed.payload)
  if (!parsed.success) {
    return failed(
      new NonRetryableError(
        `payload of task "${claimed.name}" (queue "${claimed.queue}") no longer matches its schema: ${z.prettifyError(parsed.error)}`,
      ),
      claimed,
      'invalid_payload',
    )
  }

  attempt.handlerStarted = true
  let returned: unknown
  try {
    returned = task.run(parsed.data, new AttemptContext(attempt, host))
  } catch (error) {
    attempt.markHandlerDone(host)
    return rejected(task, attempt, error)
  }
  if (!isPromiseLike(returned)) {
    attempt.markHandlerDone(host)
    return resolved(returned, claimed)
  }
  return awaitHandler(attempt, task, host, returned)
}

/**
 * The first of: the handler settles; its timeout fires (abort, then up to a
 * grace for it to stop); another abort (lease lost, cancel, shutdown) plus a
 * grace. A handler that ignores its signal keeps its slot (markHandlerDone
 * waits for it), but its outcome is recorded on time.
 */
function awaitHandler(attempt: Attempt, task: Task, host: AttemptHost, handler: PromiseLike<unknown>): Promise<AttemptOutcome> {
  const { claimed } = attempt
  const timeoutMs = task.policy.timeoutMs
  return new Promise<AttemptOutcome>((resolve, reject) => {
    let finished = false
    let timer: NodeJS.Timeout | undefined
    let timedOut: TaskTimeoutError | undefined
    const finish = (outcome: () => AttemptOutcome) => {
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
        finish(timedOut ? timeoutOutcome : () => resolved(value, claimed))
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

function resolved(value: unknown, claimed: ClaimedTask): AttemptOutcome {
  let json: string | undefined
  try {
    json = JSON.stringify(value ?? null)
  } catch (err) {
    return failed(new NonRetryableError(`handler result is not JSON: ${(err as Error).message}`), claimed, 'invalid_result')
  }
  return { state: 'succeeded', result: json ?? 'null' }
}

function rejected(task: Task, attempt: Attempt, thrown: unknown): AttemptOutcome {
  const error = coerceError(thrown)
  if (error instanceof NonRetryableError) return failed(error, attempt.claimed, 'non_retryable')
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
    record.message += ` (backoff function failed: ${(err as Error).message})`
  }
  return { state: 'pending', error: record, delayMs }
}
