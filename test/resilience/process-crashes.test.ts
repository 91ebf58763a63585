import { afterAll, describe, expect, it } from 'vitest'
import { Redis } from 'ioredis'
import { redisUrl, waitUntil } from '../support/db.ts'
import { cleanupShared, createShared, sweptCount } from '../support/resilience.ts'
import { startRedisServer, stopServers, type RedisServer } from '../support/redis-servers.ts'
import { FAST, allReady, expectDelivered, type Child } from './fixtures/pipeline-harness.ts'

/**
 * Crashes of the moving parts under load, with several relays and sweepers:
 *  - a relay SIGKILLed after it committed a dispatch in Postgres and before
 *    its Redis push (made certain, not hoped for: that relay's Redis is
 *    SIGSTOPped so the push hangs, and the relay is killed while it hangs),
 *    then real relays SIGKILLed and replaced over and over;
 *  - every Postgres connection of every process terminated, repeatedly.
 * Processes recover by themselves; zero tasks lost.
 */
describe('process crashes under load', () => {
  const cleanups: Array<() => Promise<void>> = []

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch((err) => console.error(err))
  })

  it('relay SIGKILLed between the dispatch commit and the Redis push, and relays killed repeatedly: zero lost', async () => {
    const started = Date.now()
    const p = await createShared('rkill')
    cleanups.push(() => cleanupShared(p))
    const decoyRedis: RedisServer = await startRedisServer({ name: 'decoy' })
    cleanups.push(() => stopServers([decoyRedis]))
    const probe = new Redis(redisUrl(), { maxRetriesPerRequest: 1 })
    cleanups.push(async () => probe.disconnect())

    const sweeper = { ...FAST.sweeper, dispatchTimeoutMs: 2000 }
    const worker = { ...FAST.worker, concurrency: 10, leaseMs: 6000, heartbeatMs: 500 }
    const relays: Child[] = [p.spawn('relay', { settings: FAST.relay }), p.spawn('relay', { settings: FAST.relay })]
    const others = [p.spawn('sweeper', { settings: sweeper }), p.spawn('sweeper', { settings: sweeper }), p.spawn('worker', { settings: worker }), p.spawn('worker', { settings: worker })]
    await allReady([...relays, ...others])
    const producer = p.spawn('producer', {
      env: { TR_PRODUCE: JSON.stringify({ commit: 3000, rollback: 300, rate: 250, maxTxSize: 5, msMin: 2, msMax: 10 }) },
    })
    await p.waitCompletedRuns(300, '300 completions', 60_000)

    // A third relay: same database and key prefix, but its own Redis (which
    // no worker reads), SIGSTOPped as soon as the relay is up. Its next round
    // commits the dispatch in Postgres, then hangs in the push.
    const decoy = p.spawn('relay', { name: 'decoy-relay', settings: FAST.relay, redisUrl: decoyRedis.url })
    await decoy.ready
    const pausedAt = Number((await p.pool.query(`select extract(epoch from clock_timestamp()) * 1000 as t`)).rows[0].t)
    decoyRedis.pause()
    const stuck = await waitUntil(
      async () => {
        // Dispatched after the pause and not claimed for 400 ms although workers keep up:
        // the decoy's hanging round (workers claim the real relays' rows within milliseconds).
        const res = await p.pool.query<{ id: string; token: string }>(
          `select id::text, dispatch_token::text as token from "${p.schema}".tasks
            where state = 'dispatched' and dispatched_at < now() - interval '400 milliseconds'
              and dispatched_at >= to_timestamp($1 / 1000.0)`,
          [pausedAt],
        )
        return res.rows.length > 0 ? res.rows : false
      },
      { what: 'a dispatch committed by the decoy relay and not pushed', timeoutMs: 20_000, intervalMs: 20 },
    )
    await p.killChild(decoy)
    const tokens = [...new Set(stuck.map((r) => r.token))]
    expect(tokens).toHaveLength(1)
    // Killed between commit and push: the rows are still dispatched with the decoy's token (never
    // reverted), and no message with that token exists in the Redis the workers read.
    const still = await p.pool.query<{ c: number }>(
      `select count(*)::int as c from "${p.schema}".tasks where id = any($1::bigint[]) and state = 'dispatched' and dispatch_token::text = any($2::text[])`,
      [stuck.map((r) => r.id), tokens],
    )
    expect(still.rows[0]!.c).toBe(stuck.length)
    const inRedis = await probe.lrange(`${p.keyPrefix}:{default}:ready`, 0, -1)
    expect(inRedis.filter((m) => tokens.some((t) => m.endsWith(t)))).toEqual([])

    // Now the real relays, killed and replaced over and over under load
    // (always one left alive), at random points of their rounds.
    let kills = 0
    for (let round = 0; round < 6; round++) {
      const i = round % relays.length
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 400))
      await p.killChild(relays[i]!)
      kills++
      relays[i] = p.spawn('relay', { settings: FAST.relay })
      await relays[i]!.ready
    }

    await producer.waitMessage((m) => m.type === 'done', 90_000)
    await p.waitAllSucceeded(90_000)
    const running = [...relays, ...others]
    const exits = await Promise.all(running.map((c) => c.terminate()))
    expect(exits.map((e) => e.code)).toEqual(running.map(() => 0))

    // The decoy's tasks were re-dispatched by the sweeper and ran once, without using an attempt.
    const decoyRows = await p.pool.query<{ state: string; attempt: number; c: number }>(
      `select state, attempt, count(*)::int as c from "${p.schema}".tasks where id = any($1::bigint[]) group by state, attempt`,
      [stuck.map((r) => r.id)],
    )
    expect(decoyRows.rows).toEqual([{ state: 'succeeded', attempt: 1, c: stuck.length }])
    const swept = sweptCount(p.children)
    expect(swept).toBeGreaterThanOrEqual(stuck.length)
    const ledger = await expectDelivered(p, { duplicates: false })
    console.info(
      `[relay-kill] ${ledger.produced} tasks; ${stuck.length} tasks stranded by the decoy relay (${tokens.length} round(s)) recovered by the sweeper ` +
        `(re-dispatched ${swept} in all); ${kills} relay SIGKILLs; ${(Date.now() - started) / 1000}s`,
    )
  }, 240_000)

  it('Postgres connections of every process terminated repeatedly under load: they reconnect, zero lost', async () => {
    const started = Date.now()
    const p = await createShared('pgterm')
    cleanups.push(() => cleanupShared(p))
    const worker = { ...FAST.worker, concurrency: 10, leaseMs: 6000, heartbeatMs: 500 }
    const services = [
      p.spawn('relay', { settings: FAST.relay }),
      p.spawn('relay', { settings: FAST.relay }),
      p.spawn('sweeper', { settings: FAST.sweeper }),
      p.spawn('sweeper', { settings: FAST.sweeper }),
      p.spawn('worker', { settings: worker }),
      p.spawn('worker', { settings: worker }),
    ]
    await allReady(services)
    const producer = p.spawn('producer', {
      env: { TR_PRODUCE: JSON.stringify({ commit: 3000, rollback: 300, rate: 250, maxTxSize: 5, msMin: 2, msMax: 10 }) },
    })
    await p.waitCompletedRuns(300, '300 completions', 60_000)

    const terminated: number[] = []
    for (let round = 0; round < 6; round++) {
      const before = await p.completedRuns()
      terminated.push(await p.terminateBackends())
      // Recovered: completions go on (new connections, LISTEN re-established or polled).
      await p.waitCompletedRuns(before + 100, `completions after termination round ${round + 1}`)
    }
    // Every round found connections of the test's processes to kill.
    expect(terminated.every((n) => n > 0)).toBe(true)

    const done = await producer.waitMessage((m) => m.type === 'done', 90_000)
    await p.waitAllSucceeded(90_000)
    // Each relay listens again on a fresh connection.
    const listening = await p.pool.query<{ c: number }>(
      `select count(*)::int as c from pg_stat_activity where application_name = $1 and query ilike 'listen %'`,
      [`${p.appPrefix}relay`],
    )
    expect(listening.rows[0]!.c).toBe(2)
    const exits = await Promise.all(services.map((c) => c.terminate()))
    expect(exits.map((e) => e.code)).toEqual(services.map(() => 0))

    const ledger = await expectDelivered(p, { duplicates: false })
    const errors = services.flatMap((c) => c.events('service:error')).length
    console.info(
      `[pg-terminate] ${ledger.produced} tasks; backends terminated per round ${terminated.join('/')}; producer transactions failed ${done.errors} ` +
        `(uncertain commits ${done.uncertain}); service loop errors ${errors}; ${(Date.now() - started) / 1000}s`,
    )
  }, 240_000)
})
