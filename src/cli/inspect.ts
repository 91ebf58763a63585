import type { Command } from 'commander'
import { quoteIdent } from '../db/sql.ts'
import { TASK_STATES, type TaskState } from '../task-state.ts'
import type { TaskRecord } from '../task-record.ts'
import type { Executor } from '../db/executor.ts'
import { CliError, EXIT } from './errors.ts'
import { formatAge, formatDuration, parseDuration, renderTable, toJson, truncate } from './format.ts'
import { addSettingOptions } from './settings.ts'
import { ONE_SHOT, parseTaskId, waitForSignal, withDatabase } from './runtime.ts'
import { createCliLogger } from './runtime.ts'

const examples = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`

export function registerInspectCommands(program: Command): void {
  const status = program
    .command('status')
    .summary('show one task: state, attempts, timings, error, result')
    .argument('<id>', 'task id')
    .option('--json', 'print the task as JSON')
    .addHelpText('after', examples(['taskrelay status 42', 'taskrelay status 42 --json | jq .lastError']))
  addSettingOptions(status, ONE_SHOT)
  status.action((id: string, flags: Record<string, unknown>) =>
    withDatabase(ONE_SHOT, flags, 'status', async (db, s) => {
      const taskId = parseTaskId(id)
      const task = await db.tr.getTask(taskId)
      if (!task) throw notFound(taskId, s.process.schema)
      console.log(flags.json ? toJson(task) : renderStatus(task))
    }),
  )

  const stats = program
    .command('stats')
    .summary('queue depth per state, throughput, oldest pending task, recent failures')
    .description(
      'Tasks per queue and state. Unfinished states count every task; succeeded, failed and cancelled count the last hour. ' +
        '"pending" counts tasks due now, "scheduled" pending tasks whose run_at is in the future.',
    )
    .option('--json', 'print JSON (with --watch: one JSON object per line)')
    .option('--watch', 'refresh until Ctrl-C (in place on a terminal)')
    .option('--interval <duration>', 'with --watch: time between refreshes', '2s')
    .addHelpText('after', examples(['taskrelay stats', 'taskrelay stats --watch --interval 1s', 'taskrelay stats --json | jq .totals.failedLastHour']))
  addSettingOptions(stats, ONE_SHOT)
  stats.action((flags: Record<string, unknown>) =>
    withDatabase(ONE_SHOT, flags, 'stats', async (db, s) => {
      const intervalMs = parseDuration(String(flags.interval))
      if (intervalMs === null || intervalMs < 100) throw new CliError(`--interval: expected a duration of at least 100ms such as 2s, got "${flags.interval}".`, EXIT.usage)
      const render = (snap: StatsSnapshot) => (flags.json ? JSON.stringify(snap, null, flags.watch ? 0 : 2) : renderStats(snap, s.process.schema))
      if (!flags.watch) {
        console.log(render(await readStats(db.tr.executor, s.process.schema)))
        return
      }
      const tty = process.stdout.isTTY === true && !flags.json
      let stopped = false
      void waitForSignal(createCliLogger({ logLevel: 'silent', logFormat: 'json' }), async () => {
        stopped = true
        await db.close()
      })
      if (tty) process.stdout.write('\x1b[2J')
      while (!stopped) {
        const text = render(await readStats(db.tr.executor, s.process.schema))
        if (tty) process.stdout.write(`\x1b[H${text}\n\n(every ${formatDuration(intervalMs)}; Ctrl-C to stop)\x1b[J`)
        else process.stdout.write(text + (flags.json ? '\n' : '\n\n'))
        await new Promise((r) => setTimeout(r, intervalMs))
      }
    }),
  )

  const list = program
    .command('list')
    .summary('list tasks, newest first, with filters and paging')
    .option('--state <states>', `comma-separated states: ${TASK_STATES.join(', ')}`)
    .option('--task <name>', 'task name; * matches anything (email.*)')
    .option('--queue <queue>', 'queue name')
    .option('--since <age>', 'created within this long ago (30m, 1h, 7d)')
    .option('--older-than <age>', 'created more than this long ago')
    .option('--limit <n>', 'rows per page (1-1000)', '50')
    .option('--offset <n>', 'skip this many rows (simple paging)')
    .option('--after <id>', 'rows older than task <id> (cursor paging: pass the id printed at the end of a page)')
    .option('--json', 'print JSON: { tasks, nextAfter }')
    .addHelpText(
      'after',
      examples([
        'taskrelay list --state failed --since 1h',
        "taskrelay list --task 'email.*' --queue emails --limit 20",
        'taskrelay list --state pending,dispatched --older-than 10m     # stuck?',
        'taskrelay list --state failed --after 1200                     # next page',
      ]),
    )
  addSettingOptions(list, ONE_SHOT)
  list.action((flags: Record<string, unknown>) =>
    withDatabase(ONE_SHOT, flags, 'list', async (db, s) => {
      const page = await listTasks(db.tr.executor, s.process.schema, parseListFilters(flags))
      if (flags.json) {
        console.log(toJson(page))
        return
      }
      if (page.tasks.length === 0) {
        console.log('no tasks match')
        return
      }
      console.log(renderList(page.tasks))
      if (page.nextAfter) console.log(`\nmore: repeat with --after ${page.nextAfter}`)
    }),
  )
}

export function notFound(id: string, schema: string): CliError {
  return new CliError(
    `task ${id} does not exist in schema "${schema}". Finished tasks are deleted after the sweeper's retention period ` +
      '(TASKRELAY_SWEEPER_RETENTION_MS, default 7 days); check the id and the schema (TASKRELAY_SCHEMA), or find tasks with `taskrelay list`.',
  )
}

