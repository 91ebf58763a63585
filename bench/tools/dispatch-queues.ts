/**
 * The relay's dispatch round against many queues: 100,000 pending tasks
 * spread over N queues, one 500-row round at a time, median ms per round.
 * A round should cost about the same for 1 queue as for 10,000 (0006: queues
 * take turns, so a round reads about one batch of rows).
 *
 *   node bench/tools/dispatch-queues.ts [queues...]   (default: 1 100 1000 10000)
 */
import { createRequire } from 'node:module'
import { randomUUID } from 'node:crypto'
import type pgTypes from 'pg'
import { TaskRelay } from '../../src/index.ts'
import { loadSql, withIntegers } from '../../src/db/sql.ts'
import { DATABASE_URL, median } from '../common.ts'

// pg as src/ loads it (the root's node_modules), so TaskRelay accepts the Pool.
const pg = createRequire(new URL('../../src/index.ts', import.meta.url))('pg') as typeof pgTypes
const counts = process.argv.slice(2).map(Number)
const schema = `dispatch_queues_${process.pid}`
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })
const tr = new TaskRelay({ db: pool, schema })
await tr.migrate()
await pool.query(`insert into "${schema}".relays (relay_id) values ('probe')`)
const text = withIntegers(loadSql('relay-dispatch-batch.sql', schema), { batch_size: 500 })
for (const queues of counts.length > 0 ? counts : [1, 100, 1000, 10000]) {
  await pool.query(`truncate "${schema}".task_dependencies, "${schema}".tasks`)
  await pool.query(`insert into "${schema}".tasks (name, queue) select 'probe', 'q' || (g % $1) from generate_series(1, 100000) g`, [queues])
  await pool.query(`vacuum analyze "${schema}".tasks`)
  const client = await pool.connect()
  const times: number[] = []
  let cursor = ''
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now()
    const res = await client.query<{ last_queue: string }>({ name: `probe${queues}`, text, values: [randomUUID(), [], 50, 'probe', 2, cursor] })
    times.push(performance.now() - t0)
    cursor = res.rows[0]?.last_queue ?? cursor
  }
  client.release()
  console.log(`${queues} queue(s): ${median(times).toFixed(2)} ms per 500-row dispatch round`)
}
await pool.query(`drop schema "${schema}" cascade`)
await pool.end()
