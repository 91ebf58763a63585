import type { Logger } from 'pino'
import type { Executor } from '../db/executor.ts'
import { loadSql, plainArray } from '../db/sql.ts'
import type { AttemptOutcome } from './run-attempt.ts'

interface Pending {
  id: string
  attempt: number
  outcome: AttemptOutcome
  done: (recorded: boolean) => void
}

const MAX_BATCH = 500

/**
 * Group commit of attempt outcomes: outcomes that arrive within
 * flushIntervalMs (or while a flush is in flight) share one fenced UPDATE.
 * A failed flush is retried until it succeeds or the worker stops; if the
 * process dies first, the lease expires and the sweeper retries the task
 * (at-least-once).
 */
export class Completer {
  readonly #db: Executor
  readonly #schema: string
  readonly #log: Logger
  readonly #flushIntervalMs: number
  #queue: Pending[] = []
  #flushing: Promise<void> | null = null
  #timer: NodeJS.Timeout | null = null
  #failures = 0

  constructor(db: Executor, schema: string, flushIntervalMs: number, log: Logger) {
    this.#db = db
    this.#schema = schema
    this.#flushIntervalMs = flushIntervalMs
    this.#log = log
  }

  /**
   * Queue an outcome. `done` is called once: true when written, false when the
   * fence matched nothing (the attempt no longer owns the task) or the worker
   * stopped first. A callback, not a promise: one per task adds up in a drain.
   */
  record(id: string, attempt: number, outcome: AttemptOutcome, done: (recorded: boolean) => void): void {
    this.#queue.push({ id, attempt, outcome, done })
    this.#schedule()
  }

  get pending(): number {
    return this.#queue.length
  }

  #schedule() {
    if (this.#flushing || this.#timer) return
    const delay = this.#queue.length >= MAX_BATCH ? 0 : this.#flushIntervalMs
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#flushing = this.#flush().finally(() => {
        this.#flushing = null
        if (this.#queue.length > 0) this.#schedule()
      })
    }, delay)
  }

  async #flush(): Promise<void> {
    // One flush at a time, on rows only this worker's attempts hold and that
    // heartbeats no longer touch (LeasedAttempt.recording): no lock order to keep.
    const batch = this.#queue.splice(0, MAX_BATCH)
    if (batch.length === 0) return
    const ids: string[] = []
    const attempts: number[] = []
    const states: string[] = []
    const results: Array<string | null> = []
    const errors: Array<string | null> = []
    const delays: number[] = []
    for (const { id, attempt, outcome } of batch) {
      ids.push(id)
      attempts.push(attempt)
      states.push(outcome.state)
      if (outcome.state === 'succeeded') {
        results.push(outcome.result)
        errors.push(null)
        delays.push(0)
      } else {
        results.push(null)
        errors.push(JSON.stringify(outcome.error))
        delays.push(outcome.delayMs)
      }
    }
    let written: Set<string>
    try {
      const res = await this.#db.query<{ id: string }>(loadSql('task-finish-batch.sql', this.#schema), [
        plainArray(ids),
        plainArray(attempts),
        plainArray(states),
        results,
        errors,
        plainArray(delays),
      ])
      this.#failures = 0
      written = new Set(res.rows.map((r) => String(r.id)))
    } catch (err) {
      this.#failures++
      this.#log.warn({ err, count: batch.length, failures: this.#failures }, 'recording outcomes failed; retrying')
      this.#queue.unshift(...batch)
      await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** this.#failures, 2000)))
      return
    }
    for (const p of batch) {
      try {
        p.done(written.has(p.id))
      } catch (err) {
        this.#log.error({ err, id: p.id }, 'handling a recorded outcome failed')
      }
    }
  }

  /** Flush everything queued; gives up after `timeoutMs` (the leases then expire). */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while ((this.#queue.length > 0 || this.#flushing) && Date.now() < deadline) {
      if (this.#timer) {
        clearTimeout(this.#timer)
        this.#timer = null
      }
      if (!this.#flushing) {
        this.#flushing = this.#flush().finally(() => (this.#flushing = null))
      }
      await this.#flushing
    }
    for (const p of this.#queue.splice(0)) p.done(false)
  }
}
