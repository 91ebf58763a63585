/**
 * Where S8's enqueue and fan-in time goes, without workers: a chord of
 * `members` members + callback enqueued again and again, split into
 * building the canvas, planWorkflow() (checks, payload validation) and the
 * insert statement (workflow-insert.sql), next to enqueueMany() of as many
 * plain tasks; then the callback's fan-in, task_input(id, 'results') over
 * its members' results, as the claim computes it; and the dependency
 * release: the worker's finish statement (task-finish-batch.sql) over the
 * members in batches of --batch, next to the same over plain tasks (its
 * "unblocked" part re-checks the callback's every dependency per batch).
 *
 *   node bench/tools/workflow-probe.ts [--members 999] [--rounds 12] [--batch 50]
 */
import { parseArgs } from 'node:util'
import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import type pgTypes from 'pg'
import { z } from 'zod'
import { DATABASE_URL, median } from '../common.ts'
import { TaskRelay, chord, defineTask, group, step } from '../../src/index.ts'
import { planWorkflow } from '../../src/workflow/plan.ts'
import { workflowInsert } from '../../src/db/workflow-queries.ts'
import { loadSql, plainArray } from '../../src/db/sql.ts'

const pg = createRequire(new URL('../../src/index.ts', import.meta.url))('pg') as typeof pgTypes

const { values } = parseArgs({ options: { members: { type: 'string', default: '999' }, rounds: { type: 'string', default: '12' }, batch: { type: 'string', default: '50' } } })
const N = Number(values.members)
const rounds = Number(values.rounds)
const schema = `wfprobe_${process.pid}`
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })
const tr = new TaskRelay({ db: pool, schema })
await pool.query(`drop schema if exists "${schema}" cascade`)
await tr.migrate()

const member = defineTask({ name: 'probe.member', payload: z.object({ n: z.number().int() }), run: (p): number => p.n })
const callback = defineTask({ name: 'probe.callback', payload: z.array(z.unknown()), run: (r): number => r.length })
const now = () => performance.now()
const t: Record<string, number[]> = { build: [], enqueueWorkflow: [], planWorkflow: [], insert: [], enqueueMany: [], taskInput: [] }
const callbacks: string[] = []
const memberIds: string[][] = []
const plainIds: string[][] = []

/** The worker's finish statement over `ids` (set running first), `batch` at a time; ms per statement. */
async function finish(ids: string[], batch: number): Promise<number[]> {
  await pool.query(`update "${schema}".tasks set state = 'running', attempt = 1 where id = any($1::bigint[])`, [ids])
  const sql = loadSql('task-finish-batch.sql', schema)
  const out: number[] = []
  for (let i = 0; i < ids.length; i += batch) {
    const b = ids.slice(i, i + batch)
    const s = now()
    await tr.executor.query(sql, [plainArray(b), plainArray(b.map(() => 1)), plainArray(b.map(() => 'succeeded')), b.map((id) => id), b.map(() => null), plainArray(b.map(() => 0))])
    out.push(now() - s)
  }
  return out
}

try {
  for (let k = 0; k < rounds; k++) {
    let s = now()
    const flow = chord(group(...Array.from({ length: N }, (_, i) => step(member, { n: i }))), step(callback))
    t.build!.push(now() - s)
    s = now()
    const { taskIds } = await tr.enqueueWorkflow(flow)
    t.enqueueWorkflow!.push(now() - s)
    callbacks.push(taskIds[taskIds.length - 1]!)
    memberIds.push(taskIds.slice(0, -1))
    s = now()
    const plan = await planWorkflow(flow, {}, 1 << 20)
    t.planWorkflow!.push(now() - s)
    s = now()
    await workflowInsert(tr.executor, { schema, id: randomUUID(), plan })
    t.insert!.push(now() - s)
    s = now()
    const many = await tr.enqueueMany(Array.from({ length: N + 1 }, (_, i) => ({ task: member, payload: { n: i } })))
    t.enqueueMany!.push(now() - s)
    plainIds.push(many.ids.slice(0, N))
  }
  // The release: finish every chord's members and as many plain tasks, alternating, batch at a time.
  const batch = Number(values.batch)
  const release = { chord: [] as number[], plain: [] as number[], lastBatchChord: [] as number[], lastBatchPlain: [] as number[] }
  for (let k = 0; k < rounds; k++) {
    const c = await finish(memberIds[k]!, batch)
    const p = await finish(plainIds[k]!, batch)
    release.chord.push(c.reduce((x, y) => x + y, 0))
    release.plain.push(p.reduce((x, y) => x + y, 0))
    release.lastBatchChord.push(c[c.length - 1]!)
    release.lastBatchPlain.push(p[p.length - 1]!)
  }
  const promoted = (await pool.query(`select count(*)::int as n from "${schema}".tasks where id = any($1::bigint[]) and state = 'pending'`, [callbacks])).rows[0].n
  // The fan-in: members succeeded with a result each (their ids, from the finish above), then task_input() as the callback's claim runs it.
  for (const id of callbacks) {
    const s = now()
    await pool.query(`select "${schema}".task_input($1::bigint, 'results') as r`, [id])
    t.taskInput!.push(now() - s)
  }
  const plan = await pool.query(`explain (analyze, timing on) select "${schema}".task_input($1::bigint, 'results')`, [callbacks[0]])
  // The insert statement's own plan, rolled back: which part of it costs what (foreign-key checks show as triggers).
  const client = await pool.connect()
  const insertPlan: string[] = []
  try {
    await client.query('begin')
    const explain = { query: async (text: string, vals?: readonly unknown[]) => {
      const r = await client.query(`explain (analyze, timing on, verbose off) ${text}`, vals as unknown[])
      insertPlan.push(...r.rows.map((x: Record<string, string>) => x['QUERY PLAN']!))
      return { rows: [], rowCount: 0 }
    } }
    await workflowInsert(explain as never, { schema, id: randomUUID(), plan: await planWorkflow(chord(group(...Array.from({ length: N }, (_, i) => step(member, { n: i }))), step(callback)), {}, 1 << 20) })
  } finally {
    await client.query('rollback')
    client.release()
  }
  const skip = Math.min(2, rounds - 1) // the first rounds warm up
  console.log(`chord of ${N} members + callback, ${rounds - skip} rounds after ${skip} warm-up (median ms):`)
  for (const [k, xs] of Object.entries(t)) console.log(`  ${k.padEnd(16)} ${median(xs.slice(skip)).toFixed(2)}  (min ${Math.min(...xs.slice(skip)).toFixed(2)})`)
  console.log(`enqueueMany is ${N + 1} plain tasks; taskInput is one select of task_input(callback, 'results') over ${N} succeeded members`)
  const m = (xs: number[]) => median(xs.slice(skip)).toFixed(2)
  console.log(`finish statements, ${N} tasks in batches of ${batch} (median ms per ${N}): chord members ${m(release.chord)}, plain tasks ${m(release.plain)}; last batch ${m(release.lastBatchChord)} vs ${m(release.lastBatchPlain)}`)
  console.log(`callbacks promoted to pending by the finish statements: ${promoted} of ${callbacks.length}`)
  console.log(plan.rows.map((r) => r['QUERY PLAN']).join('\n'))
  console.log('\nworkflow-insert.sql, EXPLAIN ANALYZE (rolled back):')
  console.log(insertPlan.join('\n'))
} finally {
  await pool.query(`drop schema if exists "${schema}" cascade`)
  await tr.close()
  await pool.end()
}
