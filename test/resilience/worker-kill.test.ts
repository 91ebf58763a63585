import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { databaseUrl, waitUntil } from '../support/db.ts'
import { cleanupShared, createShared } from '../support/resilience.ts'
import { checkLedger, checkTaskRows } from '../support/ledger.ts'
import { FAST, PartitionProxy, Pipeline, allReady, expectDelivered } from './fixtures/pipeline-harness.ts'

/**
 * A worker process is SIGKILLed while its handlers run. Its attempts are not
 * lost and not run concurrently: another worker, alive the whole time, takes
 * them only after their leases expired (the sweeper marks them lost_worker
 * and retries them), and the rows show the extra attempt.
 */
describe('worker SIGKILL mid-task', () => {
  let p: Pipeline

  beforeAll(async () => {
    p = await createShared('wkill')
  })

  afterAll(async () => {
    await cleanupShared(p)
  })

  it('another worker finishes the in-flight tasks after the lease expires; attempt 2, lost_worker error', async () => {
    const leaseMs = 2000
    // Handlers run twice as long as a lease: only heartbeats keep them owned.
    const taskMs = 2 * leaseMs
    const workerSettings = { ...FAST.worker, concurrency: 4, prefetch: 2, leaseMs, heartbeatMs: 400 }
    // The lost-worker retry waits 1.5 s, so the test sees the row between reclaim and retry.
    const sweeperSettings = { ...FAST.sweeper, intervalMs: 200, lostWorkerRetryDelayMs: 1500 }
    const services = [
      p.spawn('relay', { settings: FAST.relay }),
      p.spawn('sweeper', { settings: sweeperSettings }),
      p.spawn('sweeper', { settings: sweeperSettings }),
    ]
    const a = p.spawn('worker', { name: 'workerA', settings: workerSettings })
    await allReady([...services, a])
    const aId = String((await a.ready).workerId)

    const producer = p.spawn('producer', { env: { TR_PRODUCE: JSON.stringify({ commit: 12, rollback: 0, maxTxSize: 12, msMin: taskMs, msMax: taskMs }) } })
    await producer.waitMessage((m) => m.type === 'done')

    // A is busy: all of its slots run handlers (recorded in the ledger by A's pid).
    await waitUntil(
      async () => (await p.pool.query(`select count(*)::int as c from "${p.schema}".ledger where pid = $1 and run_finished is null`, [a.pid])).rows[0].c >= 4,
      { what: 'worker A running 4 handlers', timeoutMs: 15_000 },
    )
    // B is alive before A dies: it must still not touch A's attempts before their leases expire.
    // Its handlers outlast its own lease too (3 s), so only heartbeats keep them owned; the
    // longer lease leaves 2.6 s, not 1.6 s, before a stalled heartbeat makes B give up (a
    // loaded machine did that once to the bystander of the partition test below).
    const b = p.spawn('worker', { name: 'workerB', settings: { ...workerSettings, leaseMs: 3000 } })
    await b.ready
    const bId = String((await b.ready).workerId)

    const killedAt = await p.killChild(a)
    const owned = await p.pool.query<{ id: string; attempt: number; lease: number }>(
      `select id::text, attempt, extract(epoch from lease_expires_at) * 1000 as lease
         from "${p.schema}".tasks where state = 'running' and worker_id = $1 order by id`,
      [aId],
    )
    const orphaned = owned.rows
    const inHandler = await p.pool.query<{ task_id: string }>(
      `select task_id::text from "${p.schema}".ledger where pid = $1 and outcome = 'killed'`,
      [a.pid],
    )
    const killedRuns = inHandler.rows.map((r) => r.task_id).sort()
    expect(killedRuns.length).toBeGreaterThanOrEqual(4)
    // Every handler A was running is among the attempts A still owned when it died.
    expect(orphaned.map((r) => r.id)).toEqual(expect.arrayContaining(killedRuns))
    expect(orphaned.every((r) => r.attempt === 1)).toBe(true)

    // Seen in retry: back to pending (not running), attempt 1 used, lost_worker error naming worker A.
    const seenLost = new Map<string, { message: string; seenAt: number }>()
    await waitUntil(
      async () => {
        const res = await p.pool.query<{ id: string; state: string; attempt: number; kind: string; message: string }>(
          `select id::text, state, attempt, last_error->>'kind' as kind, last_error->>'message' as message
             from "${p.schema}".tasks where id = any($1::bigint[])`,
          [orphaned.map((r) => r.id)],
        )
        for (const r of res.rows) {
          if (!seenLost.has(r.id) && r.kind === 'lost_worker' && r.attempt === 1 && (r.state === 'pending' || r.state === 'dispatched')) {
            seenLost.set(r.id, { message: r.message, seenAt: Date.now() })
          }
        }
        return seenLost.size === orphaned.length
      },
      { what: 'the orphaned attempts to be reclaimed as lost_worker', timeoutMs: 20_000, intervalMs: 20 },
    )
    for (const { message } of seenLost.values()) expect(message).toContain(aId)

    await p.waitAllSucceeded(30_000, 12)
    await Promise.all([...services, b].map((c) => c.terminate()))

    const final = await p.pool.query<{ id: string; attempt: number; worker_id: string; kind: string; state: string }>(
      `select id::text, attempt, worker_id, state, last_error->>'kind' as kind from "${p.schema}".tasks where id = any($1::bigint[]) order by id`,
      [orphaned.map((r) => r.id)],
    )
    for (const row of final.rows) {
      expect(row).toMatchObject({ state: 'succeeded', attempt: 2, worker_id: bId, kind: 'lost_worker' })
    }
    // Tasks A never held ran once, on attempt 1, despite handlers longer than the lease.
    const others = await p.pool.query<{ attempt: number; c: number }>(
      `select attempt, count(*)::int as c from "${p.schema}".tasks where not (id = any($1::bigint[])) group by attempt`,
      [orphaned.map((r) => r.id)],
    )
    expect(others.rows).toEqual([{ attempt: 1, c: 12 - orphaned.length }])

    // B's runs of the orphaned tasks began only after A's leases had expired.
    const leaseById = new Map(orphaned.map((r) => [r.id, Number(r.lease)]))
    const bRuns = await p.pool.query<{ task_id: string; run_started: number; attempt: number }>(
      `select task_id::text, run_started, attempt from "${p.schema}".ledger where pid = $1 and task_id = any($2::bigint[])`,
      [b.pid, orphaned.map((r) => r.id)],
    )
    expect(bRuns.rows.map((r) => r.task_id).sort()).toEqual(orphaned.map((r) => r.id).sort())
    for (const run of bRuns.rows) {
      expect(run.attempt).toBe(2)
      expect(run.run_started).toBeGreaterThan(leaseById.get(run.task_id)!)
    }

    const ledger = await checkLedger(p.pool, p.schema)
    expect(ledger.lost).toEqual([])
    expect(ledger.overlaps).toEqual([])
    expect(ledger.sameAttempt).toEqual([])
    expect(ledger.unfinished).toEqual([])
    // The only tasks that ran twice are those whose handler A was running when it died.
    expect(ledger.duplicates.map((d) => d.taskId).sort()).toEqual(killedRuns)
    const rows = await checkTaskRows(p.pool, p.schema)
    expect(rows.notInState).toEqual([])
    expect(rows.overRun).toEqual([])
    expect(p.unexpectedExits()).toEqual([])
    const firstRetry = Math.min(...bRuns.rows.map((r) => r.run_started))
    console.info(
      `[worker-kill] A held ${orphaned.length} attempts (${killedRuns.length} in handlers); leases expired ${Math.max(...leaseById.values()) - killedAt} ms after the kill; ` +
        `B started the first retry ${firstRetry - killedAt} ms after the kill`,
    )
  }, 120_000)
})

