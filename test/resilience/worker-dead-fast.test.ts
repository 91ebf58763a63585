import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitUntil } from '../support/db.ts'
import { cleanupShared, createShared } from '../support/resilience.ts'
import { Pipeline, allReady, expectDelivered } from './fixtures/pipeline-harness.ts'
import { spawnLaneWorker } from './fixtures/lane-harness.ts'

/**
 * Issue 17, "dead workers noticed in seconds": a worker SIGKILLed while it
 * runs 10 handlers. With the shipped defaults (leaseMs 30 s, presenceMs 1 s,
 * lostAfterMs 5 s, sweeper every 2 s, retry after 1 s) its row in workers
 * expires within 5 s, the sweeper retries its attempts without waiting for
 * their 30 s leases, and another worker finishes all 10 within 10 s of the
 * kill (before: lease + sweep, about 36 s). Nothing is passed to the
 * services but what the harness needs (schema, key prefix, URLs).
 */
describe('worker SIGKILLed holding 10 running tasks, default settings', () => {
  let p: Pipeline

  beforeAll(async () => {
    p = await createShared('wdead')
  })

  afterAll(async () => {
    await cleanupShared(p)
  })

  it('another worker finishes all 10 within 10 s of the kill, never two runs at once', async () => {
    const FIRST_ATTEMPT_MS = 20_000
    const services = [p.spawn('relay'), p.spawn('sweeper')]
    // Default concurrency is 10: A holds all ten. Retries (attempt 2) take 50 ms.
    const a = spawnLaneWorker(p, { name: 'workerA', retryMs: 50 })
    await allReady([...services, a])
    const aId = String((await a.ready).workerId)

    const producer = p.spawn('producer', {
      env: { TR_PRODUCE: JSON.stringify({ commit: 10, rollback: 0, maxTxSize: 10, msMin: FIRST_ATTEMPT_MS, msMax: FIRST_ATTEMPT_MS }) },
    })
    await producer.waitMessage((m) => m.type === 'done')
    // All ten handlers run in A (its ledger rows are written before each handler works).
    await waitUntil(
      async () => (await p.pool.query(`select count(*)::int as c from "${p.schema}".ledger where pid = $1 and run_finished is null`, [a.pid])).rows[0].c === 10,
      { what: 'worker A running 10 handlers', timeoutMs: 20_000 },
    )
    // B is up before the kill, with nothing to do: no task is left for it but A's.
    const b = spawnLaneWorker(p, { name: 'workerB', retryMs: 50 })
    const bId = String((await b.ready).workerId)

    const killedAt = await p.killChild(a)
    const held = await p.pool.query<{ id: string; lease: number }>(
      `select id::text, extract(epoch from lease_expires_at) * 1000 as lease from "${p.schema}".tasks where state = 'running' and worker_id = $1`,
      [aId],
    )
    expect(held.rows, 'A held all 10 tasks running when it was killed').toHaveLength(10)
    const ids = held.rows.map((r) => r.id)

    // Past the 30 s leases, so a slow detection fails on the bound below, with its figure.
    await p.waitAllSucceeded(45_000, 10)
    const bRuns = await p.pool.query<{ task_id: string; attempt: number; outcome: string; run_started: number; run_finished: number }>(
      `select task_id::text, attempt, outcome, run_started, run_finished from "${p.schema}".ledger where pid = $1 order by run_finished`,
      [b.pid],
    )
    expect(bRuns.rows.map((r) => r.task_id).sort()).toEqual([...ids].sort())
    expect(bRuns.rows.every((r) => r.attempt === 2 && r.outcome === 'ok')).toBe(true)
    const lastDoneMs = Math.max(...bRuns.rows.map((r) => Number(r.run_finished))) - killedAt
    const firstStartMs = Math.min(...bRuns.rows.map((r) => Number(r.run_started))) - killedAt
    const leaseLeftMs = Math.round(Math.min(...held.rows.map((r) => Number(r.lease))) - killedAt)
    // The product's promise with its defaults (issue 17), not a speed measurement: 36 s before.
    expect(lastDoneMs, `with default settings the 10 tasks of a SIGKILLed worker must be finished elsewhere within 10 s of the kill; took ${lastDoneMs} ms`).toBeLessThanOrEqual(10_000)
    // Retried because A's row expired, not because the 30 s leases did (they had not).
    expect(lastDoneMs).toBeLessThan(leaseLeftMs)

    const rows = await p.pool.query<{ worker_id: string; attempt: number; kind: string; message: string }>(
      `select worker_id, attempt, last_error->>'kind' as kind, last_error->>'message' as message from "${p.schema}".tasks where id = any($1::bigint[])`,
      [ids],
    )
    for (const r of rows.rows) {
      expect(r).toMatchObject({ worker_id: bId, attempt: 2, kind: 'lost_worker' })
      expect(r.message).toContain(aId)
      expect(r.message).toContain('stopped renewing its row')
    }

    const exits = await Promise.all([...services, b].map((c) => c.terminate()))
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0])
    // Nothing lost, no two runs of a task at once; the only second runs are the ten A was running.
    const ledger = await expectDelivered(p, { duplicates: true })
    expect(ledger.duplicates.map((d) => d.taskId).sort()).toEqual([...ids].sort())
    expect(ledger.duplicates.every((d) => d.runs === 2)).toBe(true)
    console.info(
      `[worker-dead-fast] A held 10 running tasks (leases had ${leaseLeftMs} ms left); B started the first retry ${firstStartMs} ms ` +
        `and finished the last ${lastDoneMs} ms after the kill (bound 10,000 ms)`,
    )
  }, 120_000)
})
