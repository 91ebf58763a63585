import type { Logger } from 'pino'
import { z } from 'zod'
import { backoffDelay, type Task, type TaskContext } from '../define-task.ts'
import { NonRetryableError, TaskRelayError, coerceError } from '../errors.ts'
import type { TaskErrorRecord } from '../task-record.ts'

/** A row the claim returned. */
export interface ClaimedTask {
  id: string
  name: string
  queue: string
  payload: unknown
  priority: number
  attempt: number
  max_attempts: number
  created_at: Date
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

export interface AttemptInput {
  claimed: ClaimedTask
  task: Task | undefined
  signal: AbortSignal
  abort: (reason: Error) => void
  /** the attempt's logger, built on first use */
  log: () => Logger
  heartbeat: () => Promise<void>
  /** resolves when the handler's own promise has settled (for the concurrency cap) */
  onHandlerSettled: (settled: Promise<unknown>) => void
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
 * handler under its timeout, and classify the result. Never throws.
 */
export async function runAttempt(input: AttemptInput): Promise<AttemptOutcome> {
  const { claimed, task } = input
  const fail = (error: Error, kind: string): AttemptOutcome => ({ state: 'failed', error: errorRecord(error, claimed.attempt, kind), delayMs: 0 })

  if (!task) {
    return fail(
      new NonRetryableError(
        `no handler registered for task "${claimed.name}" (queue "${claimed.queue}") in this worker; ` +
          'deploy a worker that registers it, then retry the task',
      ),
      'no_handler',
    )
  }
  const parsed = task.payload.safeParse(claimed.payload)
  if (!parsed.success) {
    return fail(
      new NonRetryableError(
        `payload of task "${claimed.name}" (queue "${claimed.queue}") no longer matches its schema: ${z.prettifyError(parsed.error)}`,
      ),
      'invalid_payload',
    )
  }

  const ctx: TaskContext = {
    signal: input.signal,
    attempt: claimed.attempt,
    task: {
      id: claimed.id,
      name: claimed.name,
      queue: claimed.queue,
      attempt: claimed.attempt,
      maxAttempts: claimed.max_attempts,
      priority: claimed.priority,
      createdAt: claimed.created_at,
    },
    get log() {
      return input.log()
    },
    heartbeat: input.heartbeat,
  }

  const handler = (async () => task.run(parsed.data, ctx))()
  input.onHandlerSettled(handler)

  let timer: NodeJS.Timeout | undefined
  const timeoutMs = task.policy.timeoutMs
  const timedOut =
    timeoutMs > 0
      ? new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => {
            input.abort(new TaskTimeoutError(timeoutMs))
            resolve('timeout')
          }, timeoutMs)
        })
      : null
  // A lease lost or a cancel also aborts the signal: stop waiting after the grace.
  const aborted = new Promise<'aborted'>((resolve) => {
    const onAbort = () => setTimeout(() => resolve('aborted'), Math.min(ABORT_GRACE_MAX_MS, Math.max(timeoutMs, 1000))).unref()
    if (input.signal.aborted) onAbort()
    else input.signal.addEventListener('abort', onAbort, { once: true })
  })

  try {
    const settled = handler.then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    )
    let first = await Promise.race([settled, ...(timedOut ? [timedOut] : []), aborted])
    if (first === 'timeout') {
      // Give the handler a moment to honour ctx.signal, so a retry rarely overlaps it.
      const grace = new Promise<'grace'>((r) => setTimeout(() => r('grace'), Math.min(ABORT_GRACE_MAX_MS, timeoutMs)).unref())
      const after = await Promise.race([settled, grace])
      if (after === 'grace') input.log().warn({ timeoutMs }, 'handler ignored ctx.signal after its timeout; recording the failure anyway')
      return retryOrFail(task, claimed, new TaskTimeoutError(timeoutMs), 'timeout')
    }
    if (first === 'aborted') {
      const reason = coerceError(input.signal.reason)
      return retryOrFail(task, claimed, reason, 'aborted')
    }
    if (!first.ok) {
      const error = coerceError(first.error)
      if (input.signal.aborted && input.signal.reason instanceof TaskTimeoutError) {
        return retryOrFail(task, claimed, input.signal.reason, 'timeout')
      }
      if (error instanceof NonRetryableError) return fail(error, 'non_retryable')
      return retryOrFail(task, claimed, error, 'error')
    }
    let json: string | undefined
    try {
      json = JSON.stringify(first.value ?? null)
    } catch (err) {
      return fail(new NonRetryableError(`handler result is not JSON: ${(err as Error).message}`), 'invalid_result')
    }
    return { state: 'succeeded', result: json ?? 'null' }
  } finally {
    if (timer) clearTimeout(timer)
  }
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
