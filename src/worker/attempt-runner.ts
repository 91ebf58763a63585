import type { Logger } from 'pino'
import type { TaskRelayEvents } from '../events.ts'
import type { Executor } from '../db/executor.ts'
import type { Task } from '../define-task.ts'
import type { WorkerSettings } from '../config.ts'
import { LeaseLostError, ShutdownError } from '../errors.ts'
import { ABORT_GRACE_MAX_MS, runAttempt, type AttemptResult } from './run-attempt.ts'
import { InTransactionCompletions } from './complete-in-transaction.ts'
import { Attempt, settledWithin, type AttemptHost } from './attempt.ts'
import type { ClaimedTask } from '../db/worker-queries.ts'
import { Completer } from './completer.ts'
import { ProgressWriter } from './progress-writer.ts'
import { LeaseKeeper } from './lease-keeper.ts'
import { LeaseGuard } from './lease-guard.ts'
import { HandBacks, type HandBackReason } from './hand-back.ts'
import { logTaskOutcomes } from '../task-log.ts'
import { Slots } from './slots.ts'
import { eventFields, reportOutcome } from './outcome-report.ts'

export interface AttemptRunnerOptions {
  settings: Readonly<WorkerSettings>
  workerId: string
  tasks: ReadonlyMap<string, Task>
  schema: string
  batchDb: Executor // claims' pool: heartbeats, hand-backs (synchronous commits)
  transitionDb: Executor // outcomes' pool (may commit asynchronously, see TaskRelay.durableTransitions)
  /** settings the lease guard's thread connects with; null: no guard */
  guardConnection: ConstructorParameters<typeof LeaseGuard>[0]['connection'] | null
  log: Logger
  events: TaskRelayEvents
  /** the worker's stop signal (a new one per start) */
  stopSignal: () => AbortSignal
  /** whether a task of this queue and group is paused now (PausedQueues): a claimed one is handed back, not started */
  paused: (queue: string, group: string) => boolean
}

/**
 * The worker's attempts once claimed: at most `concurrency` handlers at once, the rest waiting
 * (prefetch), leases renewed (LeaseKeeper; LeaseGuard while the loop is blocked), outcomes
 * recorded through the group-commit Completer, attempts handed back at shutdown or pause. The
 * fetch loop (worker.ts) asks freeSlots() and hands it claimed rows with accept().
 */
export class AttemptRunner {
  readonly #settings: Readonly<WorkerSettings>
  readonly #workerId: string
  readonly #tasks: ReadonlyMap<string, Task>
  readonly log: Logger
  readonly events: TaskRelayEvents
  readonly #worker: Pick<AttemptRunnerOptions, 'stopSignal' | 'paused'>
  /** attempts not yet recorded (leases renewed) or whose handler still runs */
  readonly #inflight = new Map<string, Attempt>()
  readonly #slots: Slots
  /** claimed, leased, waiting for a free slot (prefetch) */
  #ready: Attempt[] = []
  readonly #completer: Completer
  readonly #progress: ProgressWriter
  readonly #handBacks: HandBacks
  readonly #handingBack = new Set<Promise<void>>()
  readonly #leases: LeaseKeeper
  /** keeps leases while a handler's synchronous code blocks the loop */
  readonly #guard: LeaseGuard | null
  /** launchReady is on the stack (a synchronous handler re-enters it) */
  #launching = false
  readonly #inTransaction: InTransactionCompletions

  constructor(o: AttemptRunnerOptions) {
    this.#settings = o.settings
    this.#workerId = o.workerId
    this.#tasks = o.tasks
    this.log = o.log
    this.events = o.events
    this.#worker = o
    this.#slots = new Slots(o.settings.concurrency, o.settings.prefetch ?? o.settings.concurrency)
    this.#handBacks = new HandBacks(o.batchDb, o.schema, o.workerId, o.log, o.events)
    logTaskOutcomes(o.events, o.log, o.workerId)
    this.#inTransaction = new InTransactionCompletions({ ...o, db: o.batchDb, log: (a) => this.#host.log(a) })
    this.#completer = new Completer(o.transitionDb, o.schema, o.settings.flushIntervalMs, o.log)
    this.#progress = new ProgressWriter(o.batchDb, o.schema, 1000, o.log) // ctx.progress(): at most a write a second
    const { leaseMs, heartbeatMs, presenceMs, lostAfterMs } = o.settings
    // The guard stands in for both renewals while the loop is blocked: it acts after the shorter one is missed.
    const guardData = { connection: o.guardConnection!, schema: o.schema, workerId: o.workerId, leaseMs, heartbeatMs: Math.min(heartbeatMs, presenceMs), presenceTtlMs: lostAfterMs }
    this.#guard = o.guardConnection ? new LeaseGuard(guardData, o.log) : null
    this.#leases = new LeaseKeeper({ db: o.batchDb, schema: o.schema, leaseMs, heartbeatMs, log: o.log, attempts: () => this.#inflight.values(), renewedElsewhereAt: this.renewedElsewhereAt })
  }

