import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Redis } from 'ioredis'
import { databaseUrl, waitUntil } from '../support/db.ts'
import { sweptCount } from '../support/resilience.ts'
import {
  startSentinelSet,
  startRedisServer,
  stopServers,
  currentPrimaryPort,
  redisCommand,
  waitSentinelsSeeReplica,
  type RedisServer,
  type SentinelSet,
} from '../support/redis-servers.ts'
import { FAST, Pipeline, allReady, expectDelivered } from './fixtures/pipeline-harness.ts'

/**
 * Broker failover: a Redis primary, one replica and three sentinels of the
 * test's own; every process reaches Redis through
 * redis+sentinel://s1,s2,s3/mymaster. A producer enqueues at a steady rate.
 *
 *  1. The primary is SIGKILLed mid-stream while its replica lags (SIGSTOP), so
 *     pushes really die with it and pops really come back on the promoted
 *     replica. Sentinel promotes the replica.
 *  2. The dead primary comes back as a replica; a manual SENTINEL FAILOVER
 *     then demotes the live primary: clients still talking to it get
 *     READONLY / UNBLOCKED replies and must find the new primary themselves.
 *
 * Zero tasks lost, no two runs of one task at once, completions resume
 * within seconds of each promotion, no process restarted, and what the
 * failovers lost was re-dispatched by the relays, not left to the sweeper.
 */
