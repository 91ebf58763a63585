import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { setTimeout as sleep } from 'node:timers/promises'
import { redisUrl, waitUntil } from '../support/db.ts'
import { cleanupShared, createShared, sweptCount } from '../support/resilience.ts'
import { checkLedger } from '../support/ledger.ts'
import { Pipeline, allReady, expectDelivered, type Child } from './fixtures/pipeline-harness.ts'
import { PrivatePostgres, laneSwitches, spawnLaneWorker } from './fixtures/lane-harness.ts'

/**
 * Issue 17, "Postgres restarted while both lanes are active": one worker on
 * lane "postgres" (claims straight from Postgres) and one on lane "auto"
 * with a relay and Redis up (claims messages from Redis), both busy, while
 * the Postgres server restarts twice: `pg_ctl restart -m fast` (clean
 * shutdown) and `-m immediate` (no checkpoint, crash recovery at start).
 * Every connection of every process dies each time, claims and finishes in
 * flight lose their replies. Nothing is lost, nothing runs concurrently.
 *
 * A private cluster (initdb on a free port): the suite's shared Postgres
 * serves other test files and is never restarted.
 */
describe('Postgres restarted while both lanes claim', () => {
  let server: PrivatePostgres
  let p: Pipeline

  beforeAll(async () => {
    server = await PrivatePostgres.start()
    p = await Pipeline.create({ databaseUrl: server.url, redisUrl: redisUrl(), label: 'pgrestart' })
  })

  afterAll(async () => {
    await p?.cleanup({ sharedRedisUrl: redisUrl() })
    // TR_RES_KEEP (as for the harness's schemas): leave the cluster running for a post-mortem.
    if (process.env.TR_RES_KEEP) console.info(`[postgres-restart] cluster kept: ${server?.url} (data in ${server?.dir})`)
    else await server?.stop()
  })

  it('loses nothing and runs nothing twice at once through a fast and an immediate restart', async () => {
    const started = Date.now()
    // A relay dispatches every row it can, faster than a worker on lane "postgres" (woken by NOTIFY,
    // which enqueues skip while a relay lingers, or by its 1 s poll) claims them: with defaults the
    // postgres lane ran 23 of 11,876 tasks here. A small Redis backlog and a Redis-lane worker
    // slower than the producer leave pending rows to the Postgres lane, so both lanes claim.
    const services: Child[] = [p.spawn('relay', { settings: { maxBacklogPerQueue: 30 } }), p.spawn('sweeper')]
    const pgLane = spawnLaneWorker(p, { name: 'worker-postgres-lane', settings: { lane: 'postgres' } })
    const redisLane = spawnLaneWorker(p, { name: 'worker-auto-lane', settings: { lane: 'auto', concurrency: 2 } })
    const workers = [pgLane, redisLane]
    await allReady([...services, ...workers])
    const producer = p.spawn('producer', {
      env: { TR_PRODUCE: JSON.stringify({ commit: 1_000_000, rollback: 100_000, rate: 220, maxTxSize: 5, msMin: 5, msMax: 40 }) },
    })
    const okRuns = async (w: Child, since: number) =>
      (await p.pool.query<{ c: number }>(`select count(*)::int as c from "${p.schema}".ledger where pid = $1 and outcome = 'ok' and run_started >= $2`, [w.pid, since]))
        .rows[0]!.c
    const bothComplete = (since: number, count: number, what: string) =>
      waitUntil(async () => (await okRuns(pgLane, since)) >= count && (await okRuns(redisLane, since)) >= count, { what, timeoutMs: 60_000 })
    // Both lanes carry work: each worker completes tasks.
    await bothComplete(0, 200, 'both workers completing tasks')
    expect(laneSwitches(pgLane).map((s) => s.lane)).toEqual(['postgres'])
    expect(laneSwitches(redisLane).map((s) => s.lane)).toEqual(['redis'])

    const restarts: Array<{ mode: string; at: number; back: number; resumedMs: number }> = []
    for (const mode of ['fast', 'immediate'] as const) {
      const at = Date.now()
      await server.restart(mode)
      const back = Date.now()
      // Both lanes recover by themselves: each worker completes tasks started after the restart.
      await bothComplete(back, 50, `both workers completing tasks after the ${mode} restart`)
      restarts.push({ mode, at, back, resumedMs: Date.now() - back })
    }

    expect((await producer.terminate()).code).toBe(0)
    // Past the default 30 s lease: an outcome undone by the crash is retried once its lease expires.
    await p.waitAllSucceeded(90_000)
    const running = [...services, ...workers]
    const exits = await Promise.all(running.map((c) => c.terminate()))
    expect(exits.map((e) => e.code)).toEqual(running.map(() => 0))
    // The auto worker stayed on Redis: Redis never went away.
    expect(laneSwitches(redisLane).map((s) => s.lane)).toEqual(['redis'])

    // Outcomes are written with synchronous_commit=off: the crash (immediate) may undo the last
    // ~0.2 s of them, and those tasks run again (README, durableTransitions). The only tasks
    // allowed a second run are those whose first run ended just before that crash.
    const crash = restarts.find((r) => r.mode === 'immediate')!
    const report = await checkLedger(p.pool, p.schema)
    const rerun = report.duplicates.map((d) => d.taskId)
    const unexplained = await p.pool.query<{ task_id: string }>(
      `select task_id::text from "${p.schema}".ledger where task_id = any($1::bigint[]) group by task_id
        having min(run_finished) filter (where outcome = 'ok') not between $2 and $3`,
      [rerun, crash.at - 1000, crash.back],
    )
    const done = [...producer.messages].reverse().find((m) => m.type === 'progress')!
    const perLane = await Promise.all(workers.map((w) => okRuns(w, 0)))
    const errors = running.flatMap((c) => c.events('service:error')).length
    console.info(
      `[postgres-restart] ${report.produced} tasks (postgres lane ${perLane[0]}, redis lane ${perLane[1]}); ` +
        `restarts ${restarts.map((r) => `${r.mode} ${r.back - r.at} ms, both lanes completing again ${r.resumedMs} ms later`).join('; ')}; ` +
        `tasks run twice ${rerun.length} (same attempt twice: ${report.sameAttempt.map((d) => d.taskId).join(', ') || 'none'}); producer transactions failed ${done.errors} ` +
        `(uncertain commits ${done.uncertain}); service loop errors ${errors}; sweeper re-dispatched ${sweptCount(services)}; ${(Date.now() - started) / 1000}s`,
    )
    expect(unexplained.rows, 'tasks run twice whose first run did not end just before the crash').toEqual([])
    // 0 lost, 0 overlapping runs, every run its own claim (no attempt run twice).
    await expectDelivered(p, { duplicates: true })
  }, 180_000)
})

