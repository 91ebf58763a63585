import type { Logger } from 'pino'
import type { Executor } from '../db/executor.ts'
import { loadSql, plainArray } from '../db/sql.ts'
import { LeaseLostError } from '../errors.ts'

export interface LeasedAttempt {
  id: string
  attempt: number
  /** false once the outcome is recorded: no more heartbeats needed */
  active: boolean
  /**
   * The outcome is queued in the completer, whose fenced write ends the lease:
   * not renewed, so a heartbeat never updates a row a finish batch is
   * updating (two batches locking rows in different orders can deadlock).
   */
  recording?: boolean
  abort(reason: Error): void
}

/**
 * Renews the leases of all in-flight attempts with one UPDATE every
 * heartbeatMs. Attempts the UPDATE no longer matches (taken over, cancelled)
 * are aborted; if no heartbeat succeeded for a whole lease, every attempt is
 * aborted, because the sweeper may already have handed them to someone else.
 */
export class LeaseKeeper {
  readonly #db: Executor
  readonly #schema: string
  readonly #leaseMs: number
  readonly #heartbeatMs: number
  readonly #log: Logger
  readonly #attempts: () => Iterable<LeasedAttempt>
  readonly #renewedElsewhereAt: () => number
  #timer: NodeJS.Timeout | null = null
  #lastOkAt = Date.now()
  #beating: Promise<void> | null = null
  #deadline: NodeJS.Timeout | null = null

  constructor(opts: {
    db: Executor
    schema: string
    leaseMs: number
    heartbeatMs: number
    log: Logger
    attempts: () => Iterable<LeasedAttempt>
    /** when the lease guard last renewed every lease (epoch ms): a blocked loop's heartbeats */
    renewedElsewhereAt?: () => number
  }) {
    this.#db = opts.db
    this.#schema = opts.schema
    this.#leaseMs = opts.leaseMs
    this.#heartbeatMs = opts.heartbeatMs
    this.#log = opts.log
    this.#attempts = opts.attempts
    this.#renewedElsewhereAt = opts.renewedElsewhereAt ?? (() => 0)
  }

  start(): void {
    this.#confirmed(Date.now())
    this.#timer = setInterval(() => {
      this.#beating ??= this.beat()
        .then(() => {}, () => {}) // logged in beat(); the next tick retries
        .finally(() => (this.#beating = null))
    }, this.#heartbeatMs)
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
    if (this.#deadline) clearTimeout(this.#deadline)
    this.#deadline = null
    await this.#beating
  }

  /**
   * Leases were confirmed as of `at`. A heartbeat that hangs (network
   * partition) never fails, so the catch in beat() never fires: give the
   * attempts up heartbeatMs before the leases that confirmation bought can
   * expire and be handed to another worker, unless a later one comes first.
   */
  #confirmed(at: number): void {
    this.#lastOkAt = at
    if (this.#deadline) clearTimeout(this.#deadline)
    this.#deadline = setTimeout(() => {
      // The loop was blocked and the lease guard renewed the leases meanwhile: count from then.
      const elsewhere = this.#renewedElsewhereAt()
      if (elsewhere > at) return this.#confirmed(elsewhere)
      const active = [...this.#attempts()].filter((a) => a.active)
      if (active.length === 0) return
      // Silent aborts are hard to tell from bugs: say why (a hung database, or a stalled process).
      this.#log.warn(
        { count: active.length, sinceConfirmedMs: Date.now() - at, leaseMs: this.#leaseMs },
        'no heartbeat confirmed the leases in time; aborting in-flight attempts before their leases can expire',
      )
      for (const a of active) a.abort(new LeaseLostError(a.id, a.attempt))
    }, Math.max(0, at + this.#leaseMs - this.#heartbeatMs - Date.now()))
    this.#deadline.unref()
  }

  /** Renew the given attempts now (all active ones by default). Returns the ids still owned. */
  async beat(only?: LeasedAttempt[]): Promise<Set<string>> {
    const attempts = (only ?? [...this.#attempts()]).filter((a) => a.active && !a.recording)
    if (attempts.length === 0) {
      if (!only) this.#confirmed(Date.now())
      return new Set()
    }
    // The renewed leases run from when the UPDATE executed, at the earliest when it was sent.
    const sentAt = Date.now()
    try {
      const res = await this.#db.query<{ id: string }>(loadSql('task-heartbeat-batch.sql', this.#schema), [
        plainArray(attempts.map((a) => a.id)),
        plainArray(attempts.map((a) => a.attempt)),
        this.#leaseMs,
      ])
      if (!only) this.#confirmed(sentAt)
      const owned = new Set(res.rows.map((r) => String(r.id)))
      for (const a of attempts) {
        if (!owned.has(a.id) && a.active) a.abort(new LeaseLostError(a.id, a.attempt))
      }
      return owned
    } catch (err) {
      this.#log.warn({ err, count: attempts.length }, 'heartbeat failed')
      if (!only && Date.now() - Math.max(this.#lastOkAt, this.#renewedElsewhereAt()) > this.#leaseMs) {
        this.#log.error({ count: attempts.length }, 'no heartbeat succeeded for a whole lease; aborting in-flight attempts')
        for (const a of attempts) a.abort(new LeaseLostError(a.id, a.attempt))
      }
      throw err
    }
  }
}
