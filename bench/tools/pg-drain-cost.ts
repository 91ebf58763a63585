/**
 * Postgres's share of a drain, without Node, Redis or a relay in the way:
 * runs the relay's dispatch, the worker's claim and the completer's finish
 * statements back to back over a backlog of no-op tasks, one connection,
 * and prints the time per task of each statement (wall time of each round
 * trip on loopback, commits included), planned and cached as the product
 * does (pgExecutor: named statements).
 *
 *   node bench/tools/pg-drain-cost.ts [--tasks 50000] [--batch 500] [--async]
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

const { values } = parseArgs({ options: { tasks: { type: 'string', default: '50000' }, batch: { type: 'string', default: '500' }, async: { type: 'boolean', default: false } } })
const total = Number(values.tasks)
const batch = Number(values.batch)
const schema = `pgcost_${process.pid}`
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })
const tr = new TaskRelay({ db: pool, schema })
await tr.migrate()
const t = defineTask({ name: 'bench.noop', payload: z.object({ n: z.number() }), run: () => {} })
for (let i = 0; i < total; i += 1000) {
  await tr.enqueueMany(Array.from({ length: Math.min(1000, total - i) }, (_, k) => ({ task: t, payload: { n: i + k } })))
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
const t0 = performance.now()
while (done < total) {
  const token = randomUUID()
  const d = await q('dispatch', dispatchSql, [token, [], 50, 'cost', 2, ''])
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
console.log(`${done} tasks, batch ${batch}, synchronous_commit ${values.async ? 'off' : 'on'}: ${(done / wall * 1000).toFixed(0)} tasks/s on one connection`)
for (const [k, ms] of Object.entries(spent)) console.log(`  ${k.padEnd(9)} ${(ms * 1000 / done).toFixed(1)} us/task`)
client.release()
await pool.query(`drop schema "${schema}" cascade`)
await pool.end()
