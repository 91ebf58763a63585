import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { Service, type ServiceDeps } from '../service.ts'
import type { TaskRelayContext } from '../db/context.ts'
import { tasksByName, type Task } from '../define-task.ts'
import { parseSettings, workerSettingsSchema, type WorkerSettings } from '../config.ts'
import { InvalidOptionsError } from '../errors.ts'
import type { RedisConfig } from '../redis/connection.ts'
import { redisKeys } from '../redis/keys.ts'
import { AttemptRunner } from './attempt-runner.ts'
import { LeaseGuard } from './lease-guard.ts'
import { registerTaskTypes } from './hand-back.ts'
import { declaredQueueSettings, type QueueSettingsRow } from '../queue-settings.ts'
import { queuesSyncCode } from '../db/queue-queries.ts'
import { WorkerPresence } from './presence.ts'
import { PostgresLane } from './postgres-lane.ts'
import { PausedQueues } from './paused-queues.ts'
import { RedisLane } from './redis-lane.ts'
import { checkMiddleware, withMiddleware, type TaskMiddleware } from './middleware.ts'
import { consumerSpan } from '../otel/consumer.ts'
import { tracingEnabled } from '../otel/tracer.ts'

/** The lane a worker takes tasks from at the moment (WorkerSettings.lane chooses which it may use). */
export type ActiveLane = 'redis' | 'postgres'

export interface WorkerOptions extends Partial<WorkerSettings> {
  /** Required unless `lane` is "postgres". */
  redis?: RedisConfig
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
  /**
   * Middleware around every attempt, first outermost (see TaskMiddleware);
   * more can be added with worker.use() before start().
   */
  middleware?: TaskMiddleware[]
}


/** The queues `tasks` use, in first-seen order: what a worker serves unless told otherwise. */
export function taskQueues(tasks: readonly Task<any, any>[]): string[] {
  return [...new Set(tasks.map((t) => t.policy.queue))]
}

/**
 * Takes tasks from its lanes (RedisLane: messages popped from Redis and
 * claimed in Postgres; PostgresLane: due rows claimed straight from Postgres
 * while Redis is unreachable, or always with lane "postgres"), runs the
 * handlers (at most `concurrency` at once), and records outcomes through the
 * group-commit Completer (AttemptRunner). Leases of all in-flight attempts
 * are renewed by one UPDATE; the worker's own row (WorkerPresence) says it
 * is alive. Whatever the lane, a claim is the same fenced UPDATE, so a task
 * runs at most once at a time.
 */
export class Worker extends Service<number> {
  readonly settings: Readonly<WorkerSettings>
  readonly workerId: string
  readonly #tr: TaskRelayContext
  readonly #tasks: ReadonlyMap<string, Task>
  /** what the runner runs: #tasks, wrapped in the middleware at start() */
  readonly #runTasks: Map<string, Task>
  readonly #middleware: TaskMiddleware[]
  /** queue settings the tasks declare (defineTask's queueSettings), synced at start */
  readonly #declaredQueues: Map<string, QueueSettingsRow>
  /** null with lane "postgres" */
  readonly #redisLane: RedisLane | null
  readonly #runner: AttemptRunner
  /** which of its queues are paused now: claimed tasks of those are handed back, not started */
  readonly #paused: PausedQueues
  readonly #presence: WorkerPresence
  /** null with lane "redis" */
  readonly #postgresLane: PostgresLane | null
  /** where the last fetch took tasks from (null: none yet) */
  #lane: ActiveLane | null = null
  /** a claim from Postgres made on an enqueue's NOTIFY while idle (#claimWhileIdle) */
  #idleClaim: Promise<void> | null = null