  start(): void {
    this.#leases.start()
    if (this.#guard) return this.#guard.start()
    this.log.warn('no lease guard (its thread needs a pg.Pool whose settings can be copied): a handler that blocks the event loop past a lease may run twice')
  }

  /** When the lease guard last renewed this worker's leases and row (epoch ms; 0 if never). */
  readonly renewedElsewhereAt = (): number => this.#guard?.lastRenewedAt ?? 0
  /** Ids of the tasks this worker holds (claimed and not yet forgotten). */
  readonly heldIds = (): string[] => [...this.#inflight.keys()]
  /** This worker may be taken for dead (its row not renewed in time): stop every attempt, as a lost lease would. */
  abortAll(): void {
    for (const a of this.#inflight.values()) if (a.active && !a.recording) a.abort(new LeaseLostError(a.id, a.attempt))
  }

  /** Handlers running now. */
  get activeCount(): number { return this.#slots.busy }
  /** Handlers still running after their attempt ended, ignoring ctx.signal: they keep their slots (all of them: health reports it). */
  get stuckCount(): number { return this.#slots.stuck }

  /** Take claimed rows (leased from now on) and start what fits; returns how many were new. */
  accept(rows: readonly ClaimedTask[]): number {
    let claimed = 0
    const noHandler: Attempt[] = []
    const cannotStart: Attempt[] = []
    for (const row of rows) {
      // A duplicated message of an attempt this worker already holds: the claim hands it back as it is.
      if (this.#inflight.get(String(row.id))?.attempt === row.attempt) continue
      const attempt = new Attempt(row)
      claimed++
      // Not run here: deferred for a worker that has the handler (a rolling deploy).
      if (!this.#tasks.has(attempt.claimed.name)) noHandler.push(attempt)
      // Claimed while stuck handlers hold every slot (the claim was in flight): it could not start.
      else if (this.#slots.allStuck) cannotStart.push(attempt)
      else {
        this.#inflight.set(attempt.id, attempt)
        this.#ready.push(attempt)
      }
    }
    this.#track(this.#handBacks.noHandler(noHandler))
    this.#track(this.#handBacks.handBack(cannotStart, 'stuck'))
    this.launchReady()
    return claimed
  }

  /** Hand-backs outside #inflight, awaited at stop. */
  #track(handBack: Promise<void>): void {
    this.#handingBack.add(handBack)
    void handBack.finally(() => this.#handingBack.delete(handBack))
  }

  /** Start queued attempts while slots are free (not after stop began). */
  launchReady(): void {
    // A synchronous handler frees its slot inside #launch, which calls back here: the outer loop carries on.
    if (this.#launching) return
    this.#launching = true
    try {
      while (this.#slots.canStart && this.#ready.length > 0 && !this.#worker.stopSignal().aborted) {
        const attempt = this.#ready.shift()!
        // Given up while it waited (lease lost; it never took a slot): another worker may run it now.
        if (attempt.aborted) this.#retire(Object.assign(attempt, { slotFreed: true }))
        else if (this.#worker.paused(attempt.claimed.queue, attempt.claimed.group_key)) this.#track(this.#handBackUnstarted([attempt], 'paused'))
        else this.#launch(attempt)
      }
    } finally {
      this.#launching = false
    }
  }

  /** Attempts that never started (claimed ahead of a slot; at shutdown, stuck slots, or their queue paused since): back to pending, no attempt used. */
  #handBackUnstarted(attempts: Attempt[], reason: HandBackReason): Promise<void> {
    for (const a of attempts) this.#inflight.delete(a.id)
    return this.#handBacks.handBack(attempts, reason)
  }

  #launch(attempt: Attempt): void {
    attempt.startedAt = performance.now()
    this.#slots.busy++
    const task = this.#tasks.get(attempt.claimed.name)! // accept() deferred the others
    if (this.events.listenerCount('task:started') > 0) this.events.emit('task:started', eventFields(attempt, this.#workerId))
    let outcome: AttemptResult | Promise<AttemptResult>
    try {
      outcome = runAttempt(attempt, task, this.#host)
    } catch (err) {
      return this.#abandon(attempt, err)
    }
    // The slot frees when the handler's code has settled (AttemptHost.handlerDone), not when its
    // outcome is written: the next batch is popped and claimed while this one commits.
    if (!attempt.handlerStarted) this.#freeSlot(attempt) // rejected before running (bad payload)
    if (outcome instanceof Promise) {
      outcome.then(
        (o) => this.#record(attempt, o),
        (err: unknown) => this.#abandon(attempt, err),
      )
    } else {
      this.#record(attempt, outcome)
    }
  }

  /** No outcome to record (a bug): stop renewing the lease, so the sweeper retries the task once it expires. */
  #abandon(attempt: Attempt, err: unknown): void {
    this.#host.log(attempt).error({ err }, 'could not classify the outcome; the lease will expire and the sweeper retries')
    this.#retire(attempt)
  }

  #record(attempt: Attempt, outcome: AttemptResult): void {
    if (!attempt.active) return this.#retire(attempt) // handed back at shutdown
    if (outcome.state === 'completed-in-transaction') return void this.#inTransaction.confirm(attempt).finally(() => this.#retire(attempt))
    attempt.recording = true
    // `written` is what the row got: a plain failure when Postgres refused the outcome.
    this.#completer.record(attempt.id, attempt.attempt, outcome, (recorded, written) => {
      attempt.active = false
      try {
        reportOutcome(this.events, this.#workerId, attempt, written, recorded)
      } catch (err) {
        this.#host.log(attempt).error({ err }, 'reporting a recorded outcome failed')
      }
      this.#retire(attempt)
    })
  }

  /** The attempt is over for this worker: forget it once its handler's code has stopped (a hard cap on slots). */
  #retire(attempt: Attempt): void {
    attempt.active = false
    const forget = () => {
      this.#freeSlot(attempt)
      // A later attempt of the same task may hold the entry by now (this one lost its lease).
      if (this.#inflight.get(attempt.id) === attempt) this.#inflight.delete(attempt.id)
      this.releaseSlots()
    }
    if (attempt.handlerDone || !attempt.handlerStarted) return forget()
    // The attempt is over but its code runs on, holding its slot.
    this.#slots.stuck++
    void attempt.settled().then(() => {
      this.#slots.stuck--
      forget()
    })
    if (this.#slots.allStuck && this.#ready.length > 0) void this.#handBackReady()
  }

  /** Every slot is held by a stuck handler: prefetched tasks would wait behind them for ever. */
  async #handBackReady(): Promise<void> {
    const ready = this.#ready.splice(0)
    this.log.error(
      { stuck: this.#slots.stuck, handedBack: ready.length },
      'every slot is held by a handler that ignored its abort; handing prefetched tasks back and fetching nothing until a slot frees',
    )
    await this.#handBackUnstarted(ready, 'stuck')
  }

  #freeSlot(attempt: Attempt): void {
    if (attempt.slotFreed) return
    attempt.slotFreed = true
    this.#slots.busy--
    this.releaseSlots()
  }

  /** What attempts ask of this worker; one object shared by all of them. */
  readonly #host: AttemptHost = {
    log: (attempt) =>
      (attempt.logger ??= this.log.child({ taskId: attempt.id, task: attempt.claimed.name, queue: attempt.claimed.queue, attempt: attempt.attempt })),
    heartbeat: async (attempt) => {
      const owned = await this.#leases.beat([attempt])
      if (!owned.has(attempt.id)) throw new LeaseLostError(attempt.id, attempt.attempt)
    },
    handlerDone: (attempt) => this.#freeSlot(attempt),
    complete: (attempt, trx, result) => this.#inTransaction.complete(attempt, trx, result),
    progress: (attempt, value, info) => this.#progress.report(attempt, value, info),
  }

  /** How many messages to pop: waits until there is room (or stop began). */
  freeSlots(reserved: () => number): Promise<number> {
    return this.#slots.whenFree(() => this.#ready.length + reserved(), this.#worker.stopSignal())
  }

  releaseSlots(): void {
    this.launchReady()
    this.#slots.notify()
  }

  /**
   * Graceful stop, once no more attempts arrive: in-flight handlers get
   * shutdownGraceMs to finish; the rest are aborted and handed back to
   * pending (no attempt used). Returns how many attempts were abandoned.
   */
  async stop(): Promise<number> {
    // Prefetched attempts never started: hand them back at once.
    await this.#handBackUnstarted(this.#ready.splice(0), 'shutdown')
    const deadline = Date.now() + this.#settings.shutdownGraceMs
    while ([...this.#inflight.values()].some((e) => e.active) && Date.now() < deadline) {
      const tick = AbortSignal.timeout(Math.max(1, Math.min(100, deadline - Date.now())))
      await this.#slots.changed(tick)
    }
    // Attempts whose outcome is already queued are written by the drain below.
    const unfinished = [...this.#inflight.values()].filter((e) => e.active && !e.recording)
    for (const e of unfinished) {
      e.active = false
      e.abort(new ShutdownError())
    }
    // Hand back only handlers that really stopped. One that ignores its abort keeps its
    // lease (no longer renewed): the sweeper retries it once it expires, never meanwhile.
    const stopped = await settledWithin(unfinished, ABORT_GRACE_MAX_MS)
    const stillRunning = unfinished.filter((e) => !stopped.has(e))
    if (stillRunning.length > 0) {
      this.log.warn({ count: stillRunning.length }, 'handlers ignored the shutdown abort; their tasks are retried after the lease expires')
    }
    await this.#handBacks.handBack(unfinished.filter((e) => stopped.has(e)), 'shutdown')
    await Promise.all(this.#handingBack)
    await this.#completer.drain(5000)
    await this.#progress.stop()
    await this.#leases.stop()
    await this.#guard?.stop()
    return this.#inflight.size
  }
}
