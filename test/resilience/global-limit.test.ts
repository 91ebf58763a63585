import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sweeperSettingsSchema, workerSettingsSchema } from '../../src/config/services.ts'
import { waitUntil } from '../support/db.ts'
import { recordProduced } from '../support/ledger.ts'
import { cleanupShared, createShared } from '../support/resilience.ts'
import { workTask } from './fixtures/pipeline-common.ts'
import { Pipeline, allReady, expectDelivered, type Child } from './fixtures/pipeline-harness.ts'

/**
 * Issue 16, a queue's global concurrency across processes: queue Q allows 5
 * tasks at once while 3 worker processes could run 20 each. The ledger
 * (written by the handlers, read only here) must never show more than 5
 * runs at once, and must show 5, so the limit is what binds. A worker is
 * SIGKILLed holding slots: its runs end at the kill in the ledger, the
 * limit still holds, and its slots come back once the sweeper notices the
 * dead worker (its workers row expires after lostAfterMs; one sweep later
 * its tasks go back to pending) — no slot leaks, every task succeeds.
 */

const LIMIT = 5
const TASKS = 800
const WORKERS = 3

interface Run {
  start: number
  end: number
}

/** Overlap of the runs over time: [time, runs going on from then], ends before starts at the same ms. */
function overlapSteps(runs: Run[]): Array<[number, number]> {
  // A run that ends at t and one that starts at t did not overlap: the second's
  // slot was granted only after the first's outcome, which follows its ledger end.
  const events = runs.flatMap((r): Array<[number, number]> => [
    [r.start, 1],
    [r.end, -1],
  ])
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let now = 0
  return events.map(([t, d]) => [t, (now += d)])
}

