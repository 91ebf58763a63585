import type { Logger } from 'pino'
import type { TaskRelayEvents } from '../events.ts'
import type { Executor } from '../db/executor.ts'
import { loadSql, plainArray } from '../db/sql.ts'
import type { Task } from '../define-task.ts'
import type { Attempt } from './attempt.ts'
import { eventFields } from './outcome-report.ts'

/**
 * The worker's writes that give tasks back without an outcome; each is one
 * statement for the whole batch, fenced by (id, attempt, running) and costing
 * the task no attempt. Returns the ids it matched.
 */

/** Why attempts are handed back: the last_error message and kind the rows get. */
export const HAND_BACK_REASONS = {
  shutdown: 'worker shut down before the task finished; handed back',
  stuck: 'prefetched by a worker whose every slot is held by a handler that ignored its abort; handed back',
} as const

/** Shutdown or a stuck worker: back to pending, runnable at once (task-hand-back.sql). */
export async function taskHandBack(db: Executor, schema: string, attempts: readonly Attempt[], reason: keyof typeof HAND_BACK_REASONS): Promise<string[]> {
  const res = await db.query<{ id: string }>(loadSql('task-hand-back.sql', schema), [
    plainArray(attempts.map((a) => a.id)),
    plainArray(attempts.map((a) => a.attempt)),
    HAND_BACK_REASONS[reason],
    reason,
  ])
  return res.rows.map((r) => String(r.id))
}

/** No handler in this worker (a rolling deploy): back to pending after a growing delay (task-defer-no-handler.sql). */
export async function taskDeferNoHandler(db: Executor, schema: string, attempts: readonly Attempt[], workerId: string): Promise<string[]> {
  const res = await db.query<{ id: string }>(loadSql('task-defer-no-handler.sql', schema), [
    plainArray(attempts.map((a) => a.id)),
    plainArray(attempts.map((a) => a.attempt)),
    workerId,
  ])
  return res.rows.map((r) => String(r.id))
}

/** Record which task types exist and their defaults (task-types-upsert.sql). */
export async function taskTypesRegister(db: Executor, schema: string, tasks: readonly Task[]): Promise<void> {
  await db.query(loadSql('task-types-upsert.sql', schema), [
    tasks.map((t) => t.name),
    tasks.map((t) => t.policy.queue),
    tasks.map((t) => t.policy.priority),
    tasks.map((t) => t.policy.maxAttempts),
  ])
}

/** The hand-backs with their log lines and events, for the worker's attempt runner. */
export class HandBacks {
  readonly #db: Executor
  readonly #schema: string
  readonly #workerId: string
  readonly #log: Logger
  readonly #events: TaskRelayEvents

  constructor(db: Executor, schema: string, workerId: string, log: Logger, events: TaskRelayEvents) {
    this.#db = db
    this.#schema = schema
    this.#workerId = workerId
    this.#log = log
    this.#events = events
  }

  /** Back to pending without using an attempt; only for attempts whose code has stopped. Never throws. */
  async handBack(attempts: Attempt[], reason: keyof typeof HAND_BACK_REASONS): Promise<void> {
    if (attempts.length === 0) return
    for (const a of attempts) a.active = false
    try {
      const ids = await taskHandBack(this.#db, this.#schema, attempts, reason)
      this.#log.info({ count: ids.length, reason }, 'handed unfinished tasks back')
      for (const a of attempts) this.#events.emit('task:handed-back', eventFields(a, this.#workerId))
    } catch (err) {
      this.#log.error({ err, count: attempts.length }, 'could not hand tasks back; their leases will expire and the sweeper retries them')
    }
  }

  /**
   * A task this worker has no handler for is not failed: in a rolling deploy
   * a newer worker on the queue has it. It goes back to pending and waits,
   * visibly, for a worker that can run it. Never throws.
   */
  async noHandler(attempt: Attempt, log: Logger): Promise<void> {
    log.warn('no handler for this task in this worker; handing it back for a worker that has one')
    try {
      await taskDeferNoHandler(this.#db, this.#schema, [attempt], this.#workerId)
    } catch (err) {
      log.error({ err }, 'could not hand back a task without a handler; its lease will expire and the sweeper retries it')
    }
  }
}
