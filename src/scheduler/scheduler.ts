import { scheduleListOfOtherTasks } from '../db/schedule-queries.ts'
import { Service, type ServiceDeps } from '../service.ts'
import type { TaskRelayContext } from '../db/context.ts'
import type { Task } from '../define-task.ts'
import { parseSettings } from '../config.ts'
import { InvalidOptionsError } from '../errors.ts'
import type { Wakeups } from '../db/poller.ts'
import { scheduleFireDue, type FireDueResult, type ScheduleFire } from './fire.ts'
import { resolveDeclaredSchedules, syncTaskSchedules } from './schedules.ts'
import { schedulerSettingsSchema, type SchedulerSettings } from '../config.ts'
import { taskMap } from './validate.ts'

export interface SchedulerOptions extends Partial<SchedulerSettings> {
  /** The tasks whose schedules this scheduler fires (and whose defineTask schedules it syncs). */
  tasks: readonly Task[]
}

export type SchedulerRunResult = FireDueResult

/** Test seams; inert unless a test sets them (never part of the public options). */
export interface SchedulerSignals {
  /** After a tick inserted its task rows, before it advances the schedules and commits. */
  beforeCommit?: (fires: readonly ScheduleFire[]) => Promise<void> | void
  /** After each committed tick. */
  tickDone?: (result: SchedulerRunResult) => void
}

export interface SchedulerDeps extends ServiceDeps {
  signals?: SchedulerSignals
}

/** Without LISTEN (db is a Kysely instance) schedule changes are looked for this often. */
const POLL_WITHOUT_LISTEN_MS = 1000
/** Nothing claimable but something due: another replica holds it; look again shortly. */
const LOCKED_RETRY_MS = 100

/**
 * Turns schedules into task rows, exactly once per (schedule, fire time), with
 * any number of replicas. Each tick claims due schedules with FOR UPDATE SKIP
 * LOCKED, inserts their tasks (idempotency key `schedule:<name>:<fire time>`)
 * and advances next_fire_at in one transaction, then sleeps until the earliest
 * next fire time (at most maxSleepMs), woken early by NOTIFY on
 * `<schema>.schedules_changed`.
 *
 * @example
 * const scheduler = new Scheduler(tr, { tasks: [dailyReport, cleanup] })
 * await scheduler.start()   // syncs defineTask schedules, then fires
 * process.on('SIGTERM', () => scheduler.stop())
 */
export class Scheduler extends Service<SchedulerRunResult> {
  readonly settings: Readonly<SchedulerSettings>
  readonly #tr: TaskRelayContext
  readonly #taskList: readonly Task[]
  readonly #tasks: ReadonlyMap<string, Task>
  readonly #clockInjected: boolean
  readonly #signals: SchedulerSignals
  #listener: Wakeups | null = null

  constructor(tr: TaskRelayContext, options: SchedulerOptions, deps: SchedulerDeps = {}) {
    super('scheduler', { logger: tr.logger, ...deps })
    const { tasks, ...settings } = options ?? ({} as SchedulerOptions)
    this.settings = parseSettings(schedulerSettingsSchema, settings, 'scheduler options', (w, p) => new InvalidOptionsError(w, p))
    if (!Array.isArray(tasks) || tasks.length === 0) {
      throw new InvalidOptionsError('scheduler options', ['tasks: required, the tasks (from defineTask) whose schedules this scheduler fires'])
    }
    this.#tasks = taskMap(tasks, 'scheduler options')
    this.#taskList = tasks
    this.#tr = tr
    this.#clockInjected = deps.clock !== undefined
    this.#signals = deps.signals ?? {}
    // Bad declarations fail here, at construction, not in a loop.
    if (this.settings.syncSchedules) resolveDeclaredSchedules(tasks, tr.maxPayloadBytes)
  }

  protected override async onStart(): Promise<void> {
    await this.#tr.assertSchemaCurrent()
    if (this.settings.syncSchedules) {
      const synced = await syncTaskSchedules(this.#tr, this.#taskList, { now: this.#now() ?? undefined })
      const changed = synced.created.length + synced.updated.length + synced.removed.length > 0
      this.log[changed ? 'info' : 'debug']({ ...synced }, 'declared schedules synced')
    }
    await this.#warnAboutForeignSchedules()
    this.#listener = this.#tr.connections.listen(
      [this.#tr.channels.schedulesChanged],
      { onNotify: () => this.wake(), onCatchUp: () => this.wake() },
      this.log,
      Math.min(this.settings.maxSleepMs, POLL_WITHOUT_LISTEN_MS),
    )
    // Without LISTEN the scheduler still works, polling every maxSleepMs;
    // runOnce() keeps trying to connect.
    await this.#listener.ready().catch((err) => this.log.warn({ err }, 'LISTEN for schedule changes failed; polling until it connects'))
    this.log.info({ tasks: [...this.#tasks.keys()], settings: this.settings }, 'scheduler started')
  }

  protected override async onStop(): Promise<void> {
    await this.#listener?.close()
    this.#listener = null
    this.log.info('scheduler stopped')
  }

  protected delayAfter(result: SchedulerRunResult): number {
    if (result.claimed >= this.settings.batchSize) return 0
    if (result.dueInMs === null) return this.settings.maxSleepMs
    if (result.dueInMs <= 0) return Math.round(LOCKED_RETRY_MS * (0.5 + Math.random()))
    return Math.min(Math.ceil(result.dueInMs), this.settings.maxSleepMs)
  }

  /** One tick: fire every due schedule of this scheduler's tasks (one transaction). */
  async runOnce(): Promise<SchedulerRunResult> {
    if (this.#listener && !this.#listener.connected) void this.#listener.ready().catch(() => {})
    const result = await this.#tr.connections.transaction((db) =>
      scheduleFireDue(db, {
        schema: this.#tr.schema,
        now: this.#now(),
        tasks: this.#tasks,
        batchSize: this.settings.batchSize,
        graceMs: this.settings.misfireGraceMs,
        maxCatchUp: this.settings.maxCatchUp,
        maxPayloadBytes: this.#tr.maxPayloadBytes,
        log: this.log,
        beforeCommit: this.#signals.beforeCommit,
      }),
    )
    const { fires, ...summary } = result
    if (result.fired > 0 || result.failed > 0 || result.skippedOverlap > 0) {
      this.log.info({ ...summary, schedules: [...new Set(fires.map((f) => f.schedule))] }, 'schedules fired')
    } else {
      this.log.debug(summary, 'scheduler tick idle')
    }
    this.#signals.tickDone?.(result)
    return result
  }

  /** The injected clock's time for SQL, or null so SQL uses the database clock. */
  #now(): Date | null {
    return this.#clockInjected ? this.clock.now() : null
  }

  /** Enabled schedules whose task this scheduler does not know never fire here: say so once. */
  async #warnAboutForeignSchedules(): Promise<void> {
    const foreign = await scheduleListOfOtherTasks(this.#tr.executor, { schema: this.#tr.schema, taskNames: [...this.#tasks.keys()] })
    if (foreign.length > 0) {
      this.log.warn(
        { schedules: foreign.map((r) => `${r.name} (task ${r.task_name})`) },
        'schedules of tasks this scheduler was not given; another scheduler that has those tasks must fire them',
      )
    }
  }
}