describe('queue with global concurrency 5, three workers of concurrency 20, one SIGKILLed', () => {
  let p: Pipeline

  beforeAll(async () => {
    p = await createShared('glimit')
  })

  afterAll(async () => {
    await cleanupShared(p)
  })

  it('never runs more than 5 at once, runs 5, and gets the dead worker’s slots back', async () => {
    const queue = `limit.${p.tag}`
    const info = await p.tr.queue(queue).configure({ concurrency: LIMIT })
    expect(info).toMatchObject({ queue, concurrency: LIMIT, paused: false })

    // The shipped defaults decide how soon a dead worker's slots come back: read them, do not restate them.
    const workerDefaults = workerSettingsSchema.parse({})
    const sweeperDefaults = sweeperSettingsSchema.parse({})
    // A message the victim popped but had not claimed yet holds a slot as
    // 'dispatched' until the dispatch timeout (default 30 s): made the same
    // as lostAfterMs, so the bound below covers both ways a slot is held.
    const sweeperSettings = { dispatchTimeoutMs: workerDefaults.lostAfterMs }
    const workerSettings = { concurrency: 20 }
    const services = [p.spawn('relay'), p.spawn('sweeper', { settings: sweeperSettings })]
    const workers: Child[] = Array.from({ length: WORKERS }, (_, i) =>
      p.spawn('worker', { name: `worker${i + 1}`, settings: workerSettings, env: { TR_QUEUE: queue } }),
    )
    await allReady([...services, ...workers])

    // Slots in use as taskrelay counts them (dispatched + running), sampled all along: a second instrument.
    let sampling = true
    let maxSlots = 0
    let samplerError: unknown
    const sampler = (async () => {
      while (sampling) {
        const r = await p.pool.query<{ c: number }>(
          `select count(*)::int as c from "${p.schema}".tasks where queue = $1 and state in ('dispatched', 'running')`,
          [queue],
        )
        maxSlots = Math.max(maxSlots, r.rows[0]!.c)
        await new Promise((r) => setTimeout(r, 20))
      }
    })().catch((err: unknown) => (samplerError = err)) // a failed test ends the pool under it

    // All tasks in one transaction, with the ledger's record of what was produced.
    const task = workTask(null)
    const client = await p.pool.connect()
    try {
      await client.query('begin')
      const items = Array.from({ length: TASKS }, (_, i) => ({ n: i + 1, ms: 50 + Math.floor(Math.random() * 51) }))
      const { ids } = await p.tr.enqueueMany(client, items.map((payload) => ({ task, payload, options: { queue } })))
      await recordProduced(client, p.schema, items.map((it, i) => ({ n: it.n, taskId: ids[i]! })))
      await client.query('commit')
    } finally {
      client.release()
    }
    const enqueuedAt = Date.now()

    // Kill a worker once the queue is busy and it runs at least 2 handlers (it holds slots),
    // one started within 20 ms: at least 30 ms of it are left, so the kill lands mid-run.
    const victim = workers[0]!
    const victimId = String((await victim.ready).workerId)
    await waitUntil(
      async () => {
        p.assertNoUnexpectedExit()
        const r = await p.pool.query<{ done: number; mine: number; fresh: number }>(
          `select count(*) filter (where outcome = 'ok')::int as done,
                  count(*) filter (where pid = $1 and run_finished is null)::int as mine,
                  count(*) filter (where pid = $1 and run_finished is null and run_started > $2)::int as fresh
             from "${p.schema}".ledger`,
          [victim.pid, Date.now() - 20],
        )
        return r.rows[0]!.done >= 60 && r.rows[0]!.mine >= 2 && r.rows[0]!.fresh >= 1
      },
      { what: `${victim.name} running 2 handlers after 60 runs`, timeoutMs: 30_000, intervalMs: 5 },
    )
    const killedAt = await p.killChild(victim)
    const held = await p.pool.query<{ id: string }>(
      `select id::text from "${p.schema}".tasks where queue = $1 and state = 'running' and worker_id = $2`,
      [queue, victimId],
    )
    const killedRuns = await p.pool.query<{ task_id: string }>(`select task_id::text from "${p.schema}".ledger where outcome = 'killed'`)
    const killedIds = killedRuns.rows.map((r) => r.task_id).sort()
    // One held slot is enough to measure (another run may have ended between the check and the kill).
    expect(killedIds.length).toBeGreaterThanOrEqual(1)
    // Every handler it was running held a slot it still owned at its death.
    expect(held.rows.map((r) => r.id)).toEqual(expect.arrayContaining(killedIds))

    await p.waitAllSucceeded(90_000, TASKS)
    const allDoneMs = Date.now() - enqueuedAt
    sampling = false
    await sampler
    const exits = await Promise.all([...services, ...workers.slice(1)].map((c) => c.terminate()))
    expect(exits.map((e) => e.code)).toEqual(services.concat(workers.slice(1)).map(() => 0))

    // The ledger: every run as [start, end]; the victim's unfinished ones end at the kill (killChild).
    const ledger = await p.pool.query<{ run_started: number; run_finished: number }>(
      `select run_started, run_finished from "${p.schema}".ledger`,
    )
    const runs: Run[] = ledger.rows.map((r) => ({ start: Number(r.run_started), end: Number(r.run_finished) }))
    const steps = overlapSteps(runs)
    const maxOverlap = Math.max(...steps.map(([, c]) => c))
    const fullBeforeKill = steps.some(([t, c]) => t < killedAt && c === LIMIT)
    // When the queue ran LIMIT handlers again after the kill: the dead worker's slots had come back.
    const fullAgain = steps.find(([t, c]) => t > killedAt && c === LIMIT)?.[0]
    const lastStart = Math.max(...runs.map((r) => r.start))

    // When the sweeper took the dead worker's tasks back (taskrelay's own record, for the breakdown).
    const reclaimed = await p.pool.query<{ at: number | null; n: number }>(
      `select min(extract(epoch from (last_error->>'at')::timestamptz) * 1000)::float8 as at, count(*)::int as n
         from "${p.schema}".tasks where id = any($1::bigint[]) and last_error->>'kind' = 'lost_worker'`,
      [held.rows.map((r) => r.id)],
    )
    const reclaimedMs = reclaimed.rows[0]!.at === null ? null : Math.round(Number(reclaimed.rows[0]!.at) - killedAt)
    const slotReturnMs = fullAgain === undefined ? null : fullAgain - killedAt
    // Lost-worker window + one sweep, and 1 s for the relay to dispatch and a worker to claim.
    const boundMs = workerDefaults.lostAfterMs + sweeperDefaults.intervalMs + 1000
    console.info(
      `[global-limit] ${TASKS} tasks done ${allDoneMs} ms after the enqueue; ` +
        `max overlap in the ledger ${maxOverlap} (limit ${LIMIT}), max slots sampled in Postgres ${maxSlots}; ` +
        `${victim.name} killed holding ${held.rows.length} slots (${killedIds.length} in handlers); ` +
        `its tasks reclaimed ${reclaimedMs} ms and the queue ran ${LIMIT} again ${slotReturnMs} ms after the kill ` +
        `(bound ${boundMs} ms = lostAfterMs ${workerDefaults.lostAfterMs} + sweep ${sweeperDefaults.intervalMs} + 1000)`,
    )

    expect(maxOverlap, `more than ${LIMIT} handlers ran at once; logs in ${p.logDir}`).toBeLessThanOrEqual(LIMIT)
    expect(maxSlots, 'dispatched + running rows of the queue above its limit').toBeLessThanOrEqual(LIMIT)
    expect(fullBeforeKill, `the queue never ran ${LIMIT} at once: the limit did not bind`).toBe(true)
    // The figure is only meaningful while tasks were left to start when the slots came back.
    expect(fullAgain, `the queue never ran ${LIMIT} again after the kill (last start ${lastStart - killedAt} ms after it)`).toBeDefined()
    expect(slotReturnMs!).toBeLessThanOrEqual(boundMs)
    expect(reclaimed.rows[0]!.n, 'the dead worker’s tasks reclaimed as lost_worker').toBe(held.rows.length)
    // Until the reclaim its rows still held slots: 5 live runs before it would have meant 5 + k slots.
    expect(slotReturnMs!).toBeGreaterThanOrEqual(reclaimedMs!)
    expect(samplerError).toBeUndefined()

    // Nothing lost; the only second runs are of tasks the victim held: every
    // one it was running, and any whose handler had returned but whose
    // outcome was still in its group commit (not yet written) at the kill.
    const report = await expectDelivered(p, { duplicates: true })
    const twice = report.duplicates.map((d) => d.taskId).sort()
    expect(twice).toEqual(expect.arrayContaining(killedIds))
    expect(held.rows.map((r) => r.id)).toEqual(expect.arrayContaining(twice))
    expect(report.duplicates.every((d) => d.runs === 2)).toBe(true)
  }, 150_000)
})
