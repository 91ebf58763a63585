/**
 * Issue 18's "bounded as history grows": seeds a schema of its own with
 * --finished finished tasks (default 10M, spread over the last 24 hours,
 * four queues, 1 % failed) plus --pending due tasks (default 200k), rolls the
 * history up with the sweeper's RollupWriter, then times every stats, chart,
 * list and /metrics read (median of --runs) and prints, per statement, the
 * scans of tasks in its plan (EXPLAIN ANALYZE: node, rows read). The stats
 * statement before the rollups (taskCountByQueue at fdcc190) runs too, for
 * the comparison. Drops the schema at the end.
 *
 *   node bench/tools/history-queries.ts [--finished 10000000] [--pending 200000] [--runs 7] [--keep]
 *
 * --keep: leave the schema (its name is printed) to look at plans by hand.
 */
import { parseArgs } from 'node:util'
import { createRequire } from 'node:module'
import type pgTypes from 'pg'
import { DATABASE_URL } from '../common.ts'
import { TaskRelay } from '../../src/index.ts'
import { readCharts } from '../../src/admin/charts.ts'
import { readStats } from '../../src/admin/stats.ts'
import { listTasks, parseListInput } from '../../src/admin/task-list.ts'
import type { Executor } from '../../src/db/executor.ts'
import { loadSql } from '../../src/db/sql.ts'
import { RollupWriter } from '../../src/sweeper/rollup-writer.ts'

const pg = createRequire(new URL('../../src/index.ts', import.meta.url))('pg') as typeof pgTypes

const { values } = parseArgs({ options: { finished: { type: 'string', default: '10000000' }, pending: { type: 'string', default: '200000' }, runs: { type: 'string', default: '7' }, keep: { type: 'boolean', default: false } } })
const finished = Number(values.finished)
const pending = Number(values.pending)
const runs = Number(values.runs)
const schema = `histq_${process.pid}`
const s = `"${schema}"`
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 })
const tr = new TaskRelay({ db: pool, schema })

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** The stats statement before issue 18's rollups (src/db/admin-queries.ts at fdcc190), for the before/after figure. */
const STATS_BEFORE = `select queue,
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
 from ${s}.tasks
 where state in ('waiting', 'pending', 'dispatched', 'running') or finished_at > now() - interval '1 hour'
 group by queue order by queue`

interface PlanNode { 'Node Type': string; 'Relation Name'?: string; 'Index Name'?: string; 'Actual Rows': number; 'Actual Loops': number; 'Rows Removed by Filter'?: number; Plans?: PlanNode[] }
function scans(n: PlanNode, out: string[] = []): string[] {
  if (n['Relation Name'] === 'tasks') {
    const rows = (n['Actual Rows'] + (n['Rows Removed by Filter'] ?? 0)) * (n['Actual Loops'] || 1)
    out.push(`${n['Node Type']}${n['Index Name'] ? ` ${n['Index Name']}` : ''} ${rows.toLocaleString('en')} rows`)
  }
  for (const p of n.Plans ?? []) scans(p, out)
  return out
}

