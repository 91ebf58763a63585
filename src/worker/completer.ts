import type { Logger } from 'pino'
import type { Executor } from '../db/executor.ts'
import { finishStatement, plainArray } from '../db/sql.ts'
import type { AttemptOutcome } from './run-attempt.ts'

interface Pending {
  id: string
  attempt: number
  outcome: AttemptOutcome
  done: (recorded: boolean, written: AttemptOutcome) => void
  /** done() was called */
  settled?: boolean
}

const MAX_BATCH = 500

/**
 * Group commit of attempt outcomes: outcomes that arrive within
 * flushIntervalMs (or while a flush is in flight) share one fenced UPDATE.
 * A flush that fails for want of a database is retried until it succeeds
 * or the worker stops; if the process dies first, the lease expires and the
 * sweeper retries the task (at-least-once). A flush whose data Postgres
 * refuses is split until the one outcome at fault is found (#writeIsolating).
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
   * stopped first; with the outcome as written (a plain failure when Postgres
   * refused the one given). A callback, not a promise: one per task adds up in a drain.
   */
  record(id: string, attempt: number, outcome: AttemptOutcome, done: (recorded: boolean, written: AttemptOutcome) => void): void {
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
    // heartbeats no longer touch (LeasedAttempt.recording; the lease guard skips locked rows): no lock order to keep.
    const batch = this.#queue.splice(0, MAX_BATCH)
    if (batch.length === 0) return
    try {
      await this.#writeIsolating(batch)
      this.#failures = 0
    } catch (err) {
      // The database is unreachable or busy, not the data: retry what is not written yet.
      const unwritten = batch.filter((p) => !p.settled)
      this.#failures++
      this.#log.warn({ err, count: unwritten.length, failures: this.#failures }, 'recording outcomes failed; retrying')
      this.#queue.unshift(...unwritten)
      await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** this.#failures, 2000)))
    }
  }

  /**
   * Write a batch; when Postgres refuses its data (outcomes are made
   * storable before they get here, so this is the last line of defence),
   * split it in halves until the one outcome at fault is found, and record
   * that attempt as failed with a plain error instead. Other outcomes of
   * the batch are written as usual: one bad outcome never blocks the rest.
   */
  async #writeIsolating(batch: Pending[]): Promise<void> {
    try {
      this.#settle(batch, await this.#write(batch))
    } catch (err) {
      if (!isDataError(err)) throw err
      if (batch.length > 1) {
        const half = batch.length >> 1
        await this.#writeIsolating(batch.slice(0, half))
        await this.#writeIsolating(batch.slice(half))
        return
      }
      const bad = batch[0]!
      if (bad.outcome.state === 'failed' && bad.outcome.error.name === UNSTORABLE) {
        // Even the plain record was refused: leave the lease to expire (the sweeper retries).
        this.#log.error({ err, id: bad.id }, 'Postgres refused an outcome even in its plain form; the lease will expire and the sweeper retries')
        this.#settle(batch, new Set())
        return
      }
      this.#log.error({ err, id: bad.id, state: bad.outcome.state }, 'Postgres refused this outcome; recording the attempt as failed instead')
      bad.outcome = unstorableOutcome(bad, err)
      await this.#writeIsolating(batch)
    }
  }

  async #write(batch: Pending[]): Promise<Set<string>> {
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
    const withRetries = states.some((state) => state === 'pending' || state === 'throttled')
    const res = await this.#db.query<{ id: string }>(finishStatement(this.#schema, withRetries), [
      plainArray(ids),
      plainArray(attempts),
      plainArray(states),
      results,
      errors,
      plainArray(delays),
    ])
    return new Set(res.rows.map((r) => String(r.id)))
  }

  #settle(batch: Pending[], written: Set<string>): void {
    for (const p of batch) {
      p.settled = true
      try {
        p.done(written.has(p.id), p.outcome)
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
    for (const p of this.#queue.splice(0)) p.done(false, p.outcome)
  }
}

/** SQLSTATE class 22 (data exception) or 54 (program limit exceeded): the row, not the connection, is at fault. */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('54'))
}

const UNSTORABLE = 'UnstorableOutcomeError'

/** The plain failure recorded when Postgres refused an attempt's outcome. */
function unstorableOutcome(p: Pending, err: unknown): AttemptOutcome {
  const code = String((err as { code?: unknown }).code)
  const what = p.outcome.state === 'succeeded' ? 'result' : 'error'
  return {
    state: 'failed',
    delayMs: 0,
    error: {
      message: `Postgres could not store this attempt's ${what} (SQLSTATE ${code}); the attempt is recorded as failed instead`,
      name: UNSTORABLE,
      attempt: p.attempt,
      at: new Date().toISOString(),
      kind: `invalid_${what}`,
    },
  }
}
