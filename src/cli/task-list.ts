import { quoteIdent } from '../db/sql.ts'
import { TASK_STATES, type TaskState } from '../task-state.ts'
import type { Executor } from '../db/executor.ts'
import { CliError, EXIT } from './errors.ts'
import { formatAge, formatDuration, parseDuration, renderTable } from './format.ts'
import { MAX_DELAY_MS } from '../duration.ts'
import { storableText } from '../jsonb.ts'

/** `taskrelay list`: filters from flags, the keyset-paged query, the table. */
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

/** How a caller spells the filters in messages: CLI flags (`--since`) or query parameters (`since`). */
export interface FilterNaming {
  name(key: string): string
  help: string
}

export const CLI_FILTER_NAMING: FilterNaming = {
  name: (key) => `--${key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`,
  help: 'See `taskrelay list --help`.',
}

const MAX_TASK_ID = 2n ** 63n - 1n

export function parseListFilters(flags: Record<string, unknown>, naming: FilterNaming = CLI_FILTER_NAMING): ListFilters {
  const problems: string[] = []
  const str = (k: string) => (typeof flags[k] === 'string' ? (flags[k] as string) : null)
  // Bounded so that now() - age stays inside Postgres' interval and timestamp range.
  const age = (k: string) => {
    const v = str(k)
    if (v === null) return null
    const ms = parseDuration(v)
    if (ms === null) problems.push(`${naming.name(k)}: expected an age such as 30m, 1h or 7d, got "${v}"`)
    else if (ms > MAX_DELAY_MS) problems.push(`${naming.name(k)}: at most ${formatDuration(MAX_DELAY_MS)} (leave it out to include every age), got "${v}"`)
    return ms
  }
  const int = (k: string, min: number, max: number) => {
    const v = str(k)
    if (v === null) return null
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) problems.push(`${naming.name(k)}: expected a whole number from ${min} to ${max}, got "${v}"`)
    return Number(v)
  }
  // Postgres refuses NUL in text (and the driver a lone surrogate): say so instead of failing the query.
  const text = (k: string) => {
    const v = str(k)
    if (v !== null && storableText(v) !== v) {
      const what = v.includes('\u0000') ? 'the NUL character (\\u0000)' : 'a lone UTF-16 surrogate'
      problems.push(`${naming.name(k)}: contains ${what}, which no task name or queue can contain`)
    }
    return v
  }
  let states: TaskState[] | null = null
  if (str('state') !== null) {
    states = str('state')!.split(',').map((x) => x.trim()).filter(Boolean) as TaskState[]
    const bad = states.filter((x) => !TASK_STATES.includes(x))
    if (bad.length) problems.push(`${naming.name('state')}: unknown state ${bad.map((b) => `"${b}"`).join(', ')}; use ${TASK_STATES.join(', ')}`)
  }
  const filters: ListFilters = {
    states,
    task: text('task'),
    queue: text('queue'),
    sinceMs: age('since'),
    olderThanMs: age('olderThan'),
    limit: int('limit', 1, 1000) ?? 50,
    offset: int('offset', 0, 10_000_000) ?? 0,
    after: null,
  }
  const after = str('after')
  if (after !== null) {
    if (!/^\d{1,19}$/.test(after) || BigInt(after) > MAX_TASK_ID) problems.push(`${naming.name('after')}: expected a task id (a whole number up to ${MAX_TASK_ID}), got "${after}"`)
    else filters.after = after
  }
  if (filters.after !== null && str('offset') !== null) problems.push(`${naming.name('after')} and ${naming.name('offset')}: use one way of paging, not both`)
  if (problems.length) throw new CliError(`invalid filters:\n${problems.map((p) => `  - ${p}`).join('\n')}\n${naming.help}`, EXIT.usage)
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

export function renderList(tasks: ListedTask[]): string {
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

/** The tasks one task waits on (dependsOn), with each one's state, by id. */
export async function taskDependsOn(db: Executor, schema: string, id: string): Promise<Array<{ id: string; name: string; state: TaskState }>> {
  const res = await db.query<{ id: string; name: string; state: TaskState }>(
    `select p.id::text, p.name, p.state
       from ${quoteIdent(schema)}.task_dependencies d
       join ${quoteIdent(schema)}.tasks p on p.id = d.depends_on
      where d.task_id = $1
      order by p.id`,
    [id],
  )
  return res.rows.map((r) => ({ id: r.id, name: r.name, state: r.state }))
}