function renderStatus(t: TaskRecord): string {
  const now = Date.now()
  const at = (d: Date | null) => (d ? `${d.toISOString()} (${formatAge(d, now)})` : '-')
  const lines: Array<[string, string]> = [
    ['state', t.state],
    ['queue', `${t.queue} (priority ${t.priority})`],
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
  if (t.result !== null) lines.push(['result', truncate(JSON.stringify(t.result), 500)])
  lines.push(['payload', truncate(JSON.stringify(t.payload), 500)])
  const hint = stateHint(t, now)
  const width = Math.max(...lines.map(([k]) => k.length))
  return [`task ${t.id}  ${t.name}`, ...lines.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`), ...(hint ? ['', hint] : [])].join('\n')
}

function stateHint(t: TaskRecord, now: number): string | null {
  switch (t.state) {
    case 'pending':
      return t.runAt.getTime() > now ? `runs ${formatAge(t.runAt, now)}; cancel it with \`taskrelay cancel ${t.id}\`` : 'due: waiting for a relay to hand it to Redis (is `taskrelay relay` running?)'
    case 'dispatched':
      return `in Redis, waiting for a worker on queue "${t.queue}" (is a worker running with --queues ${t.queue}?)`
    case 'failed':
      return `run it again with \`taskrelay retry ${t.id}\``
    case 'cancelled':
      return `run it anyway with \`taskrelay retry ${t.id}\``
    default:
      return null
  }
}

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
}

export interface StatsSnapshot {
  at: string
  queues: QueueStats[]
  totals: Omit<QueueStats, 'queue'>
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
  }))
  const sum = (k: keyof Omit<QueueStats, 'queue' | 'oldestPendingMs'>) => Math.round(queues.reduce((n, q) => n + q[k], 0) * 10) / 10
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
    },
  }
}

function renderStats(snap: StatsSnapshot, schema: string): string {
  type Row = Omit<QueueStats, 'queue'> & { queue: string }
  const rows: Row[] = [...snap.queues, ...(snap.queues.length > 1 ? [{ queue: 'all queues', ...snap.totals }] : [])]
  const age = (ms: number | null) => (ms === null ? '-' : formatDuration(ms))
  const table = renderTable<Row>(
    [
      { header: 'QUEUE', value: (r) => r.queue },
      { header: 'PENDING', value: (r) => r.pending, right: true },
      { header: 'SCHEDULED', value: (r) => r.scheduled, right: true },
      { header: 'DISPATCHED', value: (r) => r.dispatched, right: true },
      { header: 'RUNNING', value: (r) => r.running, right: true },
      { header: 'SUCCEEDED 1H', value: (r) => r.succeededLastHour, right: true },
      { header: 'FAILED 1H', value: (r) => r.failedLastHour, right: true },
      { header: 'CANCELLED 1H', value: (r) => r.cancelledLastHour, right: true },
      { header: 'DONE/MIN', value: (r) => r.throughputLastMinute, right: true },
      { header: 'OLDEST PENDING', value: (r) => age(r.oldestPendingMs), right: true },
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
  ].join('\n')
}

export interface ListFilters {
  states: TaskState[] | null
  task: string | null
  queue: string | null
  sinceMs: number | null
  olderThanMs: number | null
  limit: number
  offset: number
  after: string | null
}

function parseListFilters(flags: Record<string, unknown>): ListFilters {
  const problems: string[] = []
  const str = (k: string) => (typeof flags[k] === 'string' ? (flags[k] as string) : null)
  const age = (k: string, flag: string) => {
    const v = str(k)
    if (v === null) return null
    const ms = parseDuration(v)
    if (ms === null) problems.push(`${flag}: expected an age such as 30m, 1h or 7d, got "${v}"`)
    return ms
  }
  const int = (k: string, flag: string, min: number, max: number) => {
    const v = str(k)
    if (v === null) return null
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) problems.push(`${flag}: expected a whole number from ${min} to ${max}, got "${v}"`)
    return Number(v)
  }
  let states: TaskState[] | null = null
  if (str('state') !== null) {
    states = str('state')!.split(',').map((x) => x.trim()).filter(Boolean) as TaskState[]
    const bad = states.filter((x) => !TASK_STATES.includes(x))
    if (bad.length) problems.push(`--state: unknown state ${bad.map((b) => `"${b}"`).join(', ')}; use ${TASK_STATES.join(', ')}`)
  }
  const filters: ListFilters = {
    states,
    task: str('task'),
    queue: str('queue'),
    sinceMs: age('since', '--since'),
    olderThanMs: age('olderThan', '--older-than'),
    limit: int('limit', '--limit', 1, 1000) ?? 50,
    offset: int('offset', '--offset', 0, 10_000_000) ?? 0,
    after: null,
  }
  if (str('after') !== null) {
    if (!/^\d{1,19}$/.test(str('after')!)) problems.push(`--after: expected a task id, got "${str('after')}"`)
    else filters.after = str('after')
  }
  if (filters.after !== null && str('offset') !== null) problems.push('--after and --offset: use one way of paging, not both')
  if (problems.length) throw new CliError(`invalid filters:\n${problems.map((p) => `  - ${p}`).join('\n')}\nSee \`taskrelay list --help\`.`, EXIT.usage)
  return filters
}

