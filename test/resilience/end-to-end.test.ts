import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cleanupShared, createShared } from '../support/resilience.ts'
import { checkLedger, checkTaskRows } from '../support/ledger.ts'
import { FAST, Pipeline, allReady, type Child } from './fixtures/pipeline-harness.ts'

/**
 * The delivery promise without faults, at volume: 10,000 tasks enqueued in
 * committed transactions and 10,000 in rolled-back ones, while 3 worker
 * processes, 2 relays and 2 sweepers run. Exactly the committed tasks run,
 * each exactly once (the ledger is written by the handlers themselves, in
 * separate processes, outside taskrelay's tables).
 */
describe('end to end: 10,000 committed and 10,000 rolled-back enqueues, 3 worker processes', () => {
  let p: Pipeline

  beforeAll(async () => {
    p = await createShared('e2e')
  })

  afterAll(async () => {
    await cleanupShared(p)
  })

  it('runs exactly the 10,000 committed tasks, once each, all succeeded', async () => {
    const started = Date.now()
    // Leases far longer than any CPU stall on a shared 2-core box: this test
    // asserts exactly-once runs, which at-least-once delivery only gives
    // while no lease expires.
    const workerSettings = { ...FAST.worker, concurrency: 25, leaseMs: 20_000, heartbeatMs: 2000 }
    const sweeperSettings = { ...FAST.sweeper, intervalMs: 500, dispatchTimeoutMs: 10_000 }
    const services: Child[] = [
      p.spawn('relay', { settings: FAST.relay }),
      p.spawn('relay', { settings: FAST.relay }),
      p.spawn('sweeper', { settings: sweeperSettings }),
      p.spawn('sweeper', { settings: sweeperSettings }),
      p.spawn('worker', { settings: workerSettings }),
      p.spawn('worker', { settings: workerSettings }),
      p.spawn('worker', { settings: workerSettings }),
    ]
    await allReady(services)
    const producer = p.spawn('producer', {
      env: { TR_PRODUCE: JSON.stringify({ commit: 10_000, rollback: 10_000, rate: 0, maxTxSize: 20, msMin: 0, msMax: 3 }) },
    })
    const done = await producer.waitMessage((m) => m.type === 'done', 180_000)
    expect(done).toMatchObject({ committed: 10_000, rolledBack: 10_000, uncertain: 0, errors: 0 })

    const drainMs = await p.waitAllSucceeded(180_000, 10_000)
    // Graceful stop: every process exits 0 and every ledger write is flushed.
    const exits = await Promise.all(services.map((c) => c.terminate()))
    expect(exits.map((e) => e.code)).toEqual(services.map(() => 0))

    const ledger = await checkLedger(p.pool, p.schema)
    const rows = await checkTaskRows(p.pool, p.schema, 'succeeded')
    const byWorker = await p.pool.query<{ pid: number; runs: number }>(`select pid, count(*)::int as runs from "${p.schema}".ledger group by pid`)
    console.info(
      `[e2e] produced ${ledger.produced} (+${done.rolledBack} rolled back) in ${done.seconds}s, all succeeded ${drainMs} ms after the producer finished; ` +
        `runs per worker ${byWorker.rows.map((r) => r.runs).join('/')}; total ${(Date.now() - started) / 1000}s`,
    )

    expect(ledger.produced).toBe(10_000)
    expect(ledger.lost).toEqual([])
    expect(ledger.unexpected).toEqual([])
    expect(ledger.duplicates).toEqual([])
    expect(ledger.sameAttempt).toEqual([])
    expect(ledger.overlaps).toEqual([])
    expect(ledger.unfinished).toEqual([])
    expect(ledger.runs).toBe(10_000)
    expect(rows.rows).toBe(10_000)
    expect(rows.orphanRows).toBe(0)
    expect(rows.notInState).toEqual([])
    expect(rows.overRun).toEqual([])
    // All three worker processes took part.
    expect(byWorker.rows).toHaveLength(3)
    expect(p.unexpectedExits()).toEqual([])
  }, 420_000)
})
