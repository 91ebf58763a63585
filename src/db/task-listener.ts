import type { Logger } from 'pino'
import { InvalidOptionsError, TaskFailedError, TaskNotFoundError, WaitTimeoutError } from '../errors.ts'
import { MAX_TIMER_MS } from '../duration.ts'
import { msInWords } from '../config.ts'
import { FINAL_STATES, isFinal } from '../task-state.ts'
import type { TaskProgress, TaskRecord } from '../task-record.ts'
import type { Connections } from './connections.ts'
import type { Wakeups } from './poller.ts'
import { quoteIdent } from './sql.ts'

export interface WaitForOptions {
  timeoutMs?: number
  signal?: AbortSignal
  /** called with each progress report of the task while it runs (tr.events underneath: needs LISTEN, so not over Kysely; lossy) */
  onProgress?: (progress: TaskProgress) => unknown
}

/** How often waiters look for their tasks when the db cannot LISTEN (a Kysely instance). */
export const WAIT_POLL_MS = 200

/**
 * waitFor()'s shared LISTEN on `<schema>.task_finished`, whose payload is a
 * comma-separated list of ids that reached a final state. After a reconnect
 * every waiter re-reads its row, since notifications in the gap are lost.
 * Without LISTEN (Kysely), one query every WAIT_POLL_MS finds which of the
 * awaited tasks finished, while any are awaited.
 */
export class TaskListener {
  readonly #waiters = new Map<string, Set<() => void>>()
  readonly #wakeups: Wakeups
  readonly #polling: boolean

  constructor(connections: Connections, schema: string, channel: string, log: Logger) {
    this.#polling = connections.pool === null
    let polling = false // one poll at a time, however slow the database
    const pollFinished = async () => {
      const ids = [...this.#waiters.keys()]
      if (ids.length === 0 || polling) return
      polling = true
      try {
        const res = await connections.executor.query<{ id: string }>(
          `select id::text as id from ${quoteIdent(schema)}.tasks where id = any($1::bigint[]) and state::text = any($2::text[])`,
          [ids, FINAL_STATES],
        )
        this.#notify(res.rows.map((r) => r.id))
      } catch (err) {
        log.warn({ err }, 'waitFor could not poll for finished tasks; trying again')
      } finally {
        polling = false
      }
    }
    this.#wakeups = connections.listen(
      [channel],
      {
        onNotify: (_channel, payload) => this.#notify(payload.split(',')),
        onCatchUp: this.#polling ? () => void pollFinished() : () => this.#notify([...this.#waiters.keys()]),
      },
      log,
      WAIT_POLL_MS,
    )
  }

  #notify(ids: readonly string[]): void {
    for (const id of ids) for (const fn of this.#waiters.get(id) ?? []) fn()
  }

  subscribe(id: string, onFinished: () => void): () => void {
    let set = this.#waiters.get(id)
    if (!set) this.#waiters.set(id, (set = new Set()))
    set.add(onFinished)
    return () => {
      set.delete(onFinished)
      if (set.size === 0) this.#waiters.delete(id)
      // A poller runs only while someone waits: its timer keeps the process alive.
      if (this.#polling && this.#waiters.size === 0) void this.#wakeups.close()
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
    return this.#wakeups.ready()
  }

  close(): Promise<void> {
    return this.#wakeups.close()
  }
}
