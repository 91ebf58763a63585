import type { Logger } from 'pino'
import type { TaskContext } from '../define-task.ts'
import type { Queryable } from '../db/executor.ts'
import type { LeasedAttempt } from './lease-keeper.ts'
import type { ClaimedTask } from '../db/worker-queries.ts'
import { InvalidOptionsError, RateLimitedError } from '../errors.ts'
import { parseCarrier, type TraceCarrier } from '../otel/carrier.ts'

/** The longest ctx.rateLimited() wait: a day. */
const MAX_RATE_LIMITED_MS = 86_400_000


/** What an attempt needs from the worker that runs it; one object per worker, not per attempt. */
export interface AttemptHost {
  /** the attempt's child logger, built on first use */
  log(attempt: Attempt): Logger
  /** renew this attempt's lease now; throws LeaseLostError if it is gone */
  heartbeat(attempt: Attempt): Promise<void>
  /** the handler's own code has settled: its concurrency slot is free */
  handlerDone(attempt: Attempt): void
  /** ctx.complete(trx, result): the success written in the caller's transaction (complete-in-transaction.ts) */
  complete(attempt: Attempt, trx: Queryable, result: unknown): Promise<void>
  /** ctx.progress(value, info): kept, then written throttled (progress-writer.ts) */
  progress(attempt: Attempt, value: number, info: unknown): void
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
  /** ctx.complete() wrote this attempt's success in the handler's transaction: the worker writes no outcome */
  completedInTransaction = false
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

  /** abort() was called: the attempt must not start (or go on) here */
  get aborted(): boolean {
    return this.#abortReason !== undefined
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
export class AttemptContext implements TaskContext {
  readonly #attempt: Attempt
  readonly #host: AttemptHost
  #task: TaskContext['task'] | undefined
  #heartbeat: (() => Promise<void>) | undefined

  constructor(attempt: Attempt, host: AttemptHost) {
    this.#attempt = attempt
    this.#host = host
  }

  /** The stored trace context of the attempt's task, for middleware (not on the handler's ctx). */
  static traceContextOf(ctx: AttemptContext): TraceCarrier | null {
    return parseCarrier(ctx.#attempt.claimed.trace_context)
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
      workflowId: c.workflow_id ?? null,
    })
  }

  get log(): Logger {
    return this.#host.log(this.#attempt)
  }

  rateLimited(retryAfterMs: number): never {
    if (!(Number.isFinite(retryAfterMs) && retryAfterMs >= 0 && retryAfterMs <= MAX_RATE_LIMITED_MS)) {
      throw new InvalidOptionsError('ctx.rateLimited()', [`retryAfterMs: expected 0 .. ${MAX_RATE_LIMITED_MS} (24 h) milliseconds, got ${String(retryAfterMs)}`])
    }
    throw new RateLimitedError(retryAfterMs)
  }

  // A bound function, so `const { heartbeat } = ctx` works like the other fields.
  get heartbeat(): () => Promise<void> {
    return (this.#heartbeat ??= () => this.#host.heartbeat(this.#attempt))
  }

  complete(trx: Queryable, result?: unknown): Promise<void> {
    return this.#host.complete(this.#attempt, trx, result)
  }

  progress(value: number, info?: unknown): void {
    this.#host.progress(this.#attempt, value, info)
  }
}


/** The attempts whose handlers settle within `ms`. */
export async function settledWithin(attempts: readonly Attempt[], ms: number): Promise<Set<Attempt>> {
  const settled = new Set<Attempt>()
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))
  await Promise.race([Promise.all(attempts.map((a) => a.settled().then(() => void settled.add(a)))), deadline])
  clearTimeout(timer)
  return settled
}
