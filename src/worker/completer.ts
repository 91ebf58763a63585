import type { Logger } from 'pino'
import type { Executor } from '../db/executor.ts'
import { loadSql } from '../db/sql.ts'
import type { AttemptOutcome } from './run-attempt.ts'

interface Pending {
  id: string
  attempt: number
  outcome: AttemptOutcome
  resolve: (recorded: boolean) => void
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

  /** Resolves true when written, false when the fence matched nothing (attempt no longer ours). */
  record(id: string, attempt: number, outcome: AttemptOutcome): Promise<boolean> {
    return new Promise((resolve) => {
      this.#queue.push({ id, attempt, outcome, resolve })
      this.#schedule()
    })
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
    try {
      const res = await this.#db.query<{ id: string }>(loadSql('task-finish-batch.sql', this.#schema), [
        batch.map((p) => p.id),
        batch.map((p) => p.attempt),
        batch.map((p) => p.outcome.state),
        batch.map((p) => (p.outcome.state === 'succeeded' ? p.outcome.result : null)),
        batch.map((p) => (p.outcome.state === 'succeeded' ? null : JSON.stringify(p.outcome.error))),
        batch.map((p) => (p.outcome.state === 'succeeded' ? 0 : p.outcome.delayMs)),
      ])
      this.#failures = 0
      const written = new Set(res.rows.map((r) => String(r.id)))
      for (const p of batch) p.resolve(written.has(p.id))
    } catch (err) {
      this.#failures++
      this.#log.warn({ err, count: batch.length, failures: this.#failures }, 'recording outcomes failed; retrying')
      this.#queue.unshift(...batch)
      await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** this.#failures, 2000)))
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
    for (const p of this.#queue.splice(0)) p.resolve(false)
  }
}
