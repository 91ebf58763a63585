import { hostname } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import { Service, errorBackoffMs, type ServiceDeps } from '../service.ts'
import type { TaskEventFields } from '../events.ts'
import type { TaskRelay } from '../task-relay.ts'
import type { Task } from '../define-task.ts'
import { parseSettings, workerSettingsSchema, type WorkerSettings } from '../config.ts'
import { InvalidOptionsError, LeaseLostError, TaskRelayError } from '../errors.ts'
import { loadSql, plainArray } from '../db/sql.ts'
import { closeRedis, createRedis, unlessClosed, whenReady, type RedisConfig } from '../redis/connection.ts'
import { decodeMessage, redisKeys, type Keys } from '../redis/keys.ts'
import { ABORT_GRACE_MAX_MS, Attempt, runAttempt, type AttemptHost, type AttemptOutcome, type ClaimedTask } from './run-attempt.ts'
import { Completer } from './completer.ts'
import { LeaseKeeper } from './lease-keeper.ts'

export interface WorkerOptions extends Partial<WorkerSettings> {
  redis: RedisConfig
  /** The tasks this worker can run. */
  tasks: readonly Task<any, any>[]
  /** Redis key prefix shared with the relays. Default "taskrelay". */
  keyPrefix?: string
  /**
   * Shown in task rows (worker_id), with ":" and a random suffix appended so
   * that every worker instance is distinct (a resent claim gives a task back
   * only to the instance that claimed it). Default host:pid:random.
   */
  workerId?: string
}

export class ShutdownError extends TaskRelayError {
  constructor() {
    super('WORKER_SHUTDOWN', 'worker shut down before the task finished')
  }
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
  readonly #inflight = new Map<string, Attempt>()
  /** handlers whose code has not settled: what the concurrency cap counts */
  #busy = 0
  /** messages popped and being claimed: slots promised to them */
  #reserved = 0
  /** claim statements under way (#claimAndRun) */
  readonly #claims = new Set<Promise<void>>()
  /** claimed, leased, waiting for a free slot (prefetch) */
  #ready: Attempt[] = []
  readonly #prefetch: number
  #blocking: Redis | null = null
  #commands: Redis | null = null
  #completer: Completer
  #leases: LeaseKeeper
  #slotWaiters: Array<() => void> = []
  /** #launchReady is on the stack (a synchronous handler re-enters it) */
  #launching = false

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
    this.workerId = `${workerId ?? `${hostname()}:${process.pid}`}:${randomBytes(3).toString('hex')}`
    // Outcomes may commit asynchronously (see TaskRelay.durableTransitions); heartbeats never do.
    this.#completer = new Completer(tr.transitionExecutor, tr.schema, this.settings.flushIntervalMs, this.log)
    this.#leases = new LeaseKeeper({
      db: tr.batchExecutor,
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
    const claim = this.#claimAndRun(key, messages)
    this.#claims.add(claim)
    void claim.finally(() => this.#claims.delete(claim))
    return messages.length
  }

  async #claimAndRun(key: string, messages: string[]): Promise<void> {
    try {
      const ids: string[] = []
      const tokens: string[] = []
      for (const message of messages) {
        const m = decodeMessage(message)
        if (m) {
          ids.push(m.id)
          tokens.push(m.token)
        }
      }
      if (ids.length < messages.length) this.log.warn({ count: messages.length - ids.length, key }, 'dropped malformed messages')
      if (ids.length === 0) return
      const rows = await this.#claim(ids, tokens)
      if (!rows) {
        // Postgres unreachable: give the messages back so they are not stuck until the dispatch timeout.
        await this.#pushBack(key, messages)
        return
      }
      let claimed = 0
      for (const row of rows) {
        // A duplicated message of an attempt this worker already holds: the claim hands it back as it is.
        if (this.#inflight.get(String(row.id))?.attempt === row.attempt) continue
        // Leased from now on, waiting for a slot.
        const attempt = new Attempt(row)
        this.#inflight.set(attempt.id, attempt)
        this.#ready.push(attempt)
        claimed++
      }
      const stale = ids.length - claimed
      if (stale > 0) {
        this.events.emit('worker:stale-messages', { count: stale })
        this.log.debug({ count: stale }, 'dropped stale or duplicated messages')
      }
      this.#launchReady()
    } finally {
      this.#reserved -= messages.length
      this.#releaseSlots()
    }
  }

