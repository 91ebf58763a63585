import type { Logger } from 'pino'
import type { Task, TaskContext } from '../define-task.ts'
import { InvalidOptionsError } from '../errors.ts'
import { AttemptContext } from './attempt.ts'
import type { TraceCarrier } from '../otel/carrier.ts'

/** What a middleware sees of the attempt it wraps. */
export interface MiddlewareContext {
  /** the task's id, name, queue, attempt, maxAttempts, priority, createdAt and workflowId */
  readonly task: TaskContext['task']
  /** 1 for the first attempt */
  readonly attempt: number
  /** the payload as the handler receives it (after the schema parsed it) */
  readonly payload: unknown
  /** the attempt's child logger, as `ctx.log` in the handler */
  readonly log: Logger
  /** aborted on timeout, cancellation, lost lease or forced shutdown */
  readonly signal: AbortSignal
  /** the W3C trace context stored by the code that enqueued the task ({ traceparent, tracestate? }), or null */
  readonly traceContext: TraceCarrier | null
}

/**
 * Worker-level middleware around every attempt: call `next()` to run the
 * rest of the chain and the handler, and return (or transform) what it
 * resolves with. The first registered is the outermost. A middleware that
 * throws fails the attempt as a handler error would (the retry policy
 * applies); one that returns without calling `next()` skips the handler, and
 * the attempt succeeds with the middleware's return value.
 */
export type TaskMiddleware = (ctx: MiddlewareContext, next: () => Promise<unknown>) => Promise<unknown>

/** Refused at construction: a non-function would fail every attempt later. */
export function checkMiddleware(where: string, middleware: unknown): TaskMiddleware[] {
  if (middleware === undefined) return []
  if (!Array.isArray(middleware)) throw new InvalidOptionsError(where, ['middleware: expected an array of functions (ctx, next) => Promise'])
  const bad = middleware.findIndex((m) => typeof m !== 'function')
  if (bad >= 0) throw new InvalidOptionsError(where, [`middleware.${bad}: expected a function (ctx, next) => Promise, got ${typeof middleware[bad]}`])
  return [...(middleware as TaskMiddleware[])]
}

/** Built per attempt, and only when there is middleware: getters over the handler's ctx. */
class AttemptMiddlewareContext implements MiddlewareContext {
  readonly #ctx: TaskContext
  readonly payload: unknown
  constructor(ctx: TaskContext, payload: unknown) {
    this.#ctx = ctx
    this.payload = payload
  }
  get task(): TaskContext['task'] {
    return this.#ctx.task
  }
  get attempt(): number {
    return this.#ctx.attempt
  }
  get log(): Logger {
    return this.#ctx.log
  }
  get signal(): AbortSignal {
    return this.#ctx.signal
  }
  get traceContext(): TraceCarrier | null {
    return this.#ctx instanceof AttemptContext ? AttemptContext.traceContextOf(this.#ctx) : null
  }
}

/**
 * Run `handler` inside `middleware`, first outermost. Synchronous throws of a
 * middleware or the handler become rejections, so the attempt fails the
 * same way whatever threw; `next()` runs the rest once (a second call rejects).
 */
export function runMiddleware(
  middleware: readonly TaskMiddleware[],
  ctx: TaskContext,
  payload: unknown,
  handler: () => unknown,
): Promise<unknown> {
  const mctx = new AttemptMiddlewareContext(ctx, payload)
  const dispatch = (i: number): Promise<unknown> => {
    let called = false
    const next = (): Promise<unknown> => {
      if (called) return Promise.reject(new Error(`middleware ${i} called next() more than once`))
      called = true
      return dispatch(i + 1)
    }
    try {
      return Promise.resolve(i < middleware.length ? middleware[i]!(mctx, next) : handler())
    } catch (error) {
      return Promise.reject(error)
    }
  }
  return dispatch(0)
}

/**
 * The tasks as the worker runs them: with no middleware the same objects (a
 * synchronous handler stays synchronous, no promise per attempt); otherwise
 * copies whose run() goes through the chain.
 */
export function withMiddleware(tasks: ReadonlyMap<string, Task>, middleware: readonly TaskMiddleware[]): ReadonlyMap<string, Task> {
  if (middleware.length === 0) return tasks
  const wrapped = new Map<string, Task>()
  for (const [name, task] of tasks) {
    const run = (payload: unknown, ctx: TaskContext) => runMiddleware(middleware, ctx, payload, () => task.run(payload, ctx))
    wrapped.set(name, Object.freeze({ ...task, run }))
  }
  return wrapped
}
