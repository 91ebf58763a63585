import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Redis } from 'ioredis'
import { databaseUrl, waitUntil } from '../support/db.ts'
import { startSentinelSet, stopServers, currentPrimaryPort, redisCommand, type SentinelSet } from '../support/redis-servers.ts'
import { FAST, Pipeline, allReady, expectDelivered } from './fixtures/pipeline-harness.ts'

/**
 * Broker failover: a Redis primary, one replica and three sentinels of the
 * test's own; every process reaches Redis through
 * redis+sentinel://s1,s2,s3/mymaster. A producer enqueues at a steady rate;
 * the primary is SIGKILLed mid-stream. Sentinel promotes the replica (writes
 * not yet replicated are lost with the primary): zero tasks lost, no two runs
 * of one task at once, and completions resume within seconds of the
 * promotion, without restarting any process. The replica is made to lag at
 * the moment of death, so pushes are really lost and pops really undone.
 */
describe('Sentinel failover: primary SIGKILLed mid-stream', () => {
  let p: Pipeline
  let set: SentinelSet
  let watcher: Redis

  beforeAll(async () => {
    set = await startSentinelSet({ replicas: 1, sentinels: 3, downAfterMs: 1000, failoverTimeoutMs: 3000 })
    p = await Pipeline.create({ databaseUrl: databaseUrl(), redisUrl: set.url, label: 'failover' })
  }, 90_000)

  afterAll(async () => {
    watcher?.disconnect()
    await p?.cleanup()
    if (set) await set.stop()
  })

  it('loses nothing, never runs a task twice at once, and resumes within seconds of the promotion', async () => {
    const started = Date.now()
    const worker = { ...FAST.worker, concurrency: 10, leaseMs: 6000, heartbeatMs: 500 }
    // The sweeper's dispatch timeout is longer than the whole outage: what
    // the failover loses must be re-dispatched by the relays themselves
    // (their failover window), not by the sweeper's timeout.
    // The window is the replication lag to cover (1.5 s: generous on
    // loopback), counted back from the moment the primary was lost, not
    // from the reconnect seconds later.
    const sweeper = { ...FAST.sweeper, dispatchTimeoutMs: 20_000 }
    const relay = { ...FAST.relay, failoverWindowMs: 1500 }
    const services = [
      p.spawn('relay', { settings: relay }),
      p.spawn('relay', { settings: relay }),
      p.spawn('sweeper', { settings: sweeper }),
      p.spawn('sweeper', { settings: sweeper }),
      p.spawn('worker', { settings: worker }),
      p.spawn('worker', { settings: worker }),
    ]
    await allReady(services)

    // The promotion, as the sentinels announce it.
    let switchedAt = 0
    let switchMessage = ''
    watcher = new Redis({ host: '127.0.0.1', port: set.sentinels[0]!.port, maxRetriesPerRequest: 1 })
    watcher.on('error', () => {})
    watcher.on('message', (channel, message) => {
      if (channel === '+switch-master' && !switchedAt) {
        switchedAt = Date.now()
        switchMessage = message
      }
    })
    await watcher.subscribe('+switch-master')

    const producer = p.spawn('producer', {
      env: { TR_PRODUCE: JSON.stringify({ commit: 3000, rollback: 300, rate: 200, maxTxSize: 5, msMin: 2, msMax: 20 }) },
    })
    // Mid-stream: production and completions are flowing through the primary.
    await waitUntil(async () => (await p.completedRuns()) >= 800, { what: '800 completions before the kill', timeoutMs: 60_000 })
    // Replication lag at the moment of death: the replica stops acknowledging
    // (SIGSTOP) until the primary holds writes it never got (pushes of the
    // relays, pops of the workers). Those pushes die with the primary and
    // those pops come back to life on the promoted replica.
    const oldPrimary = set.primary.port
    const replica = set.replicas[0]!
    replica.pause()
    const unreplicated = await waitUntil(
      async () => {
        const info = String(await redisCommand(oldPrimary, ['INFO', 'replication']))
        const master = Number(/master_repl_offset:(\d+)/.exec(info)?.[1] ?? 0)
        const acked = Number(/slave0:.*offset=(\d+)/.exec(info)?.[1] ?? master)
        return master - acked > 2000 ? master - acked : false
      },
      { what: 'writes on the primary that the replica has not acknowledged', timeoutMs: 5000, intervalMs: 10 },
    )
    const killedAt = Date.now()
    await stopServers([set.primary])
    replica.resume()

    await waitUntil(() => switchedAt > 0, { what: '+switch-master from the sentinels', timeoutMs: 30_000 })
    expect(switchMessage).toContain(String(set.replicas[0]!.port))
    expect(await currentPrimaryPort(set)).toBe(set.replicas[0]!.port)
    expect(oldPrimary).not.toBe(set.replicas[0]!.port)
    const maxIdAtSwitch = Number((await p.pool.query(`select coalesce(max(id), 0) as m from "${p.schema}".tasks`)).rows[0].m)

    // Liveness: a task enqueued after the promotion completes through the new primary.
    const firstNew = await waitUntil(
      async () => {
        const res = await p.pool.query<{ fin: number }>(
          `select min(run_finished) as fin from "${p.schema}".ledger where outcome = 'ok' and task_id > $1`,
          [maxIdAtSwitch],
        )
        return res.rows[0]!.fin ? Number(res.rows[0]!.fin) : false
      },
      { what: 'the first completion of a task enqueued after the promotion', timeoutMs: 30_000 },
    )
    const resumeMs = firstNew - switchedAt

    await producer.waitMessage((m) => m.type === 'done', 90_000)
    await p.waitAllSucceeded(90_000)
    const exits = await Promise.all(services.map((c) => c.terminate()))
    expect(exits.map((e) => e.code)).toEqual(services.map(() => 0))

    // Longest time without any completion, around the failover.
    const gaps = await p.pool.query<{ gap: number }>(
      `select max(fin - prev) as gap from (
         select run_finished as fin, lag(run_finished) over (order by run_finished) as prev
           from "${p.schema}".ledger where outcome = 'ok') x`,
    )
    const ledger = await expectDelivered(p, { duplicates: false })
    const redispatches = services.flatMap((c) => c.events('relay:redispatch'))
    const swept = services.flatMap((c) => c.events('sweeper:run')).reduce((n, e) => n + Number(e.redispatched), 0)
    console.info(
      `[sentinel-failover] ${ledger.produced} tasks; ${unreplicated} bytes unreplicated at the kill; promotion ${switchedAt - killedAt} ms after the kill; first post-promotion task done ` +
        `${resumeMs} ms after the promotion; longest completion gap ${Math.round(Number(gaps.rows[0]!.gap))} ms; ` +
        `relay re-dispatches ${JSON.stringify(redispatches.map((e) => [e.reason, e.count]))}; sweeper re-dispatched ${swept}; ` +
        `${(Date.now() - started) / 1000}s`,
    )
    // "Within a few seconds of the promotion": a liveness bound, generous for a shared 2-core box.
    expect(resumeMs).toBeLessThan(8000)
    // Nothing waited for the sweeper: the relays re-dispatched the replication window.
    expect(swept).toBe(0)
  }, 240_000)
})