  constructor(tr: TaskRelayContext, options: WorkerOptions, deps: ServiceDeps = {}) {
    super('worker', { logger: tr.logger, ...deps })
    const { redis, tasks, keyPrefix, workerId, middleware, ...settings } = options
    const problems: string[] = []
    if (!redis && settings.lane !== 'postgres') problems.push('redis: required (a redis:// URL or sentinel settings), unless lane is "postgres"')
    if (!Array.isArray(tasks) || tasks.length === 0) problems.push('tasks: give at least one task from defineTask()')
    if (problems.length) throw new InvalidOptionsError('worker options', problems)
    // A task on queue "emails" must not sit unclaimed because the worker listens on "default".
    const queues = settings.queues ?? taskQueues(tasks)
    this.settings = parseSettings(workerSettingsSchema, { ...settings, queues }, 'worker options', (w, p) => new InvalidOptionsError(w, p))
    const { byName, conflicts } = tasksByName(tasks)
    if (conflicts.length > 0) throw new InvalidOptionsError('worker options', [`tasks: two different tasks are named "${conflicts[0]!.name}"`])
    this.#tasks = byName
    this.#runTasks = new Map(byName)
    this.#middleware = checkMiddleware('worker options', middleware)
    // Two tasks of one queue declaring different settings: refused here, before anything starts.
    this.#declaredQueues = declaredQueueSettings([...byName.values()])
    this.#tr = tr
    this.workerId = `${workerId ?? `${hostname()}:${process.pid}`}:${randomBytes(3).toString('hex')}`
    // Only tasks it will run: a task on a queue it does not serve is not served by it.
    const served = [...byName.values()].filter((t) => this.settings.queues.includes(t.policy.queue)).map((t) => t.name)
    const row = { schema: tr.schema, workerId: this.workerId, queues: [...this.settings.queues], tasks: served }
    const { presenceMs: everyMs, lostAfterMs: ttlMs } = this.settings
    const onSilent = () => this.#runner.abortAll()
    // Silent, the loop claims nothing; a renewal that lands wakes it (delayAfter).
    const onHeard = () => this.wake()
    this.#presence = new WorkerPresence(tr.executor, row, { everyMs, ttlMs, onSilent, onHeard, renewedElsewhereAt: () => this.#runner.renewedElsewhereAt() }, this.log)
    const laneOptions = { queues: this.settings.queues, workerId: this.workerId, leaseMs: this.settings.leaseMs, log: this.log }
    this.#postgresLane = this.settings.lane === 'redis' ? null : new PostgresLane(tr, laneOptions)
    if (this.#postgresLane && this.settings.lane === 'auto') this.#postgresLane.onEnqueued = () => this.#claimWhileIdle()
    this.#redisLane =
      this.settings.lane === 'postgres'
        ? null
        : new RedisLane(tr, {
            ...laneOptions,
            redis: redis!,
            keys: redisKeys(keyPrefix ?? 'taskrelay'),
            blockMs: this.settings.blockMs,
            events: this.events,
            accept: (rows) => this.#runner.accept(rows),
            released: () => this.#runner.releaseSlots(),
            onReady: () => this.#postgresLane?.wake(), // back from the Postgres lane at once
          })
    this.#runner = new AttemptRunner({
      settings: this.settings,
      workerId: this.workerId,
      tasks: this.#runTasks,
      schema: tr.schema,
      batchDb: tr.batchExecutor,
      transitionDb: tr.transitionExecutor,
      guardConnection: LeaseGuard.connectionOf(tr.pool),
      log: this.log,
      events: this.events,
      stopSignal: () => this.stopSignal,
      paused: (queue, group) => this.#paused.holds(queue, group),
    })
    this.#paused = new PausedQueues(tr.executor, tr.schema, this.settings.queues, this.log)
  }

  /** Handlers running now. */
  get activeCount(): number {
    return this.#runner.activeCount
  }

  /** Add a middleware around every attempt (after those already added: further in). Before start() only. */
  use(middleware: TaskMiddleware): this {
    if (this.running) throw new InvalidOptionsError('worker.use()', ['the worker is running: add middleware before start()'])
    this.#middleware.push(...checkMiddleware('worker.use()', [middleware]))
    return this
  }

  /** Handlers still running after their attempt ended, ignoring ctx.signal (see AttemptRunner.stuckCount). */
  get stuckCount(): number {
    return this.#runner.stuckCount
  }

  protected override async onStart(): Promise<void> {
    await this.#tr.assertSchemaCurrent()
    await registerTaskTypes(this.#tr.executor, this.#tr.schema, [...this.#tasks.values()])
    const kept = await queuesSyncCode(this.#tr.executor, { schema: this.#tr.schema, declared: this.#declaredQueues })
    if (kept.length > 0) this.log.info({ queues: kept }, 'these queues keep the settings changed at run time; the queueSettings declared in code do not apply to them')
    await this.#presence.start()
    await this.#paused.start()
    await this.#redisLane?.open()
    await this.#postgresLane?.open()
    this.#wrapTasks()
    this.#runner.start()
    this.log.info(
      { workerId: this.workerId, lane: this.settings.lane, queues: this.settings.queues, concurrency: this.settings.concurrency, tasks: [...this.#tasks.keys()] },
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

  /**
   * The chain each attempt runs in, fixed at start: the consumer span first
   * when a tracer provider is registered (register the SDK before starting
   * workers), then the middleware. Neither: the tasks as they are, no cost.
   */
  #wrapTasks(): void {
    const chain = tracingEnabled() ? [consumerSpan, ...this.#middleware] : this.#middleware
    for (const [name, task] of withMiddleware(this.#tasks, chain)) this.#runTasks.set(name, task)
  }

  protected delayAfter(): number {
    // The blocking read, or the Postgres lane's wait for a NOTIFY, is the wait; while silent, until a renewal wakes it.
    return this.#presence.silent ? this.settings.presenceMs : 0
  }

  /** Where tasks come from now, and why the worker is degraded (null: not). */
  get lane(): { active: ActiveLane | null; degraded: string | null } {
    const degraded = this.#lane === 'postgres' && this.settings.lane === 'auto' ? 'redis unreachable: taking tasks from Postgres (the Postgres lane)' : null
    return { active: this.#lane, degraded }
  }

  /** Take up to the free slots' worth of tasks from the lane in use and start their handlers. */
  async runOnce(): Promise<number> {
    if (this.#presence.silent) return 0 // taken for lost: claim nothing until the presence row is renewed (delayAfter)
    const free = await this.#runner.freeSlots(() => this.#redisLane?.reserved ?? 0)
    if (free === 0 || this.stopSignal.aborted) return 0
    const useRedis = this.settings.lane === 'redis' || (this.settings.lane === 'auto' && this.#redisLane!.ready)
    this.#switchTo(useRedis ? 'redis' : 'postgres')
    if (useRedis) return this.#redisLane!.fetch(free, this.stopSignal)
    const lane = this.#postgresLane!
    const rows = await lane.claim(free, this.#runner.heldIds())
    if (rows.length > 0) return this.#runner.accept(rows)
    await lane.wakeForNextDelayed()
    await lane.waitForWork(this.stopSignal)
    return 0
  }

  /**
   * An enqueue's NOTIFY while this worker runs nothing: claim straight from
   * Postgres (two commits in series, enqueue and claim) instead of waiting
   * for the relay's dispatch and Redis (three). The relay hears the same
   * NOTIFY; SKIP LOCKED gives each row to one of them, and a message the
   * relay pushes for a row claimed here is dropped as stale. Under load no
   * worker is idle and enqueues stop notifying: Redis carries the load.
   */
  #claimWhileIdle(): void {
    if (this.#lane !== 'redis' || this.#idleClaim || this.#presence.silent || this.#runner.activeCount > 0 || !this.running || this.stopSignal.aborted) return
    const lane = this.#postgresLane!
    this.#idleClaim = lane
      .claim(this.settings.concurrency, this.#runner.heldIds(), false)
      .then((rows) => void (rows.length > 0 && this.#runner.accept(rows)))
      .catch((err: unknown) => this.log.debug({ err }, 'claim from postgres while idle failed; the redis lane carries on'))
      .finally(() => (this.#idleClaim = null))
  }

  /** Say when the lane changes: one line and one event. */
  #switchTo(lane: ActiveLane): void {
    if (lane === this.#lane) return
    const previous = this.#lane
    this.#lane = lane
    const reason = this.settings.lane !== 'auto' ? 'configured' : lane === 'postgres' ? 'redis-unreachable' : 'redis-back'
    this.events.emit('worker:lane', { workerId: this.workerId, lane, reason })
    if (this.settings.lane !== 'auto') return
    if (lane === 'postgres') this.log.warn('redis is unreachable: taking tasks straight from Postgres (the Postgres lane) until it is back')
    else if (previous === 'postgres') this.log.info('redis is back: taking tasks from redis again')
  }

  /**
   * Graceful stop: no new reads; claims under way end first (a retrying one
   * gives up at once), then the runner's attempts finish within
   * shutdownGraceMs or are handed back.
   */
  protected override async onStop(): Promise<void> {
    await this.#redisLane?.settle()
    await this.#idleClaim
    const abandoned = await this.#runner.stop()
    this.#redisLane?.close()
    await this.#postgresLane?.close()
    this.#lane = null
    await this.#presence.stop()
    this.#paused.stop()
    this.log.info({ workerId: this.workerId, abandoned }, 'worker stopped')
  }
}
