import type { QueueFlow, QueueStats, StatsSnapshot } from '../admin/stats.ts'
import { renderTable } from './format.ts'
import { formatDuration } from '../duration.ts'

/** `taskrelay stats`: the snapshot (src/admin/stats.ts) as a table, in the terminal's words. */
export function renderStats(snap: StatsSnapshot, schema: string): string {
  type Row = Omit<QueueStats, 'queue'> & { queue: string; flow?: QueueFlow }
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
      { header: 'HELD BACK', value: (r) => r.heldBack, right: true },
      { header: 'SUCCEEDED 1H', value: (r) => r.succeededLastHour, right: true },
      { header: 'FAILED 1H', value: (r) => r.failedLastHour, right: true },
      { header: 'CANCELLED 1H', value: (r) => r.cancelledLastHour, right: true },
      { header: 'OK/MIN', value: (r) => r.succeededLastMinute, right: true },
      { header: 'FAILED/MIN', value: (r) => r.failedLastMinute, right: true },
      { header: 'OLDEST PENDING', value: (r) => age(r.oldestPendingMs), right: true },
      { header: 'WORKERS', value: (r) => r.workers, right: true },
      { header: 'FLOW', value: (r) => flowText(r.flow), max: 60 },
    ],
    rows,
  )
  const t = snap.totals
  return [
    `taskrelay stats, schema "${schema}", ${new Date(snap.at).toLocaleTimeString()}`,
    '',
    snap.queues.length ? table : 'no unfinished tasks and nothing finished in the last hour',
    '',
    `throughput: ${t.throughputLastMinute} in the last minute, ${t.throughputPerMinute15m}/min over 15 min ` +
      `(succeeded ${t.succeededLastMinute}, ${t.succeededPerMinute15m}/min; failed ${t.failedLastMinute}, ${t.failedPerMinute15m}/min) · ` +
      `oldest pending: ${age(t.oldestPendingMs)} · failed in the last hour: ${t.failedLastHour}`,
    // Finishes since the rollups' watermark are counted row by row: right, but slower the further behind.
    ...(snap.rollupLagMs > 5 * 60_000 ? [`rollups are ${formatDuration(snap.rollupLagMs)} behind: is a sweeper running? (stats count the newer finishes row by row)`] : []),
    ...snap.unservedQueues.map(
      (q) => `queue "${q}": no worker serves this queue; its tasks wait until a worker runs with a task on "${q}" in --tasks, or with --queues ${q}`,
    ),
  ].join('\n')
}

/** "paused", "limit 5 (at its limit of 5)", "rate 100/1m", or '-'. */
function flowText(f: QueueFlow | undefined): string {
  if (!f) return ''
  const parts = [f.settings, f.pausedGroups.length ? `paused groups: ${f.pausedGroups.join(', ')}` : ''].filter((s) => s !== '')
  const text = parts.join('; ') || '-'
  return f.heldBack === null ? text : `${f.heldBack === 'paused' ? 'PAUSED' : f.heldBack}${text !== '-' ? ` (${text})` : ''}`
}
