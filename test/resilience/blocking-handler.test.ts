import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitUntil } from '../support/db.ts'
import { cleanupShared, createShared } from '../support/resilience.ts'
import { FAST, Pipeline, allReady, expectDelivered } from './fixtures/pipeline-harness.ts'

/**
 * Issue 12, defect 2: a handler that blocks the event loop (synchronous code)
 * for longer than a lease. Heartbeats are timers on that same loop, so before
 * the lease guard the lease expired while the code still ran, the sweeper
 * handed the task to the other worker, and the runs overlapped (5 runs of
 * one task were seen, ending failed). Real worker processes, a real sweeper.
 */
describe('a handler that blocks the event loop past its lease', () => {
  let p: Pipeline

  beforeAll(async () => {
    p = await createShared('block')
  })

  afterAll(async () => {
    await cleanupShared(p)
  })

  it('runs once, never concurrently, and succeeds', async () => {
    const leaseMs = 2000
    // More than three leases of synchronous work: no heartbeat timer can fire meanwhile.
    const taskMs = 7000
    const workerSettings = { ...FAST.worker, concurrency: 2, prefetch: 0, leaseMs, heartbeatMs: 500 }
    const sweeperSettings = { ...FAST.sweeper, intervalMs: 200, lostWorkerRetryDelayMs: 0 }
    const spin = { TR_SPIN: '1' }
    const children = [
      p.spawn('relay', { settings: FAST.relay }),
      p.spawn('sweeper', { settings: sweeperSettings }),
      p.spawn('worker', { name: 'workerA', settings: workerSettings, env: spin }),
      p.spawn('worker', { name: 'workerB', settings: workerSettings, env: spin }),
    ]
    await allReady(children)
    const producer = p.spawn('producer', { env: { TR_PRODUCE: JSON.stringify({ commit: 2, rollback: 0, maxTxSize: 1, msMin: taskMs, msMax: taskMs }) } })
    await producer.waitMessage((m) => m.type === 'done')
    // Until both finished, or a task ran a second time (what happened before the guard).
    await waitUntil(
      async () => {
        const done = await p.pool.query(`select count(*)::int as c from "${p.schema}".tasks where state in ('succeeded', 'failed')`)
        const runs = await p.pool.query(`select count(*)::int as c from "${p.schema}".ledger`)
        return done.rows[0].c === 2 || runs.rows[0].c > 2
      },
      { what: 'both tasks finished', timeoutMs: 45_000, intervalMs: 200 },
    )
    expect((await p.pool.query(`select count(*)::int as c from "${p.schema}".ledger`)).rows[0].c).toBe(2)
    const rows = await p.pool.query(`select state, attempt from "${p.schema}".tasks order by id`)
    expect(rows.rows).toEqual([
      { state: 'succeeded', attempt: 1 },
      { state: 'succeeded', attempt: 1 },
    ])
    // One run per task, none overlapping, nothing lost.
    const ledger = await expectDelivered(p, { duplicates: false })
    expect(ledger.runs).toBe(2)
  }, 90_000)
})
