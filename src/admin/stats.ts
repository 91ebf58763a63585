import { rollupCountByQueue, rollupWatermark, taskCountUnfinishedByQueue, workerCountByQueue } from '../db/admin-queries.ts'
import { TASK_STATES, type TaskState } from '../task-state.ts'
import type { AdminContext } from './context.ts'
import { listQueues, type QueueInfo, type StoredRateLimit } from './queues.ts'
import { formatDuration } from '../duration.ts'

/** Tasks per queue and state, throughput and workers: `taskrelay stats` and GET /api/stats. */
export interface QueueStats {
  queue: string
  waiting: number
  pending: number
  scheduled: number
  dispatched: number
  running: number
  succeededLastHour: number
  failedLastHour: number
  cancelledLastHour: number
  /** tasks that finished (succeeded or failed) in the last minute */
  throughputLastMinute: number
  /** average per minute over the last 15 minutes */
  throughputPerMinute15m: number
  /** rates: succeeded and failed in the last minute, and per minute over the last 15 */
  succeededLastMinute: number
  failedLastMinute: number
  succeededPerMinute15m: number
  failedPerMinute15m: number
  /** due pending tasks its queue's settings hold back now (paused, at its limit, out of rate); counted in pending too */
  heldBack: number
  /** age of the oldest pending task that is due, in ms */
  oldestPendingMs: number | null
  /** running workers serving this queue (<schema>.workers, 0010); in totals, running workers */
  workers: number
}

/** A queue's flow control in stats (queue settings, 0013). */
export interface QueueFlow {
  paused: boolean
  pausedGroups: string[]
  /** its settings in short ("limit 5, rate 100/1m, 2/group"), '' when it has none */
  settings: string
  /** why its due tasks wait, when its settings hold them: "paused", "at its limit of 5", "throttled by a handler" (null: nothing holds them) */
  heldBack: string | null
}

export interface StatsSnapshot {
  at: string
  queues: Array<QueueStats & { flow: QueueFlow }>
  totals: Omit<QueueStats, 'queue'>
  /** queues with due or dispatched tasks that no running worker serves: nothing will run them */
  unservedQueues: string[]
  /**
   * Age of the sweeper's rollup watermark (0017). Finishes since then are
   * read from the rows themselves, so a large value (no sweeper running)
   * makes stats slower, not wrong.
   */
  rollupLagMs: number
}

/**
 * Finished-task counts and rates come from the sweeper's per-minute rollups
 * (0017) and unfinished counts from the partial state indexes, so the cost
 * follows the backlog and the number of queues, never the history. "Last
 * hour", "last minute" and "15 minutes" slide with now(); a rollup minute
 * only partly inside a window counts pro rata.
 */
