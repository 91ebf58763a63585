/**
 * A poor man's server-side profiler for when pg_stat_statements is not
 * preloaded: samples pg_stat_activity every few ms for the backends whose
 * current query touches a schema matching --match, and prints where they
 * spend their time (statement × state × wait event), as a share of samples.
 *
 *   node bench/tools/pg-sampler.ts --match bench_tr_ --seconds 30 [--every 2]
 *
 * Start it, then run the scenario (e.g. npm run bench -- --systems taskrelay --only S4).
 */
import { parseArgs } from 'node:util'
import pg from 'pg'
import { DATABASE_URL, sleep } from '../common.ts'

const { values } = parseArgs({
  options: { match: { type: 'string', default: 'bench_tr_' }, seconds: { type: 'string', default: '30' }, every: { type: 'string', default: '2' } },
})
const client = new pg.Client({ connectionString: DATABASE_URL, application_name: 'bench-pg-sampler' })
await client.connect()
const deadline = Date.now() + Number(values.seconds) * 1000
const counts = new Map<string, number>()
let samples = 0
let busySamples = 0

function statementKey(q: string): string {
  const lines = q.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('--'))
  return lines.join(' ').replace(/"[^"]*"\./g, '').replace(/\s+/g, ' ').slice(0, 70)
}

while (Date.now() < deadline) {
  const r = await client.query(
    `select state, coalesce(wait_event_type || ':' || wait_event, 'CPU') as wait, query
       from pg_stat_activity
      where pid <> pg_backend_pid() and datname = current_database() and query like '%' || $1 || '%'`,
    [values.match],
  )
  samples++
  let busy = false
  for (const row of r.rows) {
    if (row.state === 'idle') continue
    busy = true
    const key = `${row.state === 'active' ? row.wait : row.state} | ${statementKey(row.query)}`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  if (busy) busySamples++
  await sleep(Number(values.every))
}
await client.end()
const total = [...counts.values()].reduce((a, b) => a + b, 0)
console.log(`${samples} samples; a matching backend was busy in ${busySamples} (${((busySamples / samples) * 100).toFixed(0)} %)`)
console.log('share of busy backend-samples by wait | statement:')
for (const [k, c] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
  console.log(`${((c / total) * 100).toFixed(1).padStart(5)} %  ${k}`)
}
