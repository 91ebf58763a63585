import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { databaseUrl, uniqueSchema } from '../support/db.ts'
import { LedgerWriter, checkLedger, createLedgerTables, markProcessDead } from '../support/ledger.ts'

/**
 * The instrument of the resilience suite, checked on its own: a ledger that
 * could not report a lost, rolled-back, duplicated or overlapping run would
 * make every resilience test pass for nothing.
 */
describe('run ledger', () => {
  let pool: pg.Pool
  const schema = uniqueSchema('ledger')

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: databaseUrl(), max: 3 })
    await pool.query(`create schema "${schema}"`)
    await createLedgerTables(pool, schema)
  })

  afterAll(async () => {
    await pool.query(`drop schema if exists "${schema}" cascade`)
    await pool.end()
  })

  it('reports lost, unexpected, duplicate, same-attempt, overlapping and unfinished runs', async () => {
    // produced: n 1..6 are tasks 101..106
    await pool.query(`insert into "${schema}".produced select n, 100 + n from generate_series(1, 6) n`)
    const run = (id: string, task: number, n: number, attempt: number, pid: number, start: number, end: number | null, outcome: string | null) =>
      pool.query(`insert into "${schema}".ledger values ($1, $2, $3, $4, $5, $6, $7, $8)`, [id, task, n, attempt, pid, start, end, outcome])
    await run('a', 101, 1, 1, 1, 1000, 1010, 'ok') // fine
    await run('b', 102, 2, 1, 1, 1000, 1100, 'killed') // retried after its process died...
    await run('c', 102, 2, 2, 2, 1200, 1210, 'ok') // ...sequentially: a duplicate, not an overlap
    await run('d', 103, 3, 1, 1, 1000, 1100, 'ok') // two runs at the same time
    await run('e', 103, 3, 2, 2, 1050, 1060, 'ok')
    await run('f', 104, 4, 1, 1, 1000, 1010, 'ok') // the same attempt ran twice
    await run('g', 104, 4, 1, 2, 1020, 1030, 'ok')
    await run('h', 105, 5, 1, 3, 1000, null, null) // never finished, process not declared dead
    // n 6 (task 106) never ran: lost. n 7 was never produced (rolled back) but ran:
    await run('i', 107, 7, 1, 1, 1000, 1010, 'ok')
    await run('j', 101, 1, 2, 3, 1005, null, null) // still running while 'a' ran: overlap with an open end

    const r = await checkLedger(pool, schema)
    expect(r.produced).toBe(6)
    expect(r.lost).toEqual([5, 6])
    expect(r.unexpected).toEqual([7])
    expect(r.duplicates.map((d) => d.taskId)).toEqual(['101', '102', '103', '104'])
    expect(r.sameAttempt).toEqual([{ taskId: '104', attempt: 1, runs: 2 }])
    expect(r.overlaps.map((o) => [o.taskId, o.a, o.b]).sort()).toEqual([
      ['101', 'a', 'j'],
      ['103', 'd', 'e'],
    ])
    expect(r.unfinished.map((u) => u.runId).sort()).toEqual(['h', 'j'])

    // Declaring pid 3 dead at 1020 closes its open runs there; 'j' (1005-1020) still overlaps 'a' (1000-1010).
    await markProcessDead(pool, schema, 3, 1020)
    const after = await checkLedger(pool, schema)
    expect(after.unfinished).toEqual([])
    expect(after.overlaps.map((o) => [o.taskId, o.a, o.b]).sort()).toEqual([
      ['101', 'a', 'j'],
      ['103', 'd', 'e'],
    ])
  })

  it('LedgerWriter records starts durably before returning and finishes afterwards', async () => {
    const writer = new LedgerWriter(databaseUrl(), schema)
    try {
      const runs = await Promise.all([1, 2, 3].map((i) => writer.start(String(200 + i), 200 + i, 1)))
      const started = await pool.query(`select count(*)::int as c from "${schema}".ledger where task_id between 201 and 203 and run_finished is null`)
      expect(started.rows[0].c).toBe(3)
      await Promise.all(runs.map((id) => writer.finish(id, 'ok')))
      const done = await pool.query(`select outcome, pid from "${schema}".ledger where task_id between 201 and 203`)
      expect(done.rows).toEqual([1, 2, 3].map(() => ({ outcome: 'ok', pid: process.pid })))
    } finally {
      await writer.close()
    }
  })
})