describe('Sentinel failover: primary SIGKILLed mid-stream, then a live primary demoted', () => {
  let p: Pipeline
  let set: SentinelSet
  let watcher: Redis
  const extra: RedisServer[] = []

  beforeAll(async () => {
    set = await startSentinelSet({ replicas: 1, sentinels: 3, downAfterMs: 1000, failoverTimeoutMs: 3000 })
    p = await Pipeline.create({ databaseUrl: databaseUrl(), redisUrl: set.url, label: 'failover' })
    await p.enableAudit()
  }, 90_000)

  afterAll(async () => {
    watcher?.disconnect()
    await p?.cleanup()
    await stopServers(extra)
    if (set) await set.stop()
  })

  it('loses nothing, never runs a task twice at once, and resumes within seconds of each promotion', async () => {
    const started = Date.now()
    const worker = { ...FAST.worker, concurrency: 10, leaseMs: 6000, heartbeatMs: 500 }
    // The sweeper's dispatch timeout is longer than any outage here: what a
    // failover loses must be re-dispatched by the relays themselves. Their
    // window is the replication lag to cover (1.5 s: generous on loopback),
    // counted back from the moment the primary was lost.
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

    // Promotions, as the sentinels announce them.
    const switches: Array<{ at: number; message: string }> = []
    watcher = new Redis({ host: '127.0.0.1', port: set.sentinels[0]!.port, maxRetriesPerRequest: 1 })
    watcher.on('error', () => {})
    watcher.on('message', (channel, message) => {
      if (channel === '+switch-master') switches.push({ at: Date.now(), message })
    })
    await watcher.subscribe('+switch-master')

    const producer = p.spawn('producer', {
      env: { TR_PRODUCE: JSON.stringify({ commit: 5000, rollback: 500, rate: 200, maxTxSize: 5, msMin: 2, msMax: 20 }) },
    })

    /** ms from the promotion to the first completion of a task enqueued (committed) after it */
    const resumeAfter = async (switchAt: number): Promise<number> => {
      const firstNew = await waitUntil(
        async () => {
          p.assertNoUnexpectedExit()
          const res = await p.pool.query<{ fin: number }>(
            `select min(l.run_finished) as fin from "${p.schema}".ledger l join "${p.schema}".tasks t on t.id = l.task_id
              where l.outcome = 'ok' and t.created_at > to_timestamp($1 / 1000.0)`,
            [switchAt],
          )
          return res.rows[0]!.fin ? Number(res.rows[0]!.fin) : false
        },
        { what: 'the first completion of a task enqueued after the promotion', timeoutMs: 30_000 },
      )
      return firstNew - switchAt
    }

    // --- 1. SIGKILL the primary while the replica lags.
    await p.waitCompletedRuns(800, '800 completions before the kill', 60_000)
    const firstPrimary = set.primary.port
    const replica = set.replicas[0]!
    replica.pause()
    const unreplicated = await waitUntil(
      async () => {
        const info = String(await redisCommand(firstPrimary, ['INFO', 'replication']))
        const master = Number(/master_repl_offset:(\d+)/.exec(info)?.[1] ?? 0)
        const acked = Number(/slave0:.*offset=(\d+)/.exec(info)?.[1] ?? master)
        return master - acked > 2000 ? master - acked : false
      },
      { what: 'writes on the primary that the replica has not acknowledged', timeoutMs: 5000, intervalMs: 10 },
    )
    const killedAt = Date.now()
    await stopServers([set.primary])
    replica.resume()
    await waitUntil(() => switches.length >= 1, { what: '+switch-master after the kill', timeoutMs: 30_000 })
    expect(switches[0]!.message).toContain(` ${replica.port}`)
    expect(await currentPrimaryPort(set)).toBe(replica.port)
    const promotion1 = switches[0]!.at - killedAt
    const resume1 = await resumeAfter(switches[0]!.at)

    // --- 2. The old primary returns (empty) as a replica; then a manual failover demotes the live primary.
    await p.waitCompletedRuns((await p.completedRuns()) + 300, '300 more completions through the new primary')
    const comeback = await startRedisServer({ port: firstPrimary, replicaOf: replica.port, name: 'comeback' })
    extra.push(comeback)
    await waitSentinelsSeeReplica(set, firstPrimary)
    await waitUntil(
      async () => (await redisCommand(set.sentinels[0]!.port, ['SENTINEL', 'FAILOVER', set.masterName])) === 'OK',
      { what: 'SENTINEL FAILOVER accepted', timeoutMs: 30_000, intervalMs: 500 },
    )
    const failoverAt = Date.now()
    await waitUntil(() => switches.length >= 2, { what: '+switch-master after the manual failover', timeoutMs: 30_000 })
    expect(switches[1]!.message).toContain(` ${firstPrimary}`)
    // The demoted primary is alive and now a replica: anyone still writing there gets READONLY.
    const promotion2 = switches[1]!.at - failoverAt
    const resume2 = await resumeAfter(switches[1]!.at)
    await waitUntil(async () => /role:slave/.test(String(await redisCommand(replica.port, ['INFO', 'replication']))), {
      what: 'the demoted primary to become a replica',
      timeoutMs: 20_000,
    })
    const demoted = Date.now() - switches[1]!.at

    await producer.waitMessage((m) => m.type === 'done', 120_000)
    await p.waitAllSucceeded(90_000)
    const exits = await Promise.all(services.map((c) => c.terminate()))
    expect(exits.map((e) => e.code)).toEqual(services.map(() => 0))

    // Longest time without any completion.
    const gaps = await p.pool.query<{ gap: number }>(
      `select max(fin - prev) as gap from (
         select run_finished as fin, lag(run_finished) over (order by run_finished) as prev
           from "${p.schema}".ledger where outcome = 'ok') x`,
    )
    const ledger = await expectDelivered(p, { duplicates: false })
    const redispatches = services.flatMap((c) => c.events('relay:redispatch'))
    const swept = sweptCount(services)
    const errors = services.flatMap((c) => c.events('service:error').map((e) => String(e.message).slice(0, 40)))
    console.info(
      `[sentinel-failover] ${ledger.produced} tasks; kill: ${unreplicated} bytes unreplicated, promotion ${promotion1} ms after the kill, ` +
        `first post-promotion task done ${resume1} ms after it; manual failover: promotion ${promotion2} ms, first task ${resume2} ms after it, old primary a replica within ${demoted} ms; ` +
        `longest completion gap ${Math.round(Number(gaps.rows[0]!.gap))} ms; relay re-dispatches ${JSON.stringify(redispatches.map((e) => [e.reason, e.count]))}; ` +
        `sweeper re-dispatched ${swept}; loop errors ${JSON.stringify([...new Set(errors)])}; ${(Date.now() - started) / 1000}s`,
    )
    if (swept > 0) {
      // Diagnostics: when were the tasks the sweeper had to re-dispatch dispatched, by whom, relative to the failovers?
      const rows = await p.pool.query(
        `select a.id, round(a.at)::bigint as swept_at,
                (select round(max(b.at))::bigint from "${p.schema}".audit b where b.id = a.id and b.new_state = 'dispatched' and b.at < a.at) as dispatched_at,
                (select b.app from "${p.schema}".audit b where b.id = a.id and b.new_state = 'dispatched' and b.at < a.at order by b.at desc limit 1) as by
           from "${p.schema}".audit a where a.old_state = 'dispatched' and a.new_state = 'pending' and a.app like '%sweeper' order by a.at limit 10`,
      )
      console.info(`[sentinel-failover] swept: ${JSON.stringify({ killedAt, switches: switches.map((x) => x.at), failoverAt, rows: rows.rows })}`)
    }
    // "Within a few seconds of the promotion": a liveness bound, generous for a shared 2-core box.
    expect(resume1).toBeLessThan(8000)
    expect(resume2).toBeLessThan(8000)
    // Nothing waited for the sweeper: the relays re-dispatched the replication windows.
    expect(swept).toBe(0)
  }, 300_000)
})