export async function readStats(ctx: Pick<AdminContext, 'executor' | 'schema'>): Promise<StatsSnapshot> {
  const p = { schema: ctx.schema }
  const mark = await rollupWatermark(ctx.executor, p)
  const [unfinished, finished, queueInfos, workerRows] = await Promise.all([
    taskCountUnfinishedByQueue(ctx.executor, p),
    rollupCountByQueue(ctx.executor, { ...p, watermark: mark.upto }),
    listQueues(ctx),
    workerCountByQueue(ctx.executor, p),
  ])
  const flows = new Map(queueInfos.map((q) => [q.queue, q]))
  // The rollup row (queue null) counts every running worker once.
  const workers = new Map(workerRows.map((r) => [r.queue ?? '', r.workers]))
  const open = new Map(unfinished.map((r) => [r.queue, r]))
  const done = new Map(finished.map((r) => [r.queue, r]))
  const names = [...new Set([...open.keys(), ...done.keys()])].sort()
  const tenth = (n: number) => Math.round(n * 10) / 10
  const queues: Array<QueueStats & { flow: QueueFlow }> = names.map((queue) => {
    const u = open.get(queue)
    const f = done.get(queue)
    const n = (v: number | undefined | null) => Number(v ?? 0)
    return {
      queue,
      waiting: n(u?.waiting),
      pending: n(u?.pending),
      scheduled: n(u?.scheduled),
      dispatched: n(u?.dispatched),
      running: n(u?.running),
      succeededLastHour: n(f?.succeeded),
      failedLastHour: n(f?.failed),
      cancelledLastHour: n(f?.cancelled),
      throughputLastMinute: Math.round(n(f?.succeeded_1m) + n(f?.failed_1m)),
      throughputPerMinute15m: tenth((n(f?.succeeded_15m) + n(f?.failed_15m)) / 15),
      succeededLastMinute: Math.round(n(f?.succeeded_1m)),
      failedLastMinute: Math.round(n(f?.failed_1m)),
      succeededPerMinute15m: tenth(n(f?.succeeded_15m) / 15),
      failedPerMinute15m: tenth(n(f?.failed_15m) / 15),
      heldBack: n(u?.held_back),
      oldestPendingMs: u?.oldest_ms == null ? null : Math.round(Number(u.oldest_ms)),
      workers: workers.get(queue) ?? 0,
      flow: queueFlow(flows.get(queue)),
    }
  })
  const sum = (k: keyof Omit<QueueStats, 'queue' | 'oldestPendingMs' | 'workers'>) => tenth(queues.reduce((acc, q) => acc + q[k], 0))
  const oldest = queues.map((q) => q.oldestPendingMs).filter((v): v is number => v !== null)
  return {
    at: new Date().toISOString(),
    queues,
    totals: {
      waiting: sum('waiting'),
      pending: sum('pending'),
      scheduled: sum('scheduled'),
      dispatched: sum('dispatched'),
      running: sum('running'),
      succeededLastHour: sum('succeededLastHour'),
      failedLastHour: sum('failedLastHour'),
      cancelledLastHour: sum('cancelledLastHour'),
      throughputLastMinute: sum('throughputLastMinute'),
      throughputPerMinute15m: sum('throughputPerMinute15m'),
      succeededLastMinute: sum('succeededLastMinute'),
      failedLastMinute: sum('failedLastMinute'),
      succeededPerMinute15m: sum('succeededPerMinute15m'),
      failedPerMinute15m: sum('failedPerMinute15m'),
      heldBack: sum('heldBack'),
      oldestPendingMs: oldest.length ? Math.max(...oldest) : null,
      workers: workers.get('') ?? 0,
    },
    unservedQueues: queues.filter((q) => q.workers === 0 && q.pending + q.dispatched > 0).map((q) => q.queue),
    rollupLagMs: Math.max(0, Math.round(mark.lagMs)),
  }
}

const rate = (r: StoredRateLimit | null) => (r ? `${r.limit}/${formatDuration(r.perMs)}` : null)

function queueFlow(q: QueueInfo | undefined): QueueFlow {
  if (!q) return { paused: false, pausedGroups: [], settings: '', heldBack: null }
  const settings = [
    q.concurrency !== null ? `limit ${q.concurrency}` : null,
    rate(q.rateLimit) !== null ? `rate ${rate(q.rateLimit)}` : null,
    q.groupConcurrency !== null ? `${q.groupConcurrency}/group` : null,
    rate(q.groupRateLimit) !== null ? `rate ${rate(q.groupRateLimit)}/group` : null,
  ].filter((s) => s !== null)
  let heldBack: string | null = null
  if (q.paused) heldBack = 'paused'
  else if (q.due > 0 && q.throttledUntil !== null) heldBack = 'throttled by a handler'
  else if (q.due > 0 && q.concurrency !== null && q.dispatched + q.running >= q.concurrency) heldBack = `at its limit of ${q.concurrency}`
  return { paused: q.paused, pausedGroups: q.pausedGroups, settings: settings.join(', '), heldBack }
}

/**
 * Tasks per state, each state present: unfinished ones all, finished ones of
 * the last hour. Both read as `stats` does (partial indexes, rollups), so the
 * dev progress line stays cheap however much history the table holds.
 */
export async function readStateCounts(ctx: Pick<AdminContext, 'executor' | 'schema'>): Promise<Record<TaskState, number>> {
  const p = { schema: ctx.schema }
  const mark = await rollupWatermark(ctx.executor, p)
  const [unfinished, finished] = await Promise.all([taskCountUnfinishedByQueue(ctx.executor, p), rollupCountByQueue(ctx.executor, { ...p, watermark: mark.upto })])
  const counts = Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as Record<TaskState, number>
  for (const u of unfinished) {
    counts.waiting += Number(u.waiting)
    counts.pending += Number(u.pending) + Number(u.scheduled)
    counts.dispatched += Number(u.dispatched)
    counts.running += Number(u.running)
  }
  for (const f of finished) {
    counts.succeeded += Number(f.succeeded)
    counts.failed += Number(f.failed)
    counts.cancelled += Number(f.cancelled)
  }
  return counts
}
