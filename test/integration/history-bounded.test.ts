import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readCharts } from '../../src/admin/charts.ts'
import { readStateCounts, readStats } from '../../src/admin/stats.ts'
import { listTasks, parseListInput, type ListInput } from '../../src/admin/task-list.ts'
import type { Executor } from '../../src/db/executor.ts'
import { loadSql } from '../../src/db/sql.ts'
import { RollupWriter } from '../../src/sweeper/rollup-writer.ts'
import { createTestDb, type TestDb } from '../support/db.ts'

// Issue 18: every stats, chart and list query of the dashboard, the CLI and
// /metrics costs O(backlog or page), not O(history). Asserted on the plans
// (EXPLAIN ANALYZE): rows each statement reads from tasks, never wall time.
const FINISHED = 300_000
const BACKLOG = 3_000 // pending, plus a few running, dispatched and waiting
let db: TestDb

beforeAll(async () => {
  db = await createTestDb()
  const s = `"${db.schema}"`
  // History: 300k finished over the last 2 days, three queues, 1 % failed, a few cancelled.
  await db.pool.query(`
    insert into ${s}.tasks (name, queue, state, attempt, created_at, run_at, started_at, finished_at)
    select 'bench.task', 'q' || (i % 3), case when i % 100 = 0 then 'failed' when i % 250 = 1 then 'cancelled' else 'succeeded' end, 1,
           f - interval '1 second', f - interval '1 second', f - interval '200 milliseconds', f
      from generate_series(1, ${FINISHED}) i,
           lateral (select now() - interval '2 days' + i * (interval '2 days' / ${FINISHED}) - interval '3 seconds' as f) t`)
  await db.pool.query(`
    insert into ${s}.tasks (name, queue, state, attempt, run_at, dispatched_at, started_at, lease_expires_at, worker_id, finished_at)
    select 'bench.task', 'q' || (i % 3), st, 0, now() - interval '1 minute', d, st_, l, w, null
      from generate_series(1, ${BACKLOG}) i,
           lateral (select case when i % 50 = 0 then 'running' when i % 50 = 1 then 'dispatched' when i % 50 = 2 then 'waiting' else 'pending' end as st) a,
           lateral (select case when st in ('dispatched', 'running') then now() end as d,
                           case when st = 'running' then now() end as st_,
                           case when st = 'running' then now() + interval '1 minute' end as l,
                           case when st = 'running' then 'w1' end as w) b`)
  await db.pool.query(`update ${s}.task_rollup_watermark set upto = now() - interval '3 days'`)
  await new RollupWriter(db.tr, { chunkMs: 4 * 24 * 3600_000 }).write()
  await db.pool.query(`analyze ${s}.tasks`)
}, 120_000)
afterAll(async () => {
  await db.cleanup()
})

interface PlanNode {
  'Node Type': string
  'Relation Name'?: string
  'Actual Rows': number
  'Plan Rows': number
  'Actual Loops': number
  'Rows Removed by Filter'?: number
  'Rows Removed by Index Recheck'?: number
  Plans?: PlanNode[]
}

