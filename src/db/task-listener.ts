import type pg from 'pg'
import type { Logger } from 'pino'
import { PgListener } from './listener.ts'
import { InvalidOptionsError, TaskFailedError, TaskNotFoundError, WaitTimeoutError } from '../errors.ts'
import { MAX_TIMER_MS } from '../duration.ts'
import { msInWords } from '../config.ts'
import { isFinal } from '../task-state.ts'
import type { TaskRecord } from '../task-record.ts'

export interface WaitForOptions {
  timeoutMs?: number
  signal?: AbortSignal
}

/**
 * waitFor()'s shared LISTEN on `<schema>.task_finished`, whose payload is a
 * comma-separated list of ids that reached a final state. After a reconnect
 * every waiter re-reads its row, since notifications in the gap are lost.
 */
export class TaskListener {
  readonly #waiters = new Map<string, Set<() => void>>()
  readonly #listener: PgListener

  constructor(pool: pg.Pool, channel: string, log: Logger) {
    this.#listener = new PgListener(
      pool,
      [channel],
      (_channel, payload) => {
        for (const id of payload.split(',')) for (const fn of this.#waiters.get(id) ?? []) fn()
      },
      log,
      () => {
        for (const set of this.#waiters.values()) for (const fn of set) fn()
      },
    )
  }

  subscribe(id: string, onFinished: () => void): () => void {
    let set = this.#waiters.get(id)
    if (!set) this.#waiters.set(id, (set = new Set()))
    set.add(onFinished)
    return () => {
      set.delete(onFinished)
      if (set.size === 0) this.#waiters.delete(id)
    }
  }

  /**
   * Resolve with the task once `read` finds it succeeded; reject with
   * TaskFailedError when it failed or was cancelled, TaskNotFoundError,
   * WaitTimeoutError after timeoutMs (counted from the call, whatever the
   * database does meanwhile), or the signal's reason when aborted.
   */
  waitFor(taskId: string, read: () => Promise<TaskRecord | null>, options: WaitForOptions): Promise<TaskRecord> {
    const { timeoutMs } = options
    if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs >= 0 && timeoutMs <= MAX_TIMER_MS)) {
      // A timer cannot wait longer: 2**31 ms would reject after 1 ms.
      return Promise.reject(new InvalidOptionsError('waitFor options', [`timeoutMs: expected a whole number of ms from 0 to ${msInWords(MAX_TIMER_MS)}, got ${timeoutMs}`]))
    }
    return new Promise<TaskRecord>((resolve, reject) => {
      let settled = false
      let timer: NodeJS.Timeout | undefined
      const finish = (fn: () => void) => {
        if (settled) return
        settled = true
        if (timer) clearTimeout(timer)
        unsubscribe()
        options.signal?.removeEventListener('abort', onAbort)
        fn()
      }
      const check = async () => {
        try {
          const task = await read()
          if (!task) return finish(() => reject(new TaskNotFoundError(taskId)))
          if (!isFinal(task.state)) return
          if (task.state === 'succeeded') finish(() => resolve(task))
          else finish(() => reject(new TaskFailedError(taskId, task.state, task.lastError?.message, task)))
        } catch (err) {
          finish(() => reject(err))
        }
      }
      const onAbort = () => finish(() => reject(options.signal!.reason))
      const unsubscribe = this.subscribe(taskId, () => void check())
      options.signal?.addEventListener('abort', onAbort, { once: true })
      if (options.timeoutMs !== undefined) {
        const ms = options.timeoutMs
        timer = setTimeout(() => finish(() => reject(new WaitTimeoutError(taskId, ms))), ms)
      }
      // Check after subscribing: a task that finished before LISTEN was set up is seen here.
      void this.ready().then(check, (err) => finish(() => reject(err)))
    })
  }

  ready(): Promise<void> {
    return this.#listener.ready()
  }

  close(): Promise<void> {
    return this.#listener.close()
  }
}
