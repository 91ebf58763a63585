import type { Logger } from 'pino'
import type { TaskRelayEvents } from '../events.ts'
import type { Executor } from '../db/executor.ts'
import { taskDeferNoHandler, taskHandBack, taskTypesRegister } from '../db/worker-queries.ts'
import type { Task } from '../define-task.ts'
import type { Attempt } from './attempt.ts'
import { eventFields } from './outcome-report.ts'

/** Why attempts are handed back: the last_error message and kind the rows get. */
export const HAND_BACK_REASONS = {
  shutdown: 'worker shut down before the task finished; handed back',
  stuck: 'prefetched by a worker whose every slot is held by a handler that ignored its abort; handed back',
  paused: 'its queue (or group) was paused after a worker claimed it and before it started; handed back',
} as const
export type HandBackReason = keyof typeof HAND_BACK_REASONS

/** Record which task types a worker runs, and their defaults. */
export function registerTaskTypes(db: Executor, schema: string, tasks: readonly Task[]): Promise<void> {
  return taskTypesRegister(db, {
    schema,
    names: tasks.map((t) => t.name),
    queues: tasks.map((t) => t.policy.queue),
    priorities: tasks.map((t) => t.policy.priority),
    maxAttempts: tasks.map((t) => t.policy.maxAttempts),
  })
}

/**
 * The worker's writes that give tasks back without an outcome (fenced by
 * id, attempt and running, costing the task no attempt), with their log
 * lines and events, for the worker's attempt runner.
 */
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
      const ids = await taskHandBack(this.#db, {
        schema: this.#schema,
        ids: attempts.map((a) => a.id),
        attempts: attempts.map((a) => a.attempt),
        message: HAND_BACK_REASONS[reason],
        kind: reason,
      })
      this.#log.info({ count: ids.length, reason }, 'handed unfinished tasks back')
      for (const a of attempts) this.#events.emit('task:handed-back', eventFields(a, this.#workerId))
    } catch (err) {
      this.#log.error({ err, count: attempts.length }, 'could not hand tasks back; their leases will expire and the sweeper retries them')
    }
  }

  /**
   * A task this worker has no handler for is not failed: in a rolling deploy
   * a newer worker on the queue has it. It goes back to pending and waits,
   * visibly, for a worker that can run it. One statement for a claim's
   * batch, before any slot is taken. Never throws.
   */
  async noHandler(attempts: Attempt[]): Promise<void> {
    if (attempts.length === 0) return
    const tasks = [...new Set(attempts.map((a) => a.claimed.name))]
    this.#log.warn({ count: attempts.length, tasks }, 'no handler for these tasks in this worker; handing them back for a worker that has one')
    try {
      await taskDeferNoHandler(this.#db, {
        schema: this.#schema,
        ids: attempts.map((a) => a.id),
        attempts: attempts.map((a) => a.attempt),
        workerId: this.#workerId,
      })
    } catch (err) {
      this.#log.error({ err, count: attempts.length }, 'could not hand back tasks without a handler; their leases will expire and the sweeper retries them')
    }
  }
}
