import { Service, type ServiceDeps } from '../service.ts'
import type { TaskRelayContext } from '../db/context.ts'
import { parseSettings, sweeperSettingsSchema, type SweeperSettings } from '../config.ts'
import { InvalidOptionsError } from '../errors.ts'
import { loadSql } from '../db/sql.ts'
import { WorkflowSettler } from './workflow-settler.ts'
import { RollupWriter } from './rollup-writer.ts'

export type SweeperOptions = Partial<SweeperSettings>

export interface SweepResult {
  /** dispatched but never claimed: back to pending */
  redispatched: number
  /** lease expired: retried or failed */
  leasesReclaimed: number
  leasesFailed: number
  pruned: number
  /** waiting tasks (dependsOn) cancelled because a dependency failed or was cancelled */
  dependentsCancelled: number
  /** waiting tasks made pending: all their dependencies had succeeded */
  dependentsReleased: number
  /** workflows whose failed step got its compensations and error callback enqueued */
  workflowsFailed: number
  /** workflows closed: nothing of them left to run */
  workflowsFinished: number
  /** finished tasks added to the per-minute rollups (0017) */
  rolledUp: number
}

const BATCH = 1000

/**
 * Repairs what crashes and broker failures leave behind, on an interval.
 * Every pass is one conditional statement with SKIP LOCKED, so any number of
 * sweepers can run side by side and none decides anything a fenced UPDATE
 * would not also allow.
 */
export class Sweeper extends Service<SweepResult> {
  readonly settings: Readonly<SweeperSettings>
  readonly #tr: TaskRelayContext
  /** settle-waiting pass: the last waiting task id looked at ('0': start over) */
  #waitingCursor = '0'
  readonly #workflows: WorkflowSettler
  readonly #rollups: RollupWriter
  /** the rollups are more than a chunk behind (after downtime): go again soon */
  #rollupsBehind = false

  constructor(tr: TaskRelayContext, options: SweeperOptions = {}, deps: ServiceDeps = {}) {
    super('sweeper', { logger: tr.logger, ...deps })
    this.settings = parseSettings(sweeperSettingsSchema, options, 'sweeper options', (w, p) => new InvalidOptionsError(w, p))
    this.#tr = tr
    this.#workflows = new WorkflowSettler(tr)
    this.#rollups = new RollupWriter(tr)
  }

  protected override async onStart(): Promise<void> {
    await this.#tr.assertSchemaCurrent()
    this.log.info({ settings: this.settings }, 'sweeper started')
  }

  protected delayAfter(result: SweepResult): number {
    // A full batch means more is waiting: go again soon, not after a whole interval.
    const busy = result.redispatched >= BATCH || result.leasesReclaimed + result.leasesFailed >= BATCH
    return busy || this.#rollupsBehind ? 10 : this.settings.intervalMs
  }

  async runOnce(): Promise<SweepResult> {
    const db = this.#tr.executor
    const schema = this.#tr.schema
    const stale = await db.query<{ count: number }>(loadSql('sweeper-redispatch-stale.sql', schema), [this.settings.dispatchTimeoutMs, BATCH])
    const leases = await db.query<{ retried: number; failed: number }>(loadSql('sweeper-reclaim-lost.sql', schema), [
      BATCH,
      this.settings.lostWorkerRetryDelayMs,
    ])
    const waiting = await this.#settleWaiting()
    const workflows = await this.#workflows.settle()
    let pruned = 0
    for (;;) {
      const res = await db.query(loadSql('sweeper-prune-finished.sql', schema), [this.settings.retentionMs, this.settings.pruneBatchSize])
      pruned += res.rowCount
      if (res.rowCount < this.settings.pruneBatchSize || this.stopSignal.aborted) break
    }
    // After the finished tasks' own pruning: a minute is dropped with its tasks' retention.
    const rollup = await this.#rollups.write()
    this.#rollupsBehind = rollup.behind
    await this.#rollups.prune(this.settings.retentionMs)
    const result: SweepResult = {
      redispatched: stale.rows[0]?.count ?? 0,
      leasesReclaimed: leases.rows[0]?.retried ?? 0,
      leasesFailed: leases.rows[0]?.failed ?? 0,
      pruned,
      dependentsCancelled: waiting.cancelled,
      dependentsReleased: waiting.promoted,
      workflowsFailed: workflows.failuresHandled,
      workflowsFinished: workflows.finished,
      rolledUp: rollup.tasks,
    }
    // Rolling up is routine: it alone does not lift the log line to info.
    const acted = Object.entries(result).some(([k, n]) => k !== 'rolledUp' && n > 0)
    if (acted) this.log.info(result, 'sweep done')
    else this.log.debug(result, 'sweep done')
    this.events.emit('sweeper:run', { redispatched: result.redispatched, leasesReclaimed: result.leasesReclaimed + result.leasesFailed, pruned })
    return result
  }

  /**
   * Settle waiting tasks (sweeper-settle-waiting.sql). A cancel cascades one
   * level per pass, so passes repeat while they cancel something (a chain of
   * dependents settles in one run), up to a bound.
   */
  async #settleWaiting(): Promise<{ cancelled: number; promoted: number }> {
    const total = { cancelled: 0, promoted: 0 }
    for (let pass = 0; pass < 20 && !this.stopSignal.aborted; pass++) {
      // On the batch pool: made on a small table, its generic plan would
      // seq-scan tasks for each id it updates (TaskRelay.batchExecutor).
      const res = await this.#tr.batchExecutor.query<{ scanned: number; last_id: string | null; cancelled: number; promoted: number }>(
        loadSql('sweeper-settle-waiting.sql', this.#tr.schema),
        [this.#waitingCursor, BATCH],
      )
      const r = res.rows[0]!
      total.cancelled += r.cancelled
      total.promoted += r.promoted
      // A short batch reached the end: start from the lowest id next time.
      this.#waitingCursor = r.scanned < BATCH || r.last_id === null ? '0' : r.last_id
      if (r.cancelled === 0 && this.#waitingCursor === '0') break
    }
    return total
  }
}
