import type { Logger } from 'pino'
import type { Executor } from '../db/executor.ts'
import { queuesPaused } from '../db/queue-queries.ts'

/** How often a worker re-reads which of its queues are paused: a prefetched task of one never starts later than this after the pause. */
export const PAUSED_QUEUES_EVERY_MS = 250

/**
 * The worker's queues (and groups) paused now, re-read every 250 ms. A
 * pause turns dispatched tasks back to pending in Postgres, but tasks a
 * worker already claimed ahead of a free slot (prefetch) are its own: the
 * attempt runner asks holds() before starting one and hands it back instead.
 */
export class PausedQueues {
  readonly #read: () => Promise<Array<{ queue: string; group_key: string | null }>>
  readonly #log: Logger
  #paused = new Set<string>()
  #timer: NodeJS.Timeout | null = null
  #reading = false

  constructor(db: Executor, schema: string, queues: readonly string[], log: Logger) {
    this.#read = () => queuesPaused(db, { schema, queues })
    this.#log = log
  }

  async start(): Promise<void> {
    await this.#refresh()
    this.#timer = setInterval(() => void this.#refresh(), PAUSED_QUEUES_EVERY_MS)
    this.#timer.unref()
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
  }

  /** Whether a task of this queue and group ('' for none) must not start now. */
  holds(queue: string, group: string): boolean {
    return this.#paused.size > 0 && (this.#paused.has(queue) || this.#paused.has(JSON.stringify([queue, group])))
  }

  async #refresh(): Promise<void> {
    if (this.#reading) return
    this.#reading = true
    try {
      const rows = await this.#read()
      this.#paused = new Set(rows.map((r) => (r.group_key === null ? r.queue : JSON.stringify([r.queue, r.group_key]))))
    } catch (err) {
      // Kept as last read: the dispatch side still holds paused queues back.
      this.#log.debug({ err }, 'could not re-read paused queues')
    } finally {
      this.#reading = false
    }
  }
}
