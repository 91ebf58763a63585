import type { Executor } from './executor.ts'
import { loadSql, quoteIdent } from './sql.ts'
import type { TaskState } from '../task-state.ts'

/**
 * The statements behind src/admin/ (read models and bulk actions for the CLI
 * and the dashboard). Not hot-path: the filters vary per call, so the WHERE
 * clause is built here from a typed filter, always with bound values.
 */

/** Which tasks a list, count or bulk action covers; null or absent means "any". */
export interface TaskFilterParams {
  states?: readonly TaskState[] | null
  /** a task name, where `*` matches anything ('' matches only the empty name) */
  name?: string | null
  queue?: string | null
  createdWithinMs?: number | null
  createdBeforeMs?: number | null
  finishedWithinMs?: number | null
  /** keyset cursor: only ids below this one */
  beforeId?: string | null
  /** only tasks of this workflow (a uuid) */
  workflowId?: string | null
}

/** `where …` (or '') for the filter, with its values numbered from $1. */
function taskWhere(f: TaskFilterParams): { where: string; values: unknown[] } {
  const clauses: string[] = []
  const values: unknown[] = []
  const add = (text: string, value: unknown) => {
    values.push(value)
    clauses.push(text.replace('?', `$${values.length}`))
  }
  if (f.states) add('state = any(?::text[])', f.states)
  // Only * is a wildcard: LIKE's own % and _ (and the escape character) are escaped.
  if (f.name != null) add(f.name.includes('*') ? "name like ? escape '\\'" : 'name = ?', f.name.includes('*') ? f.name.replace(/[\\%_]/g, '\\$&').replaceAll('*', '%') : f.name)
  if (f.queue != null) add('queue = ?', f.queue)
  if (f.finishedWithinMs != null) add("finished_at >= now() - ? * interval '1 millisecond'", f.finishedWithinMs)
  if (f.createdWithinMs != null) add("created_at >= now() - ? * interval '1 millisecond'", f.createdWithinMs)
  if (f.createdBeforeMs != null) add("created_at < now() - ? * interval '1 millisecond'", f.createdBeforeMs)
  if (f.beforeId) add('id < ?::bigint', f.beforeId)
  if (f.workflowId) add('workflow_id = ?::uuid', f.workflowId)
  return { where: clauses.length ? 'where ' + clauses.join(' and ') : '', values }
}

export interface TaskStatusRow {
  id: string
  name: string
  queue: string
  state: TaskState
  attempt: number
  max_attempts: number
  priority: number
  created_at: Date
  run_at: Date
  started_at: Date | null
  finished_at: Date | null
  worker_id: string | null
  error: string | null
}

/** Rows of the task_status view, newest first (id desc). */
export async function taskList(db: Executor, p: { schema: string; filter: TaskFilterParams; limit: number; offset: number }): Promise<TaskStatusRow[]> {
  const { where, values } = taskWhere(p.filter)
  values.push(p.limit, p.offset)
  const res = await db.query<TaskStatusRow>(
    `select id, name, queue, state, attempt, max_attempts, priority, created_at, run_at, started_at, finished_at, worker_id, error
       from ${quoteIdent(p.schema)}.task_status
      ${where}
      order by id desc
      limit $${values.length - 1} offset $${values.length}`,
    values,
  )
  return res.rows
}

/** How many tasks match. */
export async function taskCount(db: Executor, p: { schema: string; filter: TaskFilterParams }): Promise<number> {
  const { where, values } = taskWhere(p.filter)
  const res = await db.query<{ n: number }>(`select count(*)::int as n from ${quoteIdent(p.schema)}.tasks ${where}`, values)
  return res.rows[0]?.n ?? 0
}

/**
 * The SQL function `fn` (retry or cancel) on every matching task, in id
 * order; returns how many it changed. Each call re-checks the state in its own
 * UPDATE, so a task that moved on meanwhile is left alone.
 */
export async function taskChangeMany(db: Executor, p: { schema: string; fn: 'retry' | 'cancel'; filter: TaskFilterParams }): Promise<number> {
  const schema = quoteIdent(p.schema)
  const { where, values } = taskWhere(p.filter)
  const res = await db.query<{ changed: number }>(
    `select count(*) filter (where ok)::int as changed
       from (select ${schema}.${p.fn === 'retry' ? 'retry' : 'cancel'}(id) as ok from ${schema}.tasks ${where} order by id) s`,
    values,
  )
  return res.rows[0]?.changed ?? 0
}

/** Tasks per state, over the whole table. */
export async function taskCountByState(db: Executor, p: { schema: string }): Promise<Array<{ state: TaskState; n: number }>> {
  const res = await db.query<{ state: TaskState; n: number }>(`select state, count(*)::int as n from ${quoteIdent(p.schema)}.tasks group by state`)
  return res.rows
}

export interface QueueCountsRow {
  queue: string
  waiting: number
  pending: number
  scheduled: number
  dispatched: number
  running: number
  succeeded: number
  failed: number
  cancelled: number
  done_1m: number
  done_15m: number
  oldest_ms: number | null
}

/**
 * One scan of unfinished tasks plus those finished in the last hour (the
 * partial indexes cover both), grouped by queue.
 */
