import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { Redis } from 'ioredis'
import { databaseUrl, redisUrl, waitUntil } from '../support/db.ts'
import { cleanupShared, createShared, sweptCount } from '../support/resilience.ts'
import { startRedisServer, stopServers, type RedisServer } from '../support/redis-servers.ts'
import { FAST, PartitionProxy, Pipeline, allReady, expectDelivered } from './fixtures/pipeline-harness.ts'

/**
 * Redis is only the fast lane: a Redis without persistence is SIGKILLed
 * mid-stream, with messages in its lists, and restarted empty on the same
 * port, twice. Relays, workers and sweepers reconnect by themselves and no
 * committed task is lost.
 */
describe('Redis loses everything mid-stream', () => {
  let p: Pipeline
  let redis: RedisServer
  let probe: Redis

  beforeAll(async () => {
    redis = await startRedisServer({ name: 'volatile' })
    p = await Pipeline.create({ databaseUrl: databaseUrl(), redisUrl: redis.url, label: 'rloss' })
    await p.enableAudit()
    probe = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 })
    probe.on('error', () => {})
  })

  afterAll(async () => {
    probe?.disconnect()
    await p?.cleanup()
    if (redis) await stopServers([redis])
  })

  it('loses no task when Redis is SIGKILLed and restarted empty', async () => {
    const started = Date.now()
    const worker = { ...FAST.worker, concurrency: 4, prefetch: 0, leaseMs: 6000, heartbeatMs: 500 }
    // The Redis backlog (bounded at 150 + one batch per relay, ~2 s of work)
    // stays under the dispatch timeout even on a busy box, so the sweeper
    // rarely re-dispatches tasks merely waiting in Redis (the timeout counts
    // time queued in Redis too).
    const relay = { ...FAST.relay, maxBacklogPerQueue: 150, batchSize: 50 }
    const sweeper = { ...FAST.sweeper, dispatchTimeoutMs: 10_000 }
    const services = [
      p.spawn('relay', { settings: relay }),
      p.spawn('relay', { settings: relay }),
      p.spawn('sweeper', { settings: sweeper }),
      p.spawn('sweeper', { settings: sweeper }),
      p.spawn('worker', { settings: worker }),
      p.spawn('worker', { settings: worker }),
    ]
    await allReady(services)
    // Workers take ~50 ms a task, 8 at a time (~160/s); the producer makes
    // 250/s, so a backlog builds up in Redis: the lists hold messages when it dies.
    const producer = p.spawn('producer', {
      env: { TR_PRODUCE: JSON.stringify({ commit: 2500, rollback: 250, rate: 250, maxTxSize: 5, msMin: 30, msMax: 70 }) },
    })
    const readyKey = `${p.keyPrefix}:{default}:ready`
    const lostWithRedis: number[] = []
    const kills: number[] = []
    const restarts: number[] = []
    for (const downMs of [0, 2000]) {
      const backlog = await waitUntil(async () => {
        const n = await probe.llen(readyKey)
        return n >= 80 ? n : false
      }, { what: 'a backlog of messages in Redis', timeoutMs: 30_000 })
      const oldPid = redis.pid
      kills.push(Date.now())
      await redis.kill()
      lostWithRedis.push(backlog)
      if (downMs) await new Promise((r) => setTimeout(r, downMs))
      await redis.restart()
      restarts.push(Date.now())
      expect(redis.pid).not.toBe(oldPid)
      // Completions resume after the restart.
      const before = await p.completedRuns()
      await waitUntil(async () => (await p.completedRuns()) > before + 50, { what: 'completions after the restart', timeoutMs: 30_000 })
    }

    await producer.waitMessage((m) => m.type === 'done', 60_000)
    await p.waitAllSucceeded(90_000)
    const exits = await Promise.all(services.map((c) => c.terminate()))
    expect(exits.map((e) => e.code)).toEqual(services.map(() => 0))

    const ledger = await expectDelivered(p, { duplicates: false })
    expect(ledger.produced).toBeGreaterThanOrEqual(2500)
    // The relays noticed the empty Redis (epoch marker gone) and re-dispatched at once.
    const dataLost = services.flatMap((c) => c.events('relay:redispatch')).filter((e) => e.reason === 'redis-data-lost')
    const swept = sweptCount(services)
    const stale = services.flatMap((c) => c.events('worker:stale-messages')).reduce((n, e) => n + Number(e.count), 0)
    console.info(
      `[redis-data-loss] ${ledger.produced} tasks; messages in Redis at the kills: ${lostWithRedis.join(', ')}; ` +
        `relay re-dispatches after data loss: ${dataLost.map((e) => e.count).join(', ')}; sweeper re-dispatched ${swept}; ` +
        `stale messages dropped ${stale}; ${(Date.now() - started) / 1000}s`,
    )
    // Diagnostics: tasks the sweeper had to re-dispatch, when and by whom they had been dispatched.
    const swept2 = await p.pool.query(
      `select a.id, a.at as swept_at, (select max(b.at) from "${p.schema}".audit b where b.id = a.id and b.new_state = 'dispatched' and b.at < a.at) as dispatched_at,
              (select b.app from "${p.schema}".audit b where b.id = a.id and b.new_state = 'dispatched' and b.at < a.at order by b.at desc limit 1) as by
         from "${p.schema}".audit a where a.old_state = 'dispatched' and a.new_state = 'pending' and a.app like '%sweeper' order by a.at`,
    )
    if (swept2.rows.length) console.info(`[redis-data-loss] re-dispatched by the sweeper: ${JSON.stringify({ kills, restarts, rows: swept2.rows.slice(0, 10) })}`)
    expect(dataLost.length).toBeGreaterThanOrEqual(2)
  }, 240_000)
})

