import { quoteIdent } from '../db/sql.ts'
import type { Executor } from '../db/executor.ts'
import { formatDuration, renderTable } from './format.ts'

/** `taskrelay stats`: the numbers (one query) and their table. */
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

export interface StatsSnapshot {
  at: string
  queues: QueueStats[]
  totals: Omit<QueueStats, 'queue'>
  /** queues with due or dispatched tasks that no running worker serves: nothing will run them */
  unservedQueues: string[]
}

/** Rows of <schema>.workers whose owner still renews them (worker-register.sql). */
const LIVE_WORKERS = 'expires_at > now()'

/** Running workers per queue they serve; the '' entry counts every running worker once. */
async function readWorkersByQueue(db: Executor, schema: string): Promise<Map<string, number>> {
  const res = await db.query<{ queue: string | null; workers: number }>(
    `select q.queue, count(distinct w.id)::int as workers
       from ${quoteIdent(schema)}.workers w
       left join lateral unnest(w.queues) as q(queue) on true
      where ${LIVE_WORKERS}
      group by rollup (q.queue)`,
  )
  return new Map(res.rows.map((r) => [r.queue ?? '', r.workers]))
}

/** For `taskrelay status`: running workers serving `queue`, and how many of them have task `name`. */
export async function readQueueWorkers(db: Executor, schema: string, queue: string, name: string): Promise<{ serving: number; withTask: number }> {
  const res = await db.query<{ serving: number; with_task: number }>(
    `select count(*)::int as serving, count(*) filter (where $2 = any(tasks))::int as with_task
       from ${quoteIdent(schema)}.workers
      where ${LIVE_WORKERS} and $1 = any(queues)`,
    [queue, name],
  )
  return { serving: res.rows[0]?.serving ?? 0, withTask: res.rows[0]?.with_task ?? 0 }
}

/**
 * One scan of unfinished tasks plus those finished in the last hour (the
 * partial indexes cover both), grouped by queue.
 */
export async function readStats(db: Executor, schema: string): Promise<StatsSnapshot> {
  const res = await db.query<Record<string, string | number | null>>(
    `select queue,
            count(*) filter (where state = 'waiting')::int as waiting,
            count(*) filter (where state = 'pending' and run_at <= now())::int as pending,
            count(*) filter (where state = 'pending' and run_at > now())::int as scheduled,
            count(*) filter (where state = 'dispatched')::int as dispatched,
            count(*) filter (where state = 'running')::int as running,
            count(*) filter (where state = 'succeeded')::int as succeeded,
            count(*) filter (where state = 'failed')::int as failed,
            count(*) filter (where state = 'cancelled')::int as cancelled,
            count(*) filter (where state in ('succeeded', 'failed') and finished_at > now() - interval '1 minute')::int as done_1m,
            count(*) filter (where state in ('succeeded', 'failed') and finished_at > now() - interval '15 minutes')::int as done_15m,
            (extract(epoch from now() - min(run_at) filter (where state = 'pending' and run_at <= now())) * 1000)::float8 as oldest_ms
       from ${quoteIdent(schema)}.tasks
      where state in ('waiting', 'pending', 'dispatched', 'running') or finished_at > now() - interval '1 hour'
      group by queue
      order by queue`,
  )
  const workers = await readWorkersByQueue(db, schema)
  const queues: QueueStats[] = res.rows.map((r) => ({
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

export function renderStats(snap: StatsSnapshot, schema: string): string {
  type Row = Omit<QueueStats, 'queue'> & { queue: string }
  const rows: Row[] = [...snap.queues, ...(snap.queues.length > 1 ? [{ queue: 'all queues', ...snap.totals }] : [])]
  const age = (ms: number | null) => (ms === null ? '-' : formatDuration(ms))
  const table = renderTable<Row>(
    [
      { header: 'QUEUE', value: (r) => r.queue },
      { header: 'WAITING', value: (r) => r.waiting, right: true },
      { header: 'PENDING', value: (r) => r.pending, right: true },
      { header: 'SCHEDULED', value: (r) => r.scheduled, right: true },
      { header: 'DISPATCHED', value: (r) => r.dispatched, right: true },
      { header: 'RUNNING', value: (r) => r.running, right: true },
      { header: 'SUCCEEDED 1H', value: (r) => r.succeededLastHour, right: true },
      { header: 'FAILED 1H', value: (r) => r.failedLastHour, right: true },
      { header: 'CANCELLED 1H', value: (r) => r.cancelledLastHour, right: true },
      { header: 'DONE/MIN', value: (r) => r.throughputLastMinute, right: true },
      { header: 'OLDEST PENDING', value: (r) => age(r.oldestPendingMs), right: true },
      { header: 'WORKERS', value: (r) => r.workers, right: true },
    ],
    rows,
  )
  const t = snap.totals
  return [
    `taskrelay stats, schema "${schema}", ${new Date(snap.at).toLocaleTimeString()}`,
    '',
    snap.queues.length ? table : 'no unfinished tasks and nothing finished in the last hour',
    '',
    `throughput: ${t.throughputLastMinute} in the last minute, ${t.throughputPerMinute15m}/min over 15 min · ` +
      `oldest pending: ${age(t.oldestPendingMs)} · failed in the last hour: ${t.failedLastHour}`,
    ...snap.unservedQueues.map(
      (q) => `queue "${q}": no worker serves this queue; its tasks wait until a worker runs with a task on "${q}" in --tasks, or with --queues ${q}`,
    ),
  ].join('\n')
}