try {
  await tr.migrate()
  let t0 = process.hrtime.bigint()
  // Seed in slices so no one statement holds 10M rows of WAL at once.
  const slice = 1_000_000
  for (let lo = 0; lo < finished; lo += slice) {
    await pool.query(
      `insert into ${s}.tasks (name, queue, state, attempt, created_at, run_at, started_at, finished_at)
       select 'bench.task', 'q' || (i % 4), case when i % 101 = 0 then 'failed' when i % 499 = 1 then 'cancelled' else 'succeeded' end, 1,
              f - w - r, f - w - r, f - r, f
         from generate_series($1::bigint, $2::bigint) i,
              lateral (select now() - interval '24 hours' + i * (interval '24 hours' / $3::bigint) - interval '5 seconds' as f,
                              ((i * 7919) % 2000) * interval '1 millisecond' as w, (5 + (i * 104729) % 500) * interval '1 millisecond' as r) x`,
      [lo + 1, Math.min(finished, lo + slice), finished],
    )
  }
  await pool.query(
    `insert into ${s}.tasks (name, queue, state, run_at) select 'bench.task', 'q' || (i % 4), 'pending', now() - interval '1 minute' from generate_series(1, $1::int) i`,
    [pending],
  )
  console.log(`seeded ${finished.toLocaleString('en')} finished + ${pending.toLocaleString('en')} pending in ${(ms(t0) / 1000).toFixed(1)} s`)
  await pool.query(`vacuum analyze ${s}.tasks`)
  await pool.query(`update ${s}.task_rollup_watermark set upto = now() - interval '25 hours'`)
  t0 = process.hrtime.bigint()
  const writer = new RollupWriter(tr, { chunkMs: 3 * 3600_000 })
  let rolled = 0
  for (let r = await writer.write(); r.tasks > 0 || r.behind; r = await writer.write()) rolled += r.tasks
  const rollupMs = ms(t0)
  // The sweeper's ordinary pass once caught up: the few seconds since the last one.
  await pool.query(`update ${s}.task_rollup_watermark set upto = now() - interval '7 seconds'`)
  t0 = process.hrtime.bigint()
  await writer.write()
  console.log(`rolled up ${rolled.toLocaleString('en')} tasks in ${(rollupMs / 1000).toFixed(1)} s (${Math.round(rolled / (rollupMs / 1000)).toLocaleString('en')}/s); a steady-state pass: ${ms(t0).toFixed(1)} ms`)
  await pool.query(`analyze ${s}.task_rollups`)

  const recorded: Array<{ text: string; values?: readonly unknown[] }> = []
  const recorder: Executor = {
    async query<R>(text: string, v?: readonly unknown[]) {
      recorded.push({ text, values: v })
      const res = await pool.query(text, v as unknown[])
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 }
    },
  }
  const ctx = { executor: tr.executor, schema }
  const cases: Array<[string, (c: typeof ctx) => Promise<unknown>]> = [
    ['stats BEFORE (one scan, fdcc190)', (c) => c.executor.query(STATS_BEFORE)],
    ['readStats (taskrelay stats, /api/stats)', (c) => readStats(c)],
    ['readCharts 1h, all queues', (c) => readCharts(c, '1h')],
    ['readCharts 24h, all queues', (c) => readCharts(c, '24h')],
    ['readCharts 24h, one queue', (c) => readCharts(c, '24h', 'q1')],
    ['/metrics queue depth', (c) => c.executor.query(loadSql('metrics-queue-depth.sql', schema))],
    ['list (newest 50)', (c) => listTasks(c, parseListInput({ limit: '50' }))],
    ['list --state succeeded', (c) => listTasks(c, parseListInput({ limit: '50', state: 'succeeded' }))],
    ['list --state failed', (c) => listTasks(c, parseListInput({ limit: '50', state: 'failed' }))],
    ['list --state failed --queue q2', (c) => listTasks(c, parseListInput({ limit: '50', state: 'failed', queue: 'q2' }))],
    ['list --state pending', (c) => listTasks(c, parseListInput({ limit: '50', state: 'pending' }))],
    ['list --queue q3 --after <middle id>', (c) => listTasks(c, parseListInput({ limit: '50', queue: 'q3', after: String(Math.floor(finished / 2)) }))],
  ]
  console.log('\n| read | median ms | min–max | scans of tasks (EXPLAIN ANALYZE, per statement) |\n| --- | ---: | ---: | --- |')
  for (const [name, read] of cases) {
    await read(ctx) // warm
    const times: number[] = []
    for (let i = 0; i < runs; i++) {
      const t = process.hrtime.bigint()
      await read(ctx)
      times.push(ms(t))
    }
    recorded.length = 0
    await read({ executor: recorder, schema })
    const evidence: string[] = []
    for (const q of recorded) {
      const res = await pool.query(`explain (analyze, format json) ${q.text}`, q.values as unknown[])
      const found = scans((res.rows[0]['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0]!.Plan)
      if (found.length) evidence.push(found.join(' + '))
    }
    console.log(`| ${name} | ${median(times).toFixed(1)} | ${Math.min(...times).toFixed(1)}–${Math.max(...times).toFixed(1)} | ${evidence.join('; ') || 'no task rows'} |`)
  }
} finally {
  if (values.keep) console.log(`kept schema ${schema}`)
  else await pool.query(`drop schema if exists ${s} cascade`)
  await tr.close()
  await pool.end()
}
