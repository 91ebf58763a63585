import type { Logger } from 'pino'
import type { Executor } from '../db/executor.ts'
import { workerRegister, workerUnregister, workersPrune } from '../db/worker-queries.ts'

type PresenceRow = Parameters<typeof workerRegister>[1]

export interface PresenceOptions {
  /** renew the row this often (presenceMs) */
  everyMs: number
  /** the row expires this long after a renewal (lostAfterMs): the sweeper then retries the worker's tasks */
  ttlMs: number
  /** the row went unconfirmed for almost ttlMs: the worker may already be taken for dead */
  onSilent: () => void
  /** a renewal landed after onSilent: the worker may claim again */
  onHeard?: () => void
  /** when the lease guard last renewed the row while the loop was blocked (epoch ms) */
  renewedElsewhereAt: () => number
}

/**
 * A worker's row in <schema>.workers, renewed every presenceMs with one
 * UPDATE: it says which queues and tasks a live worker serves (status,
 * stats), and that the worker is alive. A row not renewed for lostAfterMs
 * marks a dead worker: the sweeper retries its running tasks without waiting
 * for their leases (sweeper-reclaim-lost.sql). So a worker that cannot
 * confirm its row in time (Postgres unreachable, a partition) stops its own
 * attempts first, everyMs before the row can expire, as it does when its
 * leases lapse: a task never runs here and on the worker that retries it.
 */
export class WorkerPresence {
  readonly #db: Executor
  readonly #row: PresenceRow
  readonly #o: PresenceOptions
  readonly #log: Logger
  #timer: NodeJS.Timeout | null = null
  #deadline: NodeJS.Timeout | null = null
  #renewing = false
  /** silent since the last confirmation: said once, not at every check */
  #silent = false

  constructor(db: Executor, row: Omit<PresenceRow, 'ttlMs'>, options: PresenceOptions, log: Logger) {
    this.#db = db
    this.#row = { ...row, ttlMs: options.ttlMs }
    this.#o = options
    this.#log = log
  }

  /**
   * The row was not renewed in time: the worker stops its attempts, and
   * claims none until a renewal lands (what it claimed would be stopped at
   * the next check, after its handler had started: a second run elsewhere).
   */
  get silent(): boolean {
    return this.#silent
  }

  /** Register now (a failure fails the worker's start, like its other start-up checks), then keep renewing. */
  async start(): Promise<void> {
    await workersPrune(this.#db, this.#row)
    const sentAt = Date.now()
    await workerRegister(this.#db, this.#row)
    this.#confirmed(sentAt)
    this.#timer = setInterval(() => void this.#renew(), this.#o.everyMs)
    this.#timer.unref()
  }

  async #renew(): Promise<void> {
    if (this.#renewing) return // a renewal that hangs is not stacked on
    this.#renewing = true
    // The row's new expiry runs from when the UPDATE executed, at the earliest when it was sent.
    const sentAt = Date.now()
    let late = false
    try {
      await workerRegister(this.#db, this.#row)
      // A renewal that hung (a partition) and landed after the row could be
      // taken for dead confirms nothing: counted from when it was sent, it
      // would end the silence and stop at once what the worker then claimed.
      late = Date.now() - sentAt >= this.#o.ttlMs - this.#o.everyMs
      if (this.#timer && !late) this.#confirmed(sentAt)
    } catch (err) {
      this.#log.warn({ err }, 'could not renew this worker in the workers table; retrying')
    } finally {
      this.#renewing = false
    }
    if (late && this.#timer) await this.#renew() // a fresh one, now that Postgres answers
  }

  /** The row is good until at + ttlMs: stop the attempts everyMs before, unless a later renewal comes first. */
  #confirmed(at: number, silent = false): void {
    const heard = this.#silent && !silent
    this.#silent = silent
    if (heard) this.#o.onHeard?.()
    if (this.#deadline) clearTimeout(this.#deadline)
    this.#deadline = setTimeout(
      () => {
        const elsewhere = this.#o.renewedElsewhereAt()
        if (elsewhere > at) return this.#confirmed(elsewhere)
        if (!this.#silent) {
          this.#log.warn(
            { sinceConfirmedMs: Date.now() - at, lostAfterMs: this.#o.ttlMs },
            'this worker could not renew its row in the workers table in time; stopping its attempts before the sweeper retries them elsewhere',
          )
        }
        this.#o.onSilent()
        this.#confirmed(at + this.#o.everyMs, true) // check again: attempts claimed meanwhile are stopped too
      },
      Math.max(0, at + this.#o.ttlMs - this.#o.everyMs - Date.now()),
    )
    this.#deadline.unref()
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    if (this.#deadline) clearTimeout(this.#deadline)
    this.#timer = this.#deadline = null
    await workerUnregister(this.#db, this.#row).catch((err: unknown) =>
      this.#log.warn({ err }, 'could not remove this worker from the workers table; it expires on its own'),
    )
  }
}
