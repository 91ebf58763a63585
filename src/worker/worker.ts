import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import { Service, type ServiceDeps } from '../service.ts'
import type { TaskRelayContext } from '../db/context.ts'
import { tasksByName, type Task } from '../define-task.ts'
import { parseSettings, workerSettingsSchema, type WorkerSettings } from '../config.ts'
import { InvalidOptionsError } from '../errors.ts'
import { closeRedis, createRedis, unlessClosed, whenReady, type RedisConfig } from '../redis/connection.ts'
import { decodeMessage, redisKeys, type Keys } from '../redis/keys.ts'
import { AttemptRunner } from './attempt-runner.ts'
import { LeaseGuard } from './lease-guard.ts'
import { registerTaskTypes } from './hand-back.ts'
import { WorkerPresence } from './presence.ts'
import { claimWithRetry } from './claim.ts'

export interface WorkerOptions extends Partial<WorkerSettings> {
  redis: RedisConfig
  /** The tasks this worker can run. */
  tasks: readonly Task<any, any>[]
  /**
   * Queues this worker takes tasks from. Default: every queue the `tasks`
   * use. Given explicitly, tasks on other queues are not run here (the
   * worker logs which).
   */
  queues?: string[]
  /** Redis key prefix shared with the relays. Default "taskrelay". */
  keyPrefix?: string
  /**
   * Shown in task rows (worker_id), with ":" and a random suffix appended so
   * that every worker instance is distinct (a resent claim gives a task back
   * only to the instance that claimed it). Default host:pid:random.
   */
  workerId?: string
}


