/**
 * Postgres's share of a drain, without Node, Redis or a relay in the way:
 * runs the relay's dispatch, the worker's claim and the completer's finish
 * statements back to back over a backlog of no-op tasks, one connection,
 * and prints the time per task of each statement (wall time of each round
 * trip on loopback, commits included), planned and cached as the product
 * does (pgExecutor: named statements).
 *
 *   node bench/tools/pg-drain-cost.ts [--tasks 50000] [--batch 500] [--async]
 *                                     [--limit 10000] [--groups 100 [--group-limit 1]]
 *
 * --limit: the queue gets settings (concurrency N, issue 16), so its tasks
 * leave through flow_take() (S4L's path). --groups: tasks spread over G
 * group keys, enqueued group after group, and groupConcurrency (default 1)
 * (S9's path; with a group limit every round dispatches at most one task per
 * group, so a round is G tasks at most).
 */
import { parseArgs } from 'node:util'
import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import type pgTypes from 'pg'
import { DATABASE_URL } from '../common.ts'
import { TaskRelay, defineTask } from '../../src/index.ts'
import { loadSql, plainArray, withIntegers } from '../../src/db/sql.ts'
import { pgExecutor } from '../../src/db/executor.ts'
import { z } from 'zod'

// pg as src/ loads it (the root's node_modules), so TaskRelay accepts the Pool.
const pg = createRequire(new URL('../../src/index.ts', import.meta.url))('pg') as typeof pgTypes

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: '50000' },
    batch: { type: 'string', default: '500' },
    async: { type: 'boolean', default: false },
    limit: { type: 'string' },
    groups: { type: 'string' },
    'group-limit': { type: 'string', default: '1' },
  },
})
const groups = values.groups ? Number(values.groups) : 0
const total = Number(values.tasks)
const batch = Number(values.batch)
const schema = `pgcost_${process.pid}`
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })
const tr = new TaskRelay({ db: pool, schema })
await tr.migrate()
const t = defineTask({ name: 'bench.noop', payload: z.object({ n: z.number() }), run: () => {} })
for (let i = 0; i < total; i += 1000) {
  await tr.enqueueMany(
    Array.from({ length: Math.min(1000, total - i) }, (_, k) => {
      const n = i + k
      return groups ? { task: t, payload: { n }, options: { groupKey: `g${String(Math.floor((n * groups) / total)).padStart(3, '0')}` } } : { task: t, payload: { n } }
    }),
  )
}
if (values.limit || groups) {
  await tr.queue('default').configure({
    ...(values.limit ? { concurrency: Number(values.limit) } : {}),
    ...(groups ? { groupConcurrency: Number(values['group-limit']) } : {}),
  })
}
const client = await pool.connect()
if (values.async) await client.query('set synchronous_commit = off')
await client.query('checkpoint')
await client.query('vacuum analyze ' + `"${schema}".tasks`)
const sql = (f: string) => loadSql(f, schema)
const spent = { dispatch: 0, claim: 0, finish: 0 }
const executor = pgExecutor(client, { prepare: true })
const q = async (k: keyof typeof spent, text: string, params: unknown[]) => {
  const t0 = performance.now()
  const r = await executor.query<{ id: string; attempt: number }>(text, params)
  spent[k] += performance.now() - t0
  return r
}
await client.query(`insert into "${schema}".relays (relay_id) values ('cost')`)
const dispatchSql = withIntegers(sql('relay-dispatch-batch.sql'), { batch_size: batch })
let done = 0
let rounds = 0
/** ms of each round's dispatch: does it grow as the drain goes on? */
const perRound: number[] = []
const t0 = performance.now()
while (done < total) {
  rounds++
  const token = randomUUID()
  const before = spent.dispatch
  const d = await q('dispatch', dispatchSql, [token, [], 50, 'cost', 2, ''])
  perRound.push(spent.dispatch - before)
  if (d.rows.length === 0) break
  const ids = d.rows.map((r) => String(r.id))
  const c = await q('claim', sql('task-claim-batch.sql'), [plainArray(ids), plainArray(ids.map(() => token)), 60000, 'w'])
  const n = c.rows.length
  await q('finish', sql('task-finish-batch.sql'), [
    plainArray(ids), plainArray(c.rows.map((r) => r.attempt)), plainArray(ids.map(() => 'succeeded')),
    ids.map(() => 'null'), ids.map(() => null), plainArray(ids.map(() => 0)),
  ])
  done += n
}
const wall = performance.now() - t0
const flow = [values.limit ? `queue concurrency ${values.limit}` : '', groups ? `${groups} groups, groupConcurrency ${values['group-limit']}` : ''].filter(Boolean).join(', ') || 'no queue settings'
console.log(`${done} tasks, batch ${batch}, synchronous_commit ${values.async ? 'off' : 'on'}, ${flow}: ${(done / wall * 1000).toFixed(0)} tasks/s on one connection, ${rounds} rounds`)
for (const [k, ms] of Object.entries(spent)) console.log(`  ${k.padEnd(9)} ${(ms * 1000 / done).toFixed(1)} us/task`)
const quarter = Math.max(1, Math.floor(perRound.length / 4))
const means = [0, 1, 2, 3].map((k) => perRound.slice(k * quarter, (k + 1) * quarter)).filter((x) => x.length).map((x) => (x.reduce((a, b) => a + b, 0) / x.length).toFixed(2))
console.log(`  dispatch ms per round, mean by quarter of the drain: ${means.join(' / ')}`)
client.release()
await pool.query(`drop schema "${schema}" cascade`)
await pool.end()