export async function taskCountByQueue(db: Executor, p: { schema: string }): Promise<QueueCountsRow[]> {
  const res = await db.query<QueueCountsRow>(
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
       from ${quoteIdent(p.schema)}.tasks
      where state in ('waiting', 'pending', 'dispatched', 'running') or finished_at > now() - interval '1 hour'
      group by queue
      order by queue`,
  )
  return res.rows
}

/** Rows of <schema>.workers whose owner still renews them (worker-register.sql). */
const LIVE_WORKERS = 'expires_at > now()'

/** Running workers per queue they serve; the row with queue null counts every running worker once. */
export async function workerCountByQueue(db: Executor, p: { schema: string }): Promise<Array<{ queue: string | null; workers: number }>> {
  const res = await db.query<{ queue: string | null; workers: number }>(
    `select q.queue, count(distinct w.id)::int as workers
       from ${quoteIdent(p.schema)}.workers w
       left join lateral unnest(w.queues) as q(queue) on true
      where ${LIVE_WORKERS}
      group by rollup (q.queue)`,
  )
  return res.rows
}

/** A worker process's row in <schema>.workers, with the tasks it holds (workers-list.sql). */
export interface WorkerRow {
  id: string
  queues: string[]
  tasks: string[]
  started_at: Date
  last_seen_at: Date
  expires_at: Date
  alive: boolean
  running: number
}

/** Live workers, and with `silent` also those that stopped renewing their row in the last day. */
export async function workerList(db: Executor, p: { schema: string; silent: boolean }): Promise<WorkerRow[]> {
  const res = await db.query<WorkerRow>(loadSql('workers-list.sql', p.schema), [p.silent])
  return res.rows
}

/** Running workers serving `queue`, and how many of them have task `taskName`. */
export async function workerCountServing(db: Executor, p: { schema: string; queue: string; taskName: string }): Promise<{ serving: number; withTask: number }> {
  const res = await db.query<{ serving: number; with_task: number }>(
    `select count(*)::int as serving, count(*) filter (where $2 = any(tasks))::int as with_task
       from ${quoteIdent(p.schema)}.workers
      where ${LIVE_WORKERS} and $1 = any(queues)`,
    [p.queue, p.taskName],
  )
  return { serving: res.rows[0]?.serving ?? 0, withTask: res.rows[0]?.with_task ?? 0 }
}

/** The tasks one task waits on (dependsOn), with each one's state, by id. */
export async function taskDependencyList(db: Executor, p: { schema: string; taskId: string }): Promise<Array<{ id: string; name: string; state: TaskState }>> {
  const schema = quoteIdent(p.schema)
  const res = await db.query<{ id: string; name: string; state: TaskState }>(
    `select p.id::text, p.name, p.state
       from ${schema}.task_dependencies d
       join ${schema}.tasks p on p.id = d.depends_on
      where d.task_id = $1
      order by p.id`,
    [p.taskId],
  )
  return res.rows.map((r) => ({ id: r.id, name: r.name, state: r.state }))
}

/** Unfinished, not yet running tasks named `name`, with their payloads (taskrelay/testing's expectEnqueued). */
export async function taskListEnqueued(db: Executor, p: { schema: string; name: string }): Promise<Array<{ id: string; payload: unknown }>> {
  const res = await db.query<{ id: string; payload: unknown }>(
    `select id, payload from ${quoteIdent(p.schema)}.tasks where name = $1 and state in ('waiting', 'pending', 'dispatched') order by id`,
    [p.name],
  )
  return res.rows
}

/** One cell of the charts: a queue's counts and histograms in one time bucket (or, queue null, only the range start). */
export interface ChartCellRow {
  queue: string | null
  /** start of the oldest bucket of the range, by the database's clock */
  first_ms: number
  at_ms: number
  succeeded: number
  failed: number
  wait_hist: number[] | null
  run_hist: number[] | null
}

/**
 * Chart cells for the last `buckets` buckets of `bucketSeconds` (aligned to
 * the epoch). First version: reads the finished rows of the range through
 * tasks_finished_idx (O(tasks finished in the range)).
 */
export async function taskChartCells(db: Executor, p: { schema: string; bucketSeconds: number; buckets: number; queue: string | null }): Promise<ChartCellRow[]> {
  const res = await db.query<ChartCellRow & { wb: number | null; rb: number | null; n: number }>(
    `with w as (select floor(extract(epoch from now()) / $1) * $1 - ($2 - 1) * $1 as first_s)
     select null as queue, first_s * 1000 as first_ms, null as at_ms, 0 as succeeded, 0 as failed, null as wb, null as rb, 0 as n from w
     union all
     select t.queue, w.first_s * 1000, floor(extract(epoch from t.finished_at) / $1) * $1 * 1000,
            count(*) filter (where t.state = 'succeeded')::int, count(*) filter (where t.state = 'failed')::int,
            case when t.state <> 'cancelled' and t.started_at is not null then least(63, greatest(0, 1 + floor(2 * log(2, greatest(1, extract(epoch from t.started_at - t.run_at) * 1000)::numeric)))) end::int,
            case when t.state <> 'cancelled' and t.started_at is not null then least(63, greatest(0, 1 + floor(2 * log(2, greatest(1, extract(epoch from t.finished_at - t.started_at) * 1000)::numeric)))) end::int,
            count(*)::int
       from w, ${quoteIdent(p.schema)}.tasks t
      where t.state in ('succeeded', 'failed', 'cancelled') and t.finished_at >= to_timestamp(w.first_s)
        and ($3::text is null or t.queue = $3)
      group by 1, 2, 3, 6, 7`,
    [p.bucketSeconds, p.buckets, p.queue],
  )
  return res.rows.map((r) => {
    const hist = (b: number | null) => {
      if (b === null) return null
      const h = new Array<number>(64).fill(0)
      h[b] = r.n
      return h
    }
    return { queue: r.queue, first_ms: Number(r.first_ms), at_ms: Number(r.at_ms), succeeded: r.succeeded, failed: r.failed, wait_hist: hist(r.wb), run_hist: hist(r.rb) }
  })
}