/** The queues `tasks` use, in first-seen order: what a worker serves unless told otherwise. */
export function taskQueues(tasks: readonly Task<any, any>[]): string[] {
  return [...new Set(tasks.map((t) => t.policy.queue))]
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
  readonly #tr: TaskRelayContext
  readonly #tasks: ReadonlyMap<string, Task>
  readonly #redisConfig: RedisConfig
  readonly #keys: Keys
  /** messages popped and being claimed: slots promised to them */
  #reserved = 0
  /** claim statements under way (#claimAndRun) */
  readonly #claims = new Set<Promise<void>>()
  #blocking: Redis | null = null
  #commands: Redis | null = null
  readonly #runner: AttemptRunner
  readonly #presence: WorkerPresence

  constructor(tr: TaskRelayContext, options: WorkerOptions, deps: ServiceDeps = {}) {
    super('worker', { logger: tr.logger, ...deps })
    const { redis, tasks, keyPrefix, workerId, ...settings } = options
    const problems: string[] = []
    if (!redis) problems.push('redis: required (a redis:// URL or sentinel settings)')
    if (!Array.isArray(tasks) || tasks.length === 0) problems.push('tasks: give at least one task from defineTask()')
    if (problems.length) throw new InvalidOptionsError('worker options', problems)
    // A task on queue "emails" must not sit unclaimed because the worker listens on "default".
    const queues = settings.queues ?? taskQueues(tasks)
    this.settings = parseSettings(workerSettingsSchema, { ...settings, queues }, 'worker options', (w, p) => new InvalidOptionsError(w, p))
    const { byName, conflicts } = tasksByName(tasks)
    if (conflicts.length > 0) throw new InvalidOptionsError('worker options', [`tasks: two different tasks are named "${conflicts[0]!.name}"`])
    this.#tasks = byName
    this.#tr = tr
    this.#redisConfig = redis
    this.#keys = redisKeys(keyPrefix ?? 'taskrelay')
    this.workerId = `${workerId ?? `${hostname()}:${process.pid}`}:${randomBytes(3).toString('hex')}`
    // A few missed renewals (a busy event loop) do not make the worker look gone.
    const ttlMs = Math.max(this.settings.leaseMs, 3 * this.settings.heartbeatMs)
    // Only tasks it will run: a task on a queue it does not serve is not served by it.
    const served = [...byName.values()].filter((t) => this.settings.queues.includes(t.policy.queue)).map((t) => t.name)
    const row = { schema: tr.schema, workerId: this.workerId, queues: [...this.settings.queues], tasks: served, ttlMs }
    this.#presence = new WorkerPresence(tr.executor, row, this.settings.heartbeatMs, this.log)
    this.#runner = new AttemptRunner({
      settings: this.settings,
      workerId: this.workerId,
      tasks: byName,
      schema: tr.schema,
      batchDb: tr.batchExecutor,
      transitionDb: tr.transitionExecutor,
      guardConnection: LeaseGuard.connectionOf(tr.pool),
      log: this.log,
      events: this.events,
      stopSignal: () => this.stopSignal,
    })
  }

  /** Handlers running now. */
  get activeCount(): number {
    return this.#runner.activeCount
  }

  /** Handlers still running after their attempt ended, ignoring ctx.signal (see AttemptRunner.stuckCount). */
  get stuckCount(): number {
    return this.#runner.stuckCount
  }

  protected override async onStart(): Promise<void> {
    await this.#tr.assertSchemaCurrent()
    await registerTaskTypes(this.#tr.executor, this.#tr.schema, [...this.#tasks.values()])
    await this.#presence.start()
    this.#blocking = createRedis(this.#redisConfig, { role: 'blocking' }, this.log)
    this.#commands = createRedis(this.#redisConfig, { role: 'commands', commandTimeoutMs: 5000 }, this.log)
    await Promise.all([
      this.#blocking.connect().catch((err) => this.log.warn({ err }, 'redis not reachable yet; will keep retrying')),
      this.#commands.connect().catch(() => {}),
    ])
    this.#runner.start()
    this.log.info(
      { workerId: this.workerId, queues: this.settings.queues, concurrency: this.settings.concurrency, tasks: [...this.#tasks.keys()] },
      'worker started',
    )
    const notServed = [...this.#tasks.values()].filter((t) => !this.settings.queues.includes(t.policy.queue))
    if (notServed.length > 0) {
      this.log.warn(
        { queues: this.settings.queues, notRun: notServed.map((t) => ({ task: t.name, queue: t.policy.queue })) },
        'some loaded tasks are on queues this worker does not serve; it will not run them',
      )
    }
  }

  protected delayAfter(): number {
    return 0 // the blocking read is the wait
  }

  /** Pop up to the free slots' worth of messages (blocking up to blockMs), claim them, start the handlers. */
  async runOnce(): Promise<number> {
    const free = await this.#runner.freeSlots(() => this.#reserved)
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
      // Ids are digits and tokens uuids (decodeMessage checked): safe as plain array literals.
      const p = { schema: this.#tr.schema, ids, tokens, leaseMs: this.settings.leaseMs, workerId: this.workerId }
      const rows = await claimWithRetry(this.#tr.batchExecutor, p, this.log, this.stopSignal)
      if (!rows) {
        // Postgres unreachable: give the messages back so they are not stuck until the dispatch timeout.
        await this.#pushBack(key, messages)
        return
      }
      const claimed = this.#runner.accept(rows)
      const stale = ids.length - claimed
      if (stale > 0) {
        this.events.emit('worker:stale-messages', { count: stale })
        this.log.debug({ count: stale }, 'dropped stale or duplicated messages')
      }
    } finally {
      this.#reserved -= messages.length
      this.#runner.releaseSlots()
    }
  }

  async #pushBack(key: string, messages: string[]): Promise<void> {
    try {
      // LPUSH reverses its arguments: push in reverse to keep the original order at the head.
      await this.#commands!.lpush(key, ...[...messages].reverse())
    } catch (err) {
      this.log.warn({ err, count: messages.length }, 'could not push messages back; the sweeper re-dispatches them after dispatchTimeoutMs')
    }
  }

  /**
   * Graceful stop: no new reads; claims under way end first (a retrying one
   * gives up at once), then the runner's attempts finish within
   * shutdownGraceMs or are handed back.
   */
  protected override async onStop(): Promise<void> {
    await Promise.allSettled(this.#claims)
    const abandoned = await this.#runner.stop()
    closeRedis(this.#blocking)
    closeRedis(this.#commands)
    this.#blocking = this.#commands = null
    await this.#presence.stop()
    this.log.info({ workerId: this.workerId, abandoned }, 'worker stopped')
  }
}