  /**
   * The claim statement, sent again while it fails, for up to half a lease:
   * a failure may come after the commit (the reply lost with its
   * connection), and the statement gives this worker back what it already
   * claimed (task-claim-batch.sql). null: give the messages back.
   */
  async #claim(ids: string[], tokens: string[]): Promise<ClaimedTask[] | null> {
    const giveUpAt = Date.now() + this.settings.leaseMs / 2
    for (let tries = 1; ; tries++) {
      try {
        // Ids are digits and tokens uuids (decodeMessage checked): safe as plain array literals.
        const res = await this.#tr.batchExecutor.query<ClaimedTask>(loadSql('task-claim-batch.sql', this.#tr.schema), [
          plainArray(ids),
          plainArray(tokens),
          this.settings.leaseMs,
          this.workerId,
        ])
        if (tries > 1) this.log.info({ tries, count: res.rows.length }, 'claim went through after failing')
        return res.rows
      } catch (err) {
        const delayMs = errorBackoffMs(tries)
        if (this.stopSignal.aborted || Date.now() + delayMs > giveUpAt) {
          this.log.warn({ err, tries, count: ids.length }, 'claim failed; pushing messages back to redis')
          return null
        }
        if (tries === 1) this.log.warn({ err, count: ids.length }, 'claim failed; sending it again (it may have committed)')
        await sleep(delayMs, undefined, { signal: this.stopSignal }).catch(() => {}) // stop cuts the wait short
      }
    }
  }

  /** Start queued attempts while slots are free (not after stop began). */
  #launchReady(): void {
    // A synchronous handler frees its slot inside #launch, which calls back here: the outer loop carries on.
    if (this.#launching) return
    this.#launching = true
    try {
      while (this.#busy < this.settings.concurrency && this.#ready.length > 0 && !this.stopSignal.aborted) {
        this.#launch(this.#ready.shift()!)
      }
    } finally {
      this.#launching = false
    }
  }

  #launch(attempt: Attempt): void {
    attempt.startedAt = performance.now()
    this.#busy++
    if (this.events.listenerCount('task:started') > 0) this.events.emit('task:started', eventFields(attempt))
    let outcome: AttemptOutcome | Promise<AttemptOutcome>
    try {
      outcome = runAttempt(attempt, this.#tasks.get(attempt.claimed.name), this.#host)
    } catch (err) {
      return this.#abandon(attempt, err)
    }
    // The slot frees when the handler's code has settled (AttemptHost.handlerDone), not when its
    // outcome is written: the next batch is popped and claimed while this one commits.
    if (!attempt.handlerStarted) this.#freeSlot(attempt) // rejected before running (no handler, bad payload)
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

  #record(attempt: Attempt, outcome: AttemptOutcome): void {
    if (!attempt.active) return this.#retire(attempt) // handed back at shutdown
    attempt.recording = true
    this.#completer.record(attempt.id, attempt.attempt, outcome, (recorded) => {
      attempt.active = false
      try {
        this.#report(attempt, outcome, recorded)
      } catch (err) {
        this.#host.log(attempt).error({ err }, 'reporting a recorded outcome failed')
      }
      this.#retire(attempt)
    })
  }

  #report(attempt: Attempt, outcome: AttemptOutcome, recorded: boolean): void {
    const durationMs = Math.round(performance.now() - attempt.startedAt)
    if (!recorded) {
      this.#host.log(attempt).warn({ durationMs }, 'outcome discarded: this attempt no longer owns the task (lease lost or cancelled)')
      this.events.emit('task:lease-lost', eventFields(attempt))
    } else if (outcome.state === 'succeeded') {
      if (this.events.listenerCount('task:succeeded') > 0) this.events.emit('task:succeeded', { ...eventFields(attempt), durationMs })
    } else if (outcome.state === 'pending') {
      this.#host.log(attempt).warn({ durationMs, delayMs: outcome.delayMs, err: outcome.error.message }, 'task failed; will retry')
      this.events.emit('task:retried', { ...eventFields(attempt), durationMs, delayMs: outcome.delayMs, error: outcome.error.message })
    } else {
      this.#host.log(attempt).error({ durationMs, err: outcome.error.message, kind: outcome.error.kind }, 'task failed')
      this.events.emit('task:failed', { ...eventFields(attempt), durationMs, error: outcome.error.message })
    }
  }

  /** The attempt is over for this worker: forget it once its handler's code has stopped (a hard cap on slots). */
  #retire(attempt: Attempt): void {
    attempt.active = false
    const forget = () => {
      this.#freeSlot(attempt)
      // A later attempt of the same task may hold the entry by now (this one lost its lease).
      if (this.#inflight.get(attempt.id) === attempt) this.#inflight.delete(attempt.id)
      this.#releaseSlots()
    }
    if (attempt.handlerDone || !attempt.handlerStarted) forget()
    else void attempt.settled().then(forget)
  }

  #freeSlot(attempt: Attempt): void {
    if (attempt.slotFreed) return
    attempt.slotFreed = true
    this.#busy--
    this.#releaseSlots()
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
    // Claims under way end first (a retrying one gives up at once), so what they claim is handed back below.
    await Promise.allSettled(this.#claims)
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
  async #handBack(unfinished: Attempt[]): Promise<void> {
    if (unfinished.length > 0) {
      for (const e of unfinished) e.active = false
      try {
        const res = await this.#tr.batchExecutor.query<{ id: string }>(loadSql('task-hand-back.sql', this.#tr.schema), [
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

function eventFields(attempt: Attempt): TaskEventFields {
  return { id: attempt.id, name: attempt.claimed.name, queue: attempt.claimed.queue, attempt: attempt.attempt }
}

/** The attempts whose handlers settle within `ms`. */
async function settledWithin(attempts: readonly Attempt[], ms: number): Promise<Set<Attempt>> {
  const settled = new Set<Attempt>()
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))
  await Promise.race([Promise.all(attempts.map((a) => a.settled().then(() => void settled.add(a)))), deadline])
  clearTimeout(timer)
  return settled
}