/**
 * The state a Postgres crash leaves when it undoes an outcome written with
 * synchronous_commit=off: the worker recorded its attempt's success and
 * forgot it, the row is back to running, same attempt, same worker. The
 * task must run again under a new attempt (every run its own fenced claim),
 * not be adopted by the worker's Postgres lane as a claim whose reply was
 * lost and run again under the attempt that already ran. Reproduced from
 * the rows, as the real crash above does only when it lands in that window.
 */
describe('an outcome undone by a Postgres crash, Postgres lane', () => {
  let p: Pipeline

  beforeAll(async () => {
    p = await createShared('pgundo')
  })

  afterAll(async () => {
    await cleanupShared(p)
  })

  it('runs the task again under a new attempt, not the one that already ran', async () => {
    const sweeper = p.spawn('sweeper', { settings: { intervalMs: 250 } })
    const worker = spawnLaneWorker(p, { name: 'worker-postgres-lane', settings: { lane: 'postgres', leaseMs: 3000, heartbeatMs: 500 } })
    await allReady([sweeper, worker])
    const workerId = String((await worker.ready).workerId)
    const producer = p.spawn('producer', { env: { TR_PRODUCE: JSON.stringify({ commit: 1, rollback: 0, maxTxSize: 1, msMin: 10, msMax: 10 }) } })
    await producer.waitMessage((m) => m.type === 'done')
    await p.waitAllSucceeded(20_000, 1)
    const id = (await p.pool.query<{ id: string }>(`select id::text from "${p.schema}".tasks`)).rows[0]!.id
    // The worker forgets the attempt right after its outcome committed (the completer's callback).
    await sleep(500)

    // What the crash leaves: the outcome's transaction is gone, the claim (a synchronous commit) stays.
    const undone = await p.pool.query(
      `update "${p.schema}".tasks set state = 'running', result = null, finished_at = null,
              lease_expires_at = now() + interval '3 seconds'
        where id = $1 and worker_id = $2 and attempt = 1 and state = 'succeeded'`,
      [id, workerId],
    )
    expect(undone.rowCount).toBe(1)

    await p.waitAllSucceeded(20_000, 1)
    await Promise.all([sweeper, worker].map((c) => c.terminate()))
    const runs = await p.pool.query<{ attempt: number; pid: number }>(`select attempt, pid from "${p.schema}".ledger order by run_started`)
    const row = await p.pool.query<{ attempt: number; state: string }>(`select attempt, state from "${p.schema}".tasks where id = $1`, [id])
    console.info(`[pg-outcome-undone] runs (attempt, pid): ${runs.rows.map((r) => `(${r.attempt}, ${r.pid})`).join(' ')}; row ${JSON.stringify(row.rows[0])}`)
    expect(runs.rows.length, 'the task ran again: the worker did not know its outcome was undone').toBe(2)
    // Every run its own claim: no (task, attempt) ran twice, runs <= attempt.
    await expectDelivered(p, { duplicates: true })
  }, 60_000)
})
