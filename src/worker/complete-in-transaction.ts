import type { Logger } from 'pino'
import { LeaseLostError, NonRetryableError } from '../errors.ts'
import { transactionExecutor, type Executor, type Queryable } from '../db/executor.ts'
import { finishStatement, loadSql } from '../db/sql.ts'
import { taskGetRow } from '../db/task-queries.ts'
import type { TaskRelayEvents } from '../events.ts'
import type { Attempt } from './attempt.ts'
import { reportOutcome } from './outcome-report.ts'
import { storableResult } from './run-attempt.ts'

/**
 * The worker's side of ctx.complete(trx, result): the fenced write in the
 * caller's transaction, then, once the handler returned, a plain read of
 * whether that transaction committed. The worker writes no outcome of its
 * own for such an attempt: a completion that did not commit leaves the task
 * running until its lease expires, and the sweeper retries it.
 */
interface CompletionsOptions {
  schema: string
  workerId: string
  /** the claims' pool: the confirming read */
  db: Executor
  log: (attempt: Attempt) => Logger
  events: TaskRelayEvents
}

export class InTransactionCompletions {
  readonly #o: CompletionsOptions

  constructor(o: CompletionsOptions) {
    this.#o = o
  }

  async complete(attempt: Attempt, trx: Queryable, result: unknown): Promise<void> {
    const db = transactionExecutor(trx) // TransactionRequiredError unless trx is a transaction
    const outcome = storableResult(result, attempt.claimed)
    if (outcome.state !== 'succeeded') throw new NonRetryableError(`ctx.complete(): ${outcome.error.message}`)
    const { schema, workerId } = this.#o
    await completeInTransaction(db, { schema, id: attempt.id, attempt: attempt.attempt, workerId, resultJson: outcome.result })
    attempt.completedInTransaction = true
    // As for an outcome queued in the completer: no renewal (the row is no longer running once
    // the caller commits), no hand-back at shutdown.
    attempt.recording = true
  }

  /** The handler returned after ctx.complete(): report what its transaction did. */
  async confirm(attempt: Attempt): Promise<void> {
    const { schema, db, events, workerId } = this.#o
    try {
      const committed = await completedInTransaction(db, { schema, id: attempt.id, attempt: attempt.attempt })
      if (committed) return reportOutcome(events, workerId, attempt, { state: 'succeeded', result: 'null' }, true)
      this.#o.log(attempt).warn("ctx.complete() was called but its transaction did not commit; the task is retried once its lease expires")
    } catch (err) {
      this.#o.log(attempt).warn({ err }, 'could not read whether ctx.complete() committed; if it did not, the task is retried once its lease expires')
    }
  }
}

/**
 * ctx.complete(trx, result): this attempt's success, written inside the
 * application's own transaction, so its writes (and tasks it enqueued
 * there) commit if and only if the step does. Fenced like every outcome:
 * the row is locked and must still be this attempt's (running, same attempt,
 * this worker, lease not expired), or LeaseLostError rolls the caller's
 * transaction back with it. Then the worker's own finish statement
 * (task-finish-batch.sql) runs on the caller's connection: dependents are
 * released and waiters notified when it commits.
 */
export async function completeInTransaction(
  db: Executor,
  p: { schema: string; id: string; attempt: number; workerId: string; resultJson: string },
): Promise<void> {
  const res = await db.query<{ state: string; attempt: number; worker_id: string | null; leased: boolean | null }>(
    loadSql('task-complete-lock.sql', p.schema),
    [p.id],
  )
  const row = res.rows[0]
  const why = !row
    ? 'the task no longer exists'
    : row.state !== 'running'
      ? `the task is ${row.state} now`
      : row.attempt !== p.attempt
        ? `attempt ${row.attempt} claimed it after this attempt's lease expired`
        : row.worker_id !== p.workerId
          ? 'another worker holds it'
          : !row.leased
            ? "this attempt's lease expired"
            : null
  if (why) throw new LeaseLostError(p.id, p.attempt, `${why}; roll this transaction back`)
  const finished = await db.query(finishStatement(p.schema, false), [
    `{${p.id}}`,
    `{${p.attempt}}`,
    '{succeeded}',
    [p.resultJson],
    [null],
    '{0}',
  ])
  if (finished.rows.length !== 1) throw new LeaseLostError(p.id, p.attempt, 'the fenced write matched nothing; roll this transaction back')
}

/** After the handler returned: whether its transaction committed this attempt's success (a plain read, never waits on a lock). */
export async function completedInTransaction(db: Executor, p: { schema: string; id: string; attempt: number }): Promise<boolean> {
  const row = await taskGetRow(db, p)
  return row !== undefined && row.state === 'succeeded' && row.attempt === p.attempt
}