/**
 * A worker cut off from Postgres (a partition: its queries hang, nothing
 * fails, nothing closes) while its handlers run. It cannot renew its
 * leases, so the sweeper hands the tasks to another worker once they
 * expire: the cut-off worker must stop its handlers (ctx.signal) before its
 * leases run out, or two runs of one task overlap. After the partition
 * heals it goes on working by itself.
 */
describe('worker partitioned from Postgres mid-task', () => {
  let p: Pipeline
  let proxy: PartitionProxy

  beforeAll(async () => {
    p = await createShared('wpart')
    proxy = await PartitionProxy.start(databaseUrl())
  })

  afterAll(async () => {
    proxy?.heal()
    await cleanupShared(p)
    await proxy?.close()
  })

  it('stops its handlers before its leases expire; another worker runs them, never at the same time', async () => {
    const leaseMs = 2000
    const workerSettings = { ...FAST.worker, concurrency: 4, prefetch: 0, leaseMs, heartbeatMs: 400 }
    const sweeperSettings = { ...FAST.sweeper, intervalMs: 200, lostWorkerRetryDelayMs: 0 }
    const services = [
      p.spawn('relay', { settings: FAST.relay }),
      p.spawn('sweeper', { settings: sweeperSettings }),
      p.spawn('sweeper', { settings: sweeperSettings }),
    ]
    // A reaches Postgres through the proxy; its ledger writes go straight to Postgres.
    const a = p.spawn('worker', { name: 'workerA', settings: workerSettings, databaseUrl: proxy.url(databaseUrl()) })
    await allReady([...services, a])
    const aId = String((await a.ready).workerId)

    const producer = p.spawn('producer', { env: { TR_PRODUCE: JSON.stringify({ commit: 4, rollback: 0, maxTxSize: 4, msMin: 6000, msMax: 6000 }) } })
    await producer.waitMessage((m) => m.type === 'done')
    await waitUntil(
      async () => (await p.pool.query(`select count(*)::int as c from "${p.schema}".ledger where pid = $1 and run_finished is null`, [a.pid])).rows[0].c === 4,
      { what: 'worker A running 4 handlers', timeoutMs: 15_000 },
    )
    // B is not under test here: a long lease, so a loaded machine that delays its
    // heartbeats past 1.6 s cannot make it give up these attempts (attempt 3).
    const b = p.spawn('worker', { name: 'workerB', settings: { ...workerSettings, leaseMs: 10_000, heartbeatMs: 1000 } })
    await b.ready

    proxy.partition()
    const partitionedAt = Date.now()
    // The leases A holds (no heartbeat of A can land any more).
    const held = await p.pool.query<{ id: string; lease: number }>(
      `select id::text, extract(epoch from lease_expires_at) * 1000 as lease from "${p.schema}".tasks where state = 'running' and worker_id = $1`,
      [aId],
    )
    expect(held.rows).toHaveLength(4)

    await p.waitAllSucceeded(30_000, 4)
    const healedAt = Date.now()
    proxy.heal()

    // A stopped every handler before the lease it held expired.
    const aRuns = await p.pool.query<{ task_id: string; run_finished: number; outcome: string }>(
      `select task_id::text, run_finished, outcome from "${p.schema}".ledger where pid = $1`,
      [a.pid],
    )
    const leaseOf = new Map(held.rows.map((r) => [r.id, Number(r.lease)]))
    expect(aRuns.rows.map((r) => r.outcome)).toEqual(['aborted', 'aborted', 'aborted', 'aborted'])
    for (const r of aRuns.rows) expect(Number(r.run_finished)).toBeLessThan(leaseOf.get(r.task_id)!)
    const rows = await p.pool.query<{ attempt: number; worker_id: string; kind: string }>(
      `select attempt, worker_id, last_error->>'kind' as kind from "${p.schema}".tasks`,
    )
    expect(rows.rows.map((r) => [r.attempt, r.kind])).toEqual(rows.rows.map(() => [2, 'lost_worker']))

    // Healed, A works again by itself.
    const more = p.spawn('producer', { env: { TR_PRODUCE: JSON.stringify({ commit: 40, rollback: 0, startN: 1000, maxTxSize: 5, msMin: 100, msMax: 200 }) } })
    await more.waitMessage((m) => m.type === 'done')
    await p.waitAllSucceeded(30_000, 44)
    const aAfter = await p.pool.query<{ c: number }>(
      `select count(*)::int as c from "${p.schema}".ledger where pid = $1 and outcome = 'ok' and run_started > $2`,
      [a.pid, healedAt],
    )
    expect(aAfter.rows[0]!.c).toBeGreaterThan(0)
    const exits = await Promise.all([...services, a, b].map((c) => c.terminate()))
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0, 0, 0])
    // Every task ran to success; the only second runs are the four A gave up.
    const ledger = await expectDelivered(p, { duplicates: true })
    expect(ledger.duplicates).toHaveLength(4)
    console.info(
      `[worker-partition] A stopped its handlers ${Math.max(...aRuns.rows.map((r) => Number(r.run_finished))) - partitionedAt} ms after the partition ` +
        `(leases expired ${Math.min(...leaseOf.values()) - partitionedAt} ms after it); A completed ${aAfter.rows[0]!.c} tasks after the heal`,
    )
  }, 120_000)
})