/**
 * Redis silently unreachable: one relay's and one worker's Redis traffic is
 * black-holed for several seconds (no error, no close: the blocking read just
 * hangs, pushes get no reply). Their watchdogs and timeouts notice, the other
 * relay and worker carry on, what the black hole swallowed is recovered, and
 * both resume once the network heals.
 */
describe('Redis silently unreachable for one relay and one worker', () => {
  let p: Pipeline
  let proxy: PartitionProxy

  beforeAll(async () => {
    p = await createShared('rpart')
    proxy = await PartitionProxy.start(redisUrl())
  })

  afterAll(async () => {
    proxy?.heal()
    await cleanupShared(p)
    await proxy?.close()
  })

  it('loses nothing and both resume after the partition heals', async () => {
    const worker = { ...FAST.worker, concurrency: 8, leaseMs: 6000, heartbeatMs: 500 }
    const sweeper = { ...FAST.sweeper, dispatchTimeoutMs: 3000 }
    const cutUrl = proxy.url(redisUrl())
    const cutRelay = p.spawn('relay', { name: 'relay-cut', settings: FAST.relay, redisUrl: cutUrl })
    const cutWorker = p.spawn('worker', { name: 'worker-cut', settings: worker, redisUrl: cutUrl })
    const services = [
      p.spawn('relay', { settings: FAST.relay }),
      p.spawn('worker', { settings: worker }),
      p.spawn('sweeper', { settings: sweeper }),
      p.spawn('sweeper', { settings: sweeper }),
      cutRelay,
      cutWorker,
    ]
    await allReady(services)
    // The producer runs until stopped: under load, noticing the cut can take
    // longer than a fixed batch lasts, and the cut relay can only show that it
    // dispatches again if there is still work arriving after the heal.
    const producer = p.spawn('producer', {
      env: { TR_PRODUCE: JSON.stringify({ commit: 1_000_000, rollback: 100_000, rate: 150, maxTxSize: 5, msMin: 5, msMax: 30 }) },
    })
    await p.waitCompletedRuns(300, '300 completions before the partition', 60_000)
    const dispatchedBy = (c: typeof cutRelay) => Number([...c.messages].reverse().find((m) => m.type === 'stats')?.dispatched ?? 0)
    // Both sides of the cut did work before it.
    await waitUntil(async () => dispatchedBy(cutRelay) > 0, { what: 'the cut relay to dispatch' })
    await waitUntil(
      async () => (await p.pool.query(`select count(*)::int as c from "${p.schema}".ledger where pid = $1`, [cutWorker.pid])).rows[0].c > 0,
      { what: 'the cut worker to run tasks' },
    )

    proxy.partition()
    const relayErrorsBefore = cutRelay.events('service:error').length
    const before = await p.completedRuns()
    // The other relay and worker carry on meanwhile.
    await p.waitCompletedRuns(before + 300, 'completions during the partition')
    // The cut side notices by itself: the relay's push times out (its round is
    // put back), the worker's blocking read hangs past its deadline and its
    // watchdog rebuilds the connection.
    await waitUntil(() => cutRelay.events('service:error').length > relayErrorsBefore, { what: 'the cut relay to time out a push', timeoutMs: 20_000 })
    await waitUntil(() => /blocking read hung past its timeout/.test(readFileSync(cutWorker.logFile, 'utf8')), {
      what: "the cut worker's blocking-read watchdog",
      timeoutMs: 20_000,
    })
    const healedAt = Date.now()
    const relayBefore = dispatchedBy(cutRelay)
    proxy.heal()

    await waitUntil(async () => dispatchedBy(cutRelay) > relayBefore, { what: 'the cut relay to dispatch again after the heal', timeoutMs: 30_000 })
    await waitUntil(
      async () =>
        (await p.pool.query(`select count(*)::int as c from "${p.schema}".ledger where pid = $1 and run_started > $2`, [cutWorker.pid, healedAt])).rows[0]
          .c > 0,
      { what: 'the cut worker to run tasks again after the heal', timeoutMs: 30_000 },
    )
    // SIGTERM ends the producer's loop; it exits 0 only through its normal end.
    expect((await producer.terminate()).code).toBe(0)
    await p.waitAllSucceeded(60_000)
    const exits = await Promise.all(services.map((c) => c.terminate()))
    expect(exits.map((e) => e.code)).toEqual(services.map(() => 0))
    const ledger = await expectDelivered(p, { duplicates: false })
    const swept = sweptCount(services)
    const relayErrors = cutRelay.events('service:error').length
    console.info(`[redis-partition] ${ledger.produced} tasks; sweeper re-dispatched ${swept}; failed rounds of the cut relay ${relayErrors}`)
  }, 180_000)
})
