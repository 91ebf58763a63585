import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { Service, type ServiceDeps } from '../service.ts'
import type { TaskRelay } from '../task-relay.ts'
import type { Task } from '../define-task.ts'
import { parseSettings, workerSettingsSchema, type WorkerSettings } from '../config.ts'
import { InvalidOptionsError, LeaseLostError, TaskRelayError } from '../errors.ts'
import { loadSql } from '../db/sql.ts'
import { closeRedis, createRedis, unlessClosed, whenReady, type RedisConfig } from '../redis/connection.ts'
import { decodeMessage, redisKeys, type Keys } from '../redis/keys.ts'
import { ABORT_GRACE_MAX_MS, runAttempt, type ClaimedTask } from './run-attempt.ts'
import { Completer } from './completer.ts'
import { LeaseKeeper, type LeasedAttempt } from './lease-keeper.ts'

export interface WorkerOptions extends Partial<WorkerSettings> {
  redis: RedisConfig
  /** The tasks this worker can run. */
  tasks: readonly Task<any, any>[]
  /** Redis key prefix shared with the relays. Default "taskrelay". */
  keyPrefix?: string
  /** Shown in task rows (worker_id). Default host:pid:random. */
  workerId?: string
}

export class ShutdownError extends TaskRelayError {
  constructor() {
    super('WORKER_SHUTDOWN', 'worker shut down before the task finished')
  }
}

interface InFlight extends LeasedAttempt {
  claimed: ClaimedTask
  controller: AbortController
  /** performance.now() when the handler was launched (for durationMs) */
  startedAt: number
  /** the handler was started */
  handlerRunning: boolean
  /** resolves when the handler's code has settled (at once if it never ran) */
  settled: Promise<void>
  /** the outcome is known and queued in the completer: not to be handed back */
  recording: boolean
}

/**
 * Takes "id:token" messages from Redis with one blocking read per batch,
 * claims them in Postgres with one fenced UPDATE, runs the handlers (at most
 * `concurrency` at once), and records outcomes through the group-commit
 * Completer. Leases of all in-flight attempts are renewed by one UPDATE.
 *
 * Lists + BLMPOP instead of a stream and consumer group: Postgres already is
 * the ledger of what was delivered (the sweeper re-dispatches what a worker
 * popped and lost), so a pending-entries list would be a second, weaker copy;
 * a list also needs nothing recreated after Redis comes back empty.
 */
export class Worker extends Service<number> {
  readonly settings: Readonly<WorkerSettings>
  readonly workerId: string
  readonly #tr: TaskRelay
  readonly #tasks: ReadonlyMap<string, Task>
  readonly #redisConfig: RedisConfig
  readonly #keys: Keys
  /** attempts not yet recorded (leases renewed) or whose handler still runs */
  readonly #inflight = new Map<string, InFlight>()
  /** handlers whose code has not settled: what the concurrency cap counts */
  #busy = 0
  /** messages popped and being claimed: slots promised to them */
  #reserved = 0
  /** claimed, leased, waiting for a free slot (prefetch) */
  #ready: InFlight[] = []
  readonly #prefetch: number
  #blocking: Redis | null = null
  #commands: Redis | null = null
  #completer: Completer
  #leases: LeaseKeeper
  #slotWaiters: Array<() => void> = []

