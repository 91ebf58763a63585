/**
 * `taskrelay/testing`: helpers for users' own tests.
 *
 * @example
 * import { expectEnqueued, runInline } from 'taskrelay/testing'
 * await db.transaction().execute(async (trx) => {
 *   await signUp(trx, 'a@example.com')            // your code, which enqueues
 *   await expectEnqueued(trx, sendWelcome, { email: 'a@example.com' })
 * })
 * const result = await runInline(sendWelcome, { userId: 1, email: 'a@example.com' })
 */
import { isDeepStrictEqual } from 'node:util'
import { validatePayload, type Task, type TaskContext, type PayloadOf, type ResultOf } from './define-task.ts'
import { PayloadValidationError, RateLimitedError, TaskRelayError } from './errors.ts'
import { toExecutor, transactionExecutor, type Queryable } from './db/executor.ts'
import { taskListEnqueued } from './db/admin-queries.ts'
import { progressReport } from './worker/progress-writer.ts'
import { silentLogger } from './logger.ts'
import { checkMiddleware, runMiddleware, type TaskMiddleware } from './worker/middleware.ts'

export class ExpectationError extends TaskRelayError {
  constructor(message: string) {
    super('EXPECTATION_FAILED', message)
  }
}

/**
 * Assert that a task of this kind is enqueued (visible to `db`, so inside
 * the caller's transaction too) whose payload contains `match` (deep
 * partial match). Returns the matching task ids.
 */
export async function expectEnqueued<T extends Task>(
  db: Queryable,
  task: T,
  match: Partial<PayloadOf<T>> = {},
  options: { schema?: string; count?: number } = {},
): Promise<string[]> {
  const schema = options.schema ?? 'taskrelay'
  const rows = await taskListEnqueued(toExecutor(db), { schema, name: task.name })
  const ids = rows.filter((r) => contains(r.payload, match)).map((r) => String(r.id))
  const wanted = options.count
  if (wanted === undefined ? ids.length === 0 : ids.length !== wanted) {
    throw new ExpectationError(
      `expected ${wanted ?? 'at least 1'} enqueued "${task.name}" task(s) matching ${JSON.stringify(match)}, found ${ids.length}` +
        ` (of ${rows.length} enqueued "${task.name}" tasks)`,
    )
  }
  return ids
}

function contains(actual: unknown, expected: unknown): boolean {
  if (expected === null || typeof expected !== 'object' || Array.isArray(expected)) return isDeepStrictEqual(actual, expected)
  if (actual === null || typeof actual !== 'object') return false
  return Object.entries(expected).every(([k, v]) => contains((actual as Record<string, unknown>)[k], v))
}

/**
 * Run a task's handler in-process, the way a worker would: the payload goes
 * through the same JSON round trip and schema parse, and the handler gets a
 * context (attempt 1 unless given, a live AbortSignal, a silent logger).
 * `middleware` runs around it as on a worker, first outermost (its
 * ctx.traceContext is null).
 */
export async function runInline<T extends Task>(
  task: T,
  payload: PayloadOf<T>,
  context: Partial<Pick<TaskContext, 'attempt' | 'signal' | 'log'>> & { middleware?: TaskMiddleware[] } = {},
): Promise<ResultOf<T>> {
  const middleware = checkMiddleware('runInline options', context.middleware)
  const parsed = await validatePayload(task.payload, JSON.parse(JSON.stringify(payload ?? {})))
  if (!parsed.ok) throw new PayloadValidationError(task.name, parsed.issues)
  const attempt = context.attempt ?? 1
  const ctx: TaskContext = {
    signal: context.signal ?? new AbortController().signal,
    attempt,
    task: { id: '0', name: task.name, queue: task.policy.queue, attempt, maxAttempts: task.policy.maxAttempts, priority: task.policy.priority, createdAt: new Date(), workflowId: null },
    log: context.log ?? silentLogger(),
    heartbeat: async () => {},
    // Checks that trx is a transaction, as a worker does; the success is the handler's to return here.
    complete: async (trx) => void transactionExecutor(trx),
    // As on a worker: the attempt ends with a RateLimitedError (runInline rejects with it).
    rateLimited: (retryAfterMs) => {
      throw new RateLimitedError(retryAfterMs)
    },
    // Checked as on a worker (bad input throws); nothing to write it to.
    progress: (value, info) => void progressReport(value, info),
  }
  if (middleware.length === 0) return (await task.run(parsed.value, ctx)) as ResultOf<T>
  return (await runMiddleware(middleware, ctx, parsed.value, () => task.run(parsed.value, ctx))) as ResultOf<T>
}