/** Scans of tasks in a plan: node types, and rows read (returned plus filtered out), over all loops. */
function tasksScans(node: PlanNode, out: Array<{ type: string; rows: number; estimate: number }> = []) {
  if (node['Relation Name'] === 'tasks') {
    const loops = node['Actual Loops'] || 1
    out.push({ type: node['Node Type'], rows: (node['Actual Rows'] + (node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Index Recheck'] ?? 0)) * loops, estimate: node['Plan Rows'] })
  }
  for (const p of node.Plans ?? []) tasksScans(p, out)
  return out
}

/** Runs `read` while recording its statements, then EXPLAIN ANALYZEs each one the same way. */
async function explainEach(read: (executor: Executor) => Promise<unknown>) {
  const seen: Array<{ text: string; values?: readonly unknown[] }> = []
  const executor: Executor = {
    query: async <R>(text: string, values?: readonly unknown[]) => {
      seen.push({ text, values })
      const res = await db.pool.query(text, values as unknown[])
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 }
    },
  }
  await read(executor)
  const plans = []
  for (const q of seen) {
    const res = await db.pool.query(`explain (analyze, format json) ${q.text}`, q.values as unknown[])
    const top = (res.rows[0]['QUERY PLAN'] as Array<{ Plan: PlanNode; JIT?: unknown }>)[0]!
    plans.push({ text: q.text.slice(0, 120), scans: tasksScans(top.Plan), jit: top.JIT !== undefined })
  }
  return plans
}

/**
 * With `estimates`, the planner's row estimates too: a bound it cannot see
 * (the watermark as an InitPlan) is guessed at a third of tasks, which priced
 * stats and charts past jit_above_cost at 10M rows (80-700 ms of JIT). Not
 * for lists: a scan under LIMIT keeps its unlimited estimate.
 */
function expectBounded(plans: Awaited<ReturnType<typeof explainEach>>, bound: number, opts: { estimates?: boolean } = {}) {
  expect(plans.length).toBeGreaterThan(0)
  for (const p of plans) {
    // A row estimate far off (an unknown bound guessed at a third of tasks) priced reads past jit_above_cost: 80-700 ms of compiling.
    expect(p.jit, p.text).toBe(false)
    for (const scan of p.scans) {
      expect(scan.type, p.text).not.toBe('Seq Scan')
      expect(scan.rows, `${p.text}: ${scan.type}`).toBeLessThanOrEqual(bound)
      if (opts.estimates) expect(scan.estimate, `${p.text}: ${scan.type} (estimated rows)`).toBeLessThanOrEqual(bound)
    }
  }
}

// Each unfinished state's count reads its own index once, some statements twice.
const BACKLOG_BOUND = 3 * BACKLOG

describe(`with ${FINISHED} finished tasks and ${BACKLOG} unfinished`, () => {
  it('stats (taskrelay stats, GET /api/stats) read the backlog and the rollups, not the history', async () => {
    const plans = await explainEach((executor) => readStats({ executor, schema: db.schema }))
    expectBounded(plans, BACKLOG_BOUND, { estimates: true })
    const stats = await readStats(db.tr)
    // 1 % failed, 1/250 cancelled, all at a steady rate: the last hour holds 1/48 of them.
    expect(stats.totals.succeededLastHour).toBeGreaterThan(FINISHED / 48 * 0.95)
    expect(stats.totals.pending).toBeGreaterThan(0)
  })

  it("the dev progress line (taskrelay dev) reads the backlog and the rollups, not the history", async () => {
    expectBounded(await explainEach((executor) => readStateCounts({ executor, schema: db.schema })), BACKLOG_BOUND, { estimates: true })
    const counts = await readStateCounts(db.tr)
    expect(counts.succeeded).toBeGreaterThan(FINISHED / 48 * 0.95)
    expect(counts.succeeded).toBeLessThan(FINISHED / 2)
  })

  it('charts (1h and 24h, all queues or one) read the rollups', async () => {
    for (const [range, queue] of [['1h', undefined], ['24h', undefined], ['24h', 'q1']] as const) {
      expectBounded(await explainEach((executor) => readCharts({ executor, schema: db.schema }, range, queue)), 1000, { estimates: true })
    }
    const [q1] = await readCharts(db.tr, '24h', 'q1')
    expect(q1!.points.reduce((n, p) => n + p.succeeded + p.failed, 0)).toBeGreaterThan(FINISHED / 3 / 2 * 0.9)
  })

  it('/metrics queue depth reads the backlog', async () => {
    expectBounded(await explainEach((executor) => executor.query(loadSql('metrics-queue-depth.sql', db.schema))), BACKLOG_BOUND, { estimates: true })
  })

  const lists: ListInput[] = [
    {},
    { state: 'succeeded' },
    { state: 'failed' },
    { state: 'failed,cancelled', queue: 'q2' },
    { state: 'pending' },
    { state: 'running' },
    { state: 'waiting' },
    { queue: 'q1' },
    { state: 'succeeded', task: 'bench.*' },
    { state: 'failed', limit: '100', after: '250000' },
  ]
  for (const input of lists) {
    it(`taskrelay list ${JSON.stringify(input)} reads a page (or the backlog), newest first`, async () => {
      const f = parseListInput({ limit: '50', ...input })
      const plans = await explainEach((executor) => listTasks({ executor, schema: db.schema }, f))
      // A rare state reads its own index; a common one a page of the primary key.
      expectBounded(plans, Math.max(BACKLOG_BOUND, 20 * f.limit))
    })
  }
})