  constructor(tr: TaskRelay, options: WorkerOptions, deps: ServiceDeps = {}) {
    super('worker', { logger: tr.logger, ...deps })
    const { redis, tasks, keyPrefix, workerId, ...settings } = options
    const problems: string[] = []
    if (!redis) problems.push('redis: required (a redis:// URL or sentinel settings)')
    if (!Array.isArray(tasks) || tasks.length === 0) problems.push('tasks: give at least one task from defineTask()')
    if (problems.length) throw new InvalidOptionsError('worker options', problems)
    this.settings = parseSettings(workerSettingsSchema, settings, 'worker options', (w, p) => new InvalidOptionsError(w, p))
    const byName = new Map<string, Task>()
    for (const t of tasks) {
      const existing = byName.get(t.name)
      if (existing && existing !== t) throw new InvalidOptionsError('worker options', [`tasks: two different tasks are named "${t.name}"`])
      byName.set(t.name, t)
    }
    this.#tasks = byName
    this.#prefetch = this.settings.prefetch ?? this.settings.concurrency
    this.#tr = tr
    this.#redisConfig = redis
    this.#keys = redisKeys(keyPrefix ?? 'taskrelay')
    this.workerId = workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
    // Outcomes may commit asynchronously (see TaskRelay.durableTransitions); heartbeats never do.
    this.#completer = new Completer(tr.transitionExecutor, tr.schema, this.settings.flushIntervalMs, this.log)
    this.#leases = new LeaseKeeper({
      db: tr.executor,
      schema: tr.schema,
      leaseMs: this.settings.leaseMs,
      heartbeatMs: this.settings.heartbeatMs,
      log: this.log,
      attempts: () => this.#inflight.values(),
    })
  }

  /** Handlers running now. */
  get activeCount(): number {
    return this.#busy
  }

  protected override async onStart(): Promise<void> {
    await this.#tr.assertSchemaCurrent()
    await this.#registerTaskTypes()
    this.#blocking = createRedis(this.#redisConfig, { role: 'blocking' }, this.log)
    this.#commands = createRedis(this.#redisConfig, { role: 'commands', commandTimeoutMs: 5000 }, this.log)
    await Promise.all([
      this.#blocking.connect().catch((err) => this.log.warn({ err }, 'redis not reachable yet; will keep retrying')),
      this.#commands.connect().catch(() => {}),
    ])
    this.#leases.start()
    this.log.info(
      { workerId: this.workerId, queues: this.settings.queues, concurrency: this.settings.concurrency, tasks: [...this.#tasks.keys()] },
      'worker started',
    )
  }

  protected delayAfter(): number {
    return 0 // the blocking read is the wait
  }

  /** Pop up to the free slots' worth of messages (blocking up to blockMs), claim them, start the handlers. */
  async runOnce(): Promise<number> {
    const free = await this.#freeSlots()
    if (free === 0 || this.stopSignal.aborted) return 0
    const blocking = this.#blocking!
    const keys = this.settings.queues.map((q) => this.#keys.ready(q))
    // Reads are never queued offline nor resent (see createRedis): wait for the connection, and
    // stop waiting for a read the moment its connection drops.
    if (!(await whenReady(blocking, this.stopSignal))) return 0
    const startedAt = Date.now()
    const reply = await unlessClosed(blocking, blocking.blmpop(this.settings.blockMs / 1000, keys.length, ...keys, 'LEFT', 'COUNT', free))
    if (!reply) {
      // ioredis answers null itself when the server stayed silent past the
      // block time plus grace: the connection hangs (seen after failovers).
      if (Date.now() - startedAt > this.settings.blockMs + 2500) {
        this.log.warn('blocking read hung past its timeout; rebuilding the redis connection')
        blocking.disconnect(true)
      }
      return 0
    }
    const [key, messages] = reply
    if (this.stopSignal.aborted) {
      await this.#pushBack(key, messages)
      return 0
    }
    this.#reserved += messages.length
    void this.#claimAndRun(key, messages)
    return messages.length
  }

  async #claimAndRun(key: string, messages: string[]): Promise<void> {
    try {
      const decoded = messages.map(decodeMessage)
      const valid = decoded.filter((m): m is { id: string; token: string } => m !== null)
      if (valid.length < decoded.length) this.log.warn({ count: decoded.length - valid.length, key }, 'dropped malformed messages')
      if (valid.length === 0) return
      let rows: ClaimedTask[]
      try {
        const res = await this.#tr.executor.query<ClaimedTask>(loadSql('task-claim-batch.sql', this.#tr.schema), [
          valid.map((m) => m.id),
          valid.map((m) => m.token),
          this.settings.leaseMs,
          this.workerId,
        ])
        rows = res.rows
      } catch (err) {
        // Postgres unreachable: give the messages back so they are not stuck until the dispatch timeout.
        this.log.warn({ err, count: valid.length }, 'claim failed; pushing messages back to redis')
        await this.#pushBack(key, messages)
        return
      }
      const stale = valid.length - rows.length
      if (stale > 0) {
        this.events.emit('worker:stale-messages', { count: stale })
        this.log.debug({ count: stale }, 'dropped stale or duplicated messages')
      }
      for (const row of rows) this.#accept({ ...row, id: String(row.id) })
      this.#launchReady()
    } finally {
      this.#reserved -= messages.length
      this.#releaseSlots()
    }
  }

  /** A claimed attempt: leased from now on, waiting for a slot. */
  #accept(claimed: ClaimedTask): void {
    const controller = new AbortController()
    const entry: InFlight = {
      id: claimed.id,
      attempt: claimed.attempt,
      active: true,
      claimed,
      controller,
      startedAt: 0, // set by #launch
      handlerRunning: false,
      settled: Promise.resolve(),
      recording: false,
      abort: (reason) => {
        if (!controller.signal.aborted) controller.abort(reason)
      },
    }
    this.#inflight.set(claimed.id, entry)
    this.#ready.push(entry)
  }

  /** Start queued attempts while slots are free (not after stop began). */
  #launchReady(): void {
    while (this.#busy < this.settings.concurrency && this.#ready.length > 0 && !this.stopSignal.aborted) {
      this.#launch(this.#ready.shift()!)
    }
  }

  #launch(entry: InFlight): void {
    const { claimed, controller } = entry
    entry.startedAt = performance.now()
    this.#busy++
    // The slot frees when the handler's code has settled, not when its outcome
    // is written: the next batch is popped and claimed while this one commits.
    let slotFreed = false
    const freeSlot = () => {
      if (slotFreed) return
      slotFreed = true
      this.#busy--
      this.#releaseSlots()
    }
    const fields = { id: claimed.id, name: claimed.name, queue: claimed.queue, attempt: claimed.attempt }
    // The task's child logger is built on first use: most attempts never log,
    // and building one per task was a visible share of a drain's CPU.
    let taskLog: Logger | undefined
    const log = () => (taskLog ??= this.log.child({ taskId: claimed.id, task: claimed.name, queue: claimed.queue, attempt: claimed.attempt }))
    this.events.emit('task:started', fields)
    void runAttempt({
      claimed,
      task: this.#tasks.get(claimed.name),
      signal: controller.signal,
      abort: entry.abort,
      log,
      heartbeat: async () => {
        const owned = await this.#leases.beat([entry])
        if (!owned.has(entry.id)) throw new LeaseLostError(entry.id, entry.attempt)
      },
      onHandlerSettled: (p) => {
        entry.handlerRunning = true
        entry.settled = p.then(
          () => {},
          () => {},
        )
        void entry.settled.then(freeSlot)
      },
    })
      .then(async (outcome) => {
        if (!entry.handlerRunning) freeSlot() // rejected before running (no handler, bad payload)
        if (!entry.active) return // handed back at shutdown
        const durationMs = Math.round(performance.now() - entry.startedAt)
        entry.recording = true
        const recorded = await this.#completer.record(claimed.id, claimed.attempt, outcome)
        entry.active = false
        if (!recorded) {
          log().warn({ durationMs }, 'outcome discarded: this attempt no longer owns the task (lease lost or cancelled)')
          this.events.emit('task:lease-lost', fields)
        } else if (outcome.state === 'succeeded') {
          this.events.emit('task:succeeded', { ...fields, durationMs })
        } else if (outcome.state === 'pending') {
          log().warn({ durationMs, delayMs: outcome.delayMs, err: outcome.error.message }, 'task failed; will retry')
          this.events.emit('task:retried', { ...fields, durationMs, delayMs: outcome.delayMs, error: outcome.error.message })
        } else {
          log().error({ durationMs, err: outcome.error.message, kind: outcome.error.kind }, 'task failed')
          this.events.emit('task:failed', { ...fields, durationMs, error: outcome.error.message })
        }
      })
      .catch((err) => log().error({ err }, 'recording the outcome failed; the lease will expire and the sweeper retries'))
      .finally(async () => {
        entry.active = false
        // A handler that ignored its abort keeps its slot until it really stops: a hard cap.
        await entry.settled
        freeSlot()
        this.#inflight.delete(claimed.id)
        this.#releaseSlots()
      })
  }

  async #freeSlots(): Promise<number> {
    for (;;) {
      const free = this.settings.concurrency + this.#prefetch - this.#busy - this.#ready.length - this.#reserved
      if (free > 0 || this.stopSignal.aborted) return Math.max(free, 0)
      await new Promise<void>((resolve) => {
        const onStop = () => resolve()
        this.stopSignal.addEventListener('abort', onStop, { once: true })
        this.#slotWaiters.push(() => {
          this.stopSignal.removeEventListener('abort', onStop)
          resolve()
        })
      })
      // Handlers that finish together free their slots in the same turn of the
      // event loop: collect them all, so the next read pops a batch, not one.
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
  }

  #releaseSlots() {
    this.#launchReady()
    const waiters = this.#slotWaiters
    this.#slotWaiters = []
    for (const w of waiters) w()
  }

  async #pushBack(key: string, messages: string[]): Promise<void> {
    try {
      // LPUSH reverses its arguments: push in reverse to keep the original order at the head.
      await this.#commands!.lpush(key, ...[...messages].reverse())
    } catch (err) {
      this.log.warn({ err, count: messages.length }, 'could not push messages back; the sweeper re-dispatches them after dispatchTimeoutMs')
    }
  }

  async #registerTaskTypes(): Promise<void> {
    const tasks = [...this.#tasks.values()]
    await this.#tr.executor.query(loadSql('task-types-upsert.sql', this.#tr.schema), [
      tasks.map((t) => t.name),
      tasks.map((t) => t.policy.queue),
      tasks.map((t) => t.policy.priority),
      tasks.map((t) => t.policy.maxAttempts),
    ])
  }

  /**
   * Graceful stop: no new reads; in-flight handlers get shutdownGraceMs to
   * finish; the rest are aborted and handed back to pending (no attempt used).
   */
  protected override async onStop(): Promise<void> {
    // Prefetched attempts never started: hand them back at once.
    const queued = this.#ready.splice(0)
    for (const e of queued) this.#inflight.delete(e.id)
    await this.#handBack(queued)
    const deadline = Date.now() + this.settings.shutdownGraceMs
    while ([...this.#inflight.values()].some((e) => e.active) && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.#slotWaiters.push(resolve)
        setTimeout(resolve, Math.max(1, Math.min(100, deadline - Date.now())))
      })
    }
    // Attempts whose outcome is already queued are written by the drain below.
    const unfinished = [...this.#inflight.values()].filter((e) => e.active && !e.recording)
    for (const e of unfinished) {
      e.active = false
      e.abort(new ShutdownError())
    }
    // Hand back only handlers that really stopped. One that ignores its abort
    // keeps its lease (no longer renewed): the sweeper retries it once the
    // lease expires, so no other worker runs it meanwhile.
    const stopped = await settledWithin(unfinished, ABORT_GRACE_MAX_MS)
    const stillRunning = unfinished.filter((e) => !stopped.has(e))
    if (stillRunning.length > 0) {
      this.log.warn({ count: stillRunning.length }, 'handlers ignored the shutdown abort; their tasks are retried after the lease expires')
    }
    await this.#handBack(unfinished.filter((e) => stopped.has(e)))
    await this.#completer.drain(5000)
    await this.#leases.stop()
    closeRedis(this.#blocking)
    closeRedis(this.#commands)
    this.#blocking = this.#commands = null
    this.log.info({ workerId: this.workerId, abandoned: this.#inflight.size }, 'worker stopped')
  }

  /** Back to pending without using an attempt (fenced by attempt); only for attempts whose code has stopped. */
  async #handBack(unfinished: InFlight[]): Promise<void> {
    if (unfinished.length > 0) {
      for (const e of unfinished) e.active = false
      try {
        const res = await this.#tr.executor.query<{ id: string }>(loadSql('task-hand-back.sql', this.#tr.schema), [
          unfinished.map((e) => e.id),
          unfinished.map((e) => e.attempt),
        ])
        this.log.info({ count: res.rowCount }, 'handed unfinished tasks back')
        for (const e of unfinished) {
          this.events.emit('task:handed-back', { id: e.id, name: e.claimed.name, queue: e.claimed.queue, attempt: e.attempt })
        }
      } catch (err) {
        this.log.error({ err, count: unfinished.length }, 'could not hand tasks back; their leases will expire and the sweeper retries them')
      }
    }
  }
}

/** The attempts whose handlers settle within `ms`. */
async function settledWithin(attempts: readonly InFlight[], ms: number): Promise<Set<InFlight>> {
  const settled = new Set<InFlight>()
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))
  await Promise.race([Promise.all(attempts.map((a) => a.settled.then(() => void settled.add(a)))), deadline])
  clearTimeout(timer)
  return settled
}
