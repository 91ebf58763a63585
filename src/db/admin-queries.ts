import type { Executor } from './executor.ts'
import { loadSql, quoteIdent } from './sql.ts'
import type { TaskState } from '../task-state.ts'

// The statements behind src/admin/ (read models and bulk actions for the CLI and the dashboard).
// Not hot-path: the filters vary per call, so WHERE is built from a typed filter, with bound values.

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

/**
 * Each state as its partial index's predicate, so a filter on states reads
 * those indexes (the backlog, or 0017's failed/cancelled index) instead of
 * the history: the companions are always true for that state (0005, 0008)
 * and let the planner prove the index applies. States are checked names,
 * written as literals.
 */
const STATE_CLAUSE: Record<TaskState, string> = {
  waiting: "state = 'waiting' and finished_at is null",
  pending: "state = 'pending'",
  dispatched: "state = 'dispatched' and dispatched_at is not null",
  running: "state = 'running' and lease_expires_at is not null",
  succeeded: "state = 'succeeded'",
  failed: "state = 'failed'",
  cancelled: "state = 'cancelled'",
}

/** `where …` (or '') for the filter, with its values numbered from $1. */
function taskWhere(f: TaskFilterParams): { where: string; values: unknown[] } {
  const clauses: string[] = []
  const values: unknown[] = []
  const add = (text: string, value: unknown) => {
    values.push(value)
    clauses.push(text.replace('?', `$${values.length}`))
  }
  if (f.states) clauses.push(f.states.length ? `(${f.states.map((st) => `(${STATE_CLAUSE[st]})`).join(' or ')})` : 'false')
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
      -- The page is chosen on tasks itself, whose columns the state clauses name.
      where id = any(array(select id from ${quoteIdent(p.schema)}.tasks ${where}
                            order by id desc
                            limit $${values.length - 1} offset $${values.length}))
      order by id desc`,
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

export interface QueueUnfinishedRow {
  queue: string
  waiting: number
  pending: number
  scheduled: number
  dispatched: number
  running: number
  held_back: number
  oldest_ms: number | null
}

/** Unfinished tasks per queue and state, each state through its partial index (stats-unfinished.sql). */
export async function taskCountUnfinishedByQueue(db: Executor, p: { schema: string }): Promise<QueueUnfinishedRow[]> {
  return (await db.query<QueueUnfinishedRow>(loadSql('stats-unfinished.sql', p.schema))).rows
}

export interface QueueFinishedRow {
  queue: string
  succeeded: number
  failed: number
  cancelled: number
  succeeded_1m: number
  failed_1m: number
  succeeded_15m: number
  failed_15m: number
}

/** Finishes per queue over the last hour, minute and 15 minutes, from the rollups and the rows since `watermark` (stats-finished.sql). */
export async function rollupCountByQueue(db: Executor, p: { schema: string; watermark: string }): Promise<QueueFinishedRow[]> {
  return (await db.query<QueueFinishedRow>(loadSql('stats-finished.sql', p.schema), [p.watermark])).rows
}

/**
 * The rollups' watermark (0017): finishes before it are in task_rollups. Read
 * first and passed on as a value, so the planner sees how few rows finished
 * since (an InitPlan's unknown bound is guessed at a third of the table,
 * which priced the reads past jit_above_cost: 80-700 ms of JIT per read).
 */
export async function rollupWatermark(db: Executor, p: { schema: string }): Promise<{ upto: string; lagMs: number }> {
  const res = await db.query<{ upto: string; lag_ms: number }>(
    `select upto::text as upto, (extract(epoch from now() - upto) * 1000)::float8 as lag_ms from ${quoteIdent(p.schema)}.task_rollup_watermark`,
  )
  const r = res.rows[0]
  return { upto: r?.upto ?? '-infinity', lagMs: r?.lag_ms ?? 0 }
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

const HIST = Array.from({ length: 64 }, (_, i) => i + 1)
/** Element-wise sums of a histogram column: 64 plain sums, so Postgres adds them in C, not through a function per row. */
const histSum = (col: string) => `array[${HIST.map((i) => `sum(${col}[${i}])`).join(', ')}]::int[]`

/**
 * Chart cells for the last `buckets` buckets of `bucketSeconds` (aligned to
 * the epoch): the rollup minutes of the range summed per bucket (the primary
 * key's minute range), plus the rows finished since the watermark
 * (tasks_finished_idx), one row per histogram bucket pair.
 */
export async function taskChartCells(db: Executor, p: { schema: string; bucketSeconds: number; buckets: number; queue: string | null; watermark: string }): Promise<ChartCellRow[]> {
  const schema = quoteIdent(p.schema)
  const res = await db.query<ChartCellRow & { wb: number | null; rb: number | null; n: number | null }>(
    `with w as (select floor(extract(epoch from now()) / $1) * $1 - ($2 - 1) * $1 as first_s)
     select null as queue, first_s * 1000 as first_ms, null as at_ms, 0 as succeeded, 0 as failed, null::int[] as wait_hist, null::int[] as run_hist, null::int as wb, null::int as rb, null::int as n from w
     union all
     select r.queue, w.first_s * 1000, floor(extract(epoch from r.minute) / $1) * $1 * 1000,
            sum(r.succeeded)::int, sum(r.failed)::int, ${histSum('r.wait_hist')}, ${histSum('r.run_hist')}, null, null, null
       from w, ${schema}.task_rollups r
      where r.minute >= to_timestamp(w.first_s) and ($3::text is null or r.queue = $3)
      group by 1, 2, 3
     union all
     select t.queue, w.first_s * 1000, floor(extract(epoch from t.finished_at) / $1) * $1 * 1000,
            count(*) filter (where t.state = 'succeeded')::int, count(*) filter (where t.state = 'failed')::int, null, null,
            case when t.state <> 'cancelled' then ${schema}.rollup_bucket(extract(epoch from t.started_at - t.run_at)::float8 * 1000) end,
            case when t.state <> 'cancelled' then ${schema}.rollup_bucket(extract(epoch from t.finished_at - t.started_at)::float8 * 1000) end,
            count(*)::int
       from w, ${schema}.tasks t
      where t.state in ('succeeded', 'failed', 'cancelled')
        and t.finished_at >= $4::timestamptz and t.finished_at >= to_timestamp(w.first_s)
        and ($3::text is null or t.queue = $3)
      group by 1, 2, 3, 8, 9`,
    [p.bucketSeconds, p.buckets, p.queue, p.watermark],
  )
  return res.rows.map((r) => {
    // A row finished since the watermark names its two buckets; n of them share both.
    const hist = (b: number | null) => {
      if (b === null) return null
      const h = new Array<number>(64).fill(0)
      h[b] = r.n!
      return h
    }
    const sparse = r.n !== null
    return {
      queue: r.queue,
      first_ms: Number(r.first_ms),
      at_ms: Number(r.at_ms),
      succeeded: r.succeeded,
      failed: r.failed,
      wait_hist: sparse ? hist(r.wb) : r.wait_hist,
      run_hist: sparse ? hist(r.rb) : r.run_hist,
    }
  })
}
