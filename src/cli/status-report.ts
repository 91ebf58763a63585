import type { QueueWorkers, TaskDetail } from '../admin/task-detail.ts'
import type { AttemptRecord, TaskRecord } from '../task-record.ts'
import { formatDuration } from '../duration.ts'
import { formatAge, truncate } from './format.ts'

/** `taskrelay status <id>`: the task, its attempts, and what it waits for. */
export function renderStatus(detail: TaskDetail, workers: QueueWorkers): string {
  const { task: t, dependsOn } = detail
  const now = Date.now()
  const at = (d: Date | null) => (d ? `${d.toISOString()} (${formatAge(d, now)})` : '-')
  const lines: Array<[string, string]> = [
    ['state', t.state],
    ['queue', `${t.queue} (priority ${t.priority})${detail.groupKey !== null ? `, group ${detail.groupKey}` : ''}`],
    ['attempt', `${t.attempt} of ${t.maxAttempts}`],
    ['created', at(t.createdAt)],
    ['run at', at(t.runAt)],
  ]
  if (t.startedAt) lines.push(['started', at(t.startedAt)])
  if (t.finishedAt) lines.push(['finished', `${at(t.finishedAt)}${t.startedAt ? `, ran ${formatDuration(t.finishedAt.getTime() - t.startedAt.getTime())}` : ''}`])
  if (t.state === 'running' && t.leaseExpiresAt) lines.push(['lease until', at(t.leaseExpiresAt)])
  if (t.workerId) lines.push(['worker', t.workerId])
  if (t.idempotencyKey) lines.push(['idempotency key', t.idempotencyKey])
  if (t.lastError) lines.push(['last error', `${t.lastError.name ? t.lastError.name + ': ' : ''}${t.lastError.message} (attempt ${t.lastError.attempt}${t.lastError.kind ? `, ${t.lastError.kind}` : ''})`])
  if (t.progress) lines.push(['progress', `${t.progress.value}%${t.progress.info !== null ? ` ${truncate(JSON.stringify(t.progress.info), 200)}` : ''} (${formatAge(new Date(t.progress.at), now)})`])
  if (t.result !== null) lines.push(['result', truncate(JSON.stringify(t.result), 500)])
  lines.push(['payload', truncate(JSON.stringify(t.payload), 500)])
  if (dependsOn.length > 0) lines.push(['depends on', dependsOn.map((d) => `${d.id} ${d.name} (${d.state})`).join(', ')])
  // A due task held back by its queue's settings: say which, instead of the generic "waiting for a relay".
  const flowHeld = detail.heldBack !== null && !detail.heldBack.startsWith('delayed') ? detail.heldBack : null
  if (flowHeld) lines.push(['waiting', flowHeld])
  const hints = [flowHeld ? null : stateHint(t, now, workers), workerHint(t, now, workers)].filter((h) => h !== null)
  const width = Math.max(...lines.map(([k]) => k.length))
  const attempts = detail.attempts.length ? ['', 'attempts', ...renderAttempts(detail.attempts)] : []
  return [`task ${t.id}  ${t.name}`, ...lines.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`), ...attempts, ...(hints.length ? ['', ...hints] : [])].join('\n')
}

/** One line per attempt: number, outcome, when, how long, on which worker, and its error. */
function renderAttempts(attempts: readonly AttemptRecord[]): string[] {
  const rows = attempts.map((a) => [
    `#${a.attempt}`,
    a.outcome,
    a.startedAt ? a.startedAt.toISOString() : '-',
    a.durationMs !== null ? formatDuration(Math.round(a.durationMs)) : a.outcome === 'running' ? 'running' : '-',
    a.workerId ?? '-',
    a.error ? truncate(`${a.error.name ? a.error.name + ': ' : ''}${a.error.message}`, 160) : '',
  ])
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => '  ' + r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd())
}

/** For a task that is due or in Redis: is any running worker going to take it? */
function workerHint(t: TaskRecord, now: number, w: QueueWorkers): string | null {
  const due = t.state === 'dispatched' || (t.state === 'pending' && t.runAt.getTime() <= now)
  if (!due) return null
  if (w.serving === 0) {
    return (
      `no worker serves queue "${t.queue}": nothing will run this task until a worker runs with "${t.name}" in its --tasks ` +
      `(a worker serves its tasks' queues) or with --queues ${t.queue}`
    )
  }
  if (w.withTask === 0) return `${w.serving} running worker(s) serve queue "${t.queue}", but none has task "${t.name}": each hands it back until one with that task starts`
  return null
}

function stateHint(t: TaskRecord, now: number, w: QueueWorkers): string | null {
  switch (t.state) {
    case 'pending':
      return t.runAt.getTime() > now ? `runs ${formatAge(t.runAt, now)}; cancel it with \`taskrelay cancel ${t.id}\`` : 'due: waiting for a relay to hand it to Redis or a worker to claim it from Postgres (is a worker of its queue running?)'
    case 'waiting':
      return 'waits until every task it depends on has succeeded (cancelled if one fails or is cancelled)'
    case 'dispatched':
      return w.withTask > 0 ? `in Redis, waiting for one of the ${w.withTask} running worker(s) with this task on queue "${t.queue}"` : `in Redis, on queue "${t.queue}"`
    case 'failed':
      return `run it again with \`taskrelay retry ${t.id}\``
    case 'cancelled':
      return `run it anyway with \`taskrelay retry ${t.id}\``
    default:
      return null
  }
}
