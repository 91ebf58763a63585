import { taskCountByQueue, taskCountByState, workerCountByQueue } from '../db/admin-queries.ts'
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
}

export async function readStats(ctx: Pick<AdminContext, 'executor' | 'schema'>): Promise<StatsSnapshot> {
  const rows = await taskCountByQueue(ctx.executor, { schema: ctx.schema })
  const flows = new Map((await listQueues(ctx)).map((q) => [q.queue, q]))
  // The rollup row (queue null) counts every running worker once.
  const workers = new Map((await workerCountByQueue(ctx.executor, { schema: ctx.schema })).map((r) => [r.queue ?? '', r.workers]))
  const queues: Array<QueueStats & { flow: QueueFlow }> = rows.map((r) => ({
    queue: String(r.queue),
    waiting: Number(r.waiting),
    pending: Number(r.pending),
    scheduled: Number(r.scheduled),
    dispatched: Number(r.dispatched),
    running: Number(r.running),
    succeededLastHour: Number(r.succeeded),
    failedLastHour: Number(r.failed),
    cancelledLastHour: Number(r.cancelled),
    throughputLastMinute: Number(r.done_1m),
    throughputPerMinute15m: Math.round((Number(r.done_15m) / 15) * 10) / 10,
    oldestPendingMs: r.oldest_ms === null ? null : Math.round(Number(r.oldest_ms)),
    workers: workers.get(String(r.queue)) ?? 0,
    flow: queueFlow(flows.get(String(r.queue))),
  }))
  const sum = (k: keyof Omit<QueueStats, 'queue' | 'oldestPendingMs' | 'workers'>) => Math.round(queues.reduce((n, q) => n + q[k], 0) * 10) / 10
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
      oldestPendingMs: oldest.length ? Math.max(...oldest) : null,
      workers: workers.get('') ?? 0,
    },
    unservedQueues: queues.filter((q) => q.workers === 0 && q.pending + q.dispatched > 0).map((q) => q.queue),
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

/** Every task per state (all of them, finished ones too), each state present. */
export async function readStateCounts(ctx: Pick<AdminContext, 'executor' | 'schema'>): Promise<Record<TaskState, number>> {
  const counts = Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as Record<TaskState, number>
  for (const r of await taskCountByState(ctx.executor, { schema: ctx.schema })) counts[r.state] = r.n
  return counts
}