export interface ListedTask {
  id: string
  name: string
  queue: string
  state: TaskState
  attempt: number
  maxAttempts: number
  priority: number
  createdAt: Date
  runAt: Date
  startedAt: Date | null
  finishedAt: Date | null
  workerId: string | null
  error: string | null
}

/** Newest first (id desc), so `--after <last id>` is a stable cursor while tasks keep arriving. */
export async function listTasks(db: Executor, schema: string, f: ListFilters): Promise<{ tasks: ListedTask[]; nextAfter: string | null }> {
  const where: string[] = []
  const values: unknown[] = []
  const add = (sqlText: string, value: unknown) => {
    values.push(value)
    where.push(sqlText.replace('?', `$${values.length}`))
  }
  if (f.states) add('state = any(?::text[])', f.states)
  // Only * is a wildcard: LIKE's own % and _ (and the escape character) are escaped.
  if (f.task) add(f.task.includes('*') ? "name like ? escape '\\'" : 'name = ?', f.task.includes('*') ? f.task.replace(/[\\%_]/g, '\\$&').replaceAll('*', '%') : f.task)
  if (f.queue) add('queue = ?', f.queue)
  if (f.sinceMs !== null) add("created_at >= now() - ? * interval '1 millisecond'", f.sinceMs)
  if (f.olderThanMs !== null) add("created_at < now() - ? * interval '1 millisecond'", f.olderThanMs)
  if (f.after) add('id < ?::bigint', f.after)
  values.push(f.limit + 1, f.offset)
  const res = await db.query<{ id: string; name: string; queue: string; state: TaskState; attempt: number; max_attempts: number; priority: number; created_at: Date; run_at: Date; started_at: Date | null; finished_at: Date | null; worker_id: string | null; error: string | null }>(
    `select id, name, queue, state, attempt, max_attempts, priority, created_at, run_at, started_at, finished_at, worker_id, error
       from ${quoteIdent(schema)}.task_status
      ${where.length ? 'where ' + where.join(' and ') : ''}
      order by id desc
      limit $${values.length - 1} offset $${values.length}`,
    values,
  )
  const rows = res.rows.slice(0, f.limit)
  return {
    tasks: rows.map((r) => ({
      id: String(r.id),
      name: r.name,
      queue: r.queue,
      state: r.state,
      attempt: r.attempt,
      maxAttempts: r.max_attempts,
      priority: r.priority,
      createdAt: r.created_at,
      runAt: r.run_at,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
      workerId: r.worker_id,
      error: r.error,
    })),
    nextAfter: res.rows.length > f.limit ? String(rows.at(-1)!.id) : null,
  }
}

function renderList(tasks: ListedTask[]): string {
  const now = Date.now()
  return renderTable<ListedTask>(
    [
      { header: 'ID', value: (t) => t.id, right: true },
      { header: 'TASK', value: (t) => t.name, max: 40 },
      { header: 'QUEUE', value: (t) => t.queue, max: 20 },
      { header: 'STATE', value: (t) => t.state },
      { header: 'ATTEMPT', value: (t) => `${t.attempt}/${t.maxAttempts}`, right: true },
      { header: 'CREATED', value: (t) => formatAge(t.createdAt, now) },
      {
        header: 'FINISHED / RUNS',
        value: (t) => (t.finishedAt ? formatAge(t.finishedAt, now) : t.state === 'pending' && t.runAt.getTime() > now ? formatAge(t.runAt, now) : '-'),
      },
      { header: 'ERROR', value: (t) => t.error ?? '', max: 60 },
    ],
    tasks,
  )
}
