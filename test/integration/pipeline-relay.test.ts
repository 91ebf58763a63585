import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { Relay, defineTask } from '../../src/index.ts'
import { redisUrl, waitUntil } from '../support/db.ts'
import { localDb, prefix, redis, started, usePipeline, withoutLoop } from '../support/pipeline.ts'

/**
 * The relay: priority order, per-queue backlog bounds, fairness between
 * queues, relays side by side, recovery after Redis lost its data.
 * Real Postgres and Redis; the shared stack is in test/support/pipeline.ts.
 */

usePipeline()

describe('relay', () => {
  it('dispatches higher priority first and keeps future tasks in Postgres', async () => {
    const t = defineTask({ name: 'p.prio', payload: z.object({ label: z.string() }), run: async () => null })
    const local = await localDb()
    const low = await local.tr.enqueue(t, { label: 'low' }, { priority: -5 })
    const high = await local.tr.enqueue(t, { label: 'high' }, { priority: 50 })
    const mid = await local.tr.enqueue(t, { label: 'mid' })
    const later = await local.tr.enqueue(t, { label: 'later' }, { delayMs: 60_000, priority: 1000 })
    const keyPrefix = prefix()
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix, batchSize: 2 })
    started.push(relay)
    await relay.start()
    const key = `${keyPrefix}:{default}:ready`
    await waitUntil(async () => (await redis.llen(key)) === 3, { what: 'three dispatches' })
    await relay.stop()
    const messages = await redis.lrange(key, 0, -1)
    expect(messages.map((m) => m.split(':')[0])).toEqual([high.id, mid.id, low.id])
    const states = await local.pool.query(`select id, state from "${local.schema}".tasks where id = $1`, [later.id])
    expect(states.rows[0].state).toBe('pending')
  })

  it('bounds the Redis backlog per queue', async () => {
    const t = defineTask({ name: 'p.backlog', payload: z.object({ i: z.number() }), run: async () => null })
    const local = await localDb()
    await local.tr.enqueueMany(Array.from({ length: 50 }, (_, i) => ({ task: t, payload: { i } })))
    const keyPrefix = prefix()
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix, batchSize: 10, maxBacklogPerQueue: 20 })
    await withoutLoop(relay)
    const rounds = [] as number[]
    for (let i = 0; i < 4; i++) rounds.push((await relay.runOnce()).dispatched)
    const key = `${keyPrefix}:{default}:ready`
    expect(await redis.llen(key)).toBe(20)
    expect(rounds.slice(-2)).toEqual([0, 0])
    await redis.lpop(key, 15)
    expect((await relay.runOnce()).dispatched).toBe(10)
  })

  it('serves the other queues on the very next round while a queue is saturated', async () => {
    const hot = defineTask({ name: 'p.hot', payload: z.object({ i: z.number() }), run: async () => null })
    const other = defineTask({ name: 'p.other', queue: 'other', payload: z.object({}), run: async () => null })
    const later = defineTask({ name: 'p.later', queue: 'later', payload: z.object({}), run: async () => null })
    const local = await localDb()
    await local.tr.enqueueMany(Array.from({ length: 50 }, (_, i) => ({ task: hot, payload: { i } })))
    const keyPrefix = prefix()
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix, batchSize: 10, maxBacklogPerQueue: 20 })
    await withoutLoop(relay)
    // Two rounds fill "default" to its bound; the third finds nothing else to do.
    const rounds = [] as number[]
    for (let i = 0; i < 3; i++) rounds.push((await relay.runOnce()).dispatched)
    expect(rounds).toEqual([10, 10, 0])
    expect(await redis.llen(`${keyPrefix}:{default}:ready`)).toBe(20)
    // A queue with only future tasks is visited and yields nothing.
    await local.tr.enqueue(later, {}, { delayMs: 60_000 })
    const { ids } = await local.tr.enqueueMany(Array.from({ length: 15 }, () => ({ task: other, payload: {} })))
    // The next round serves "other" at once (a full batch, then the rest), best first.
    expect(await relay.runOnce()).toMatchObject({ dispatched: 10, saturatedQueues: ['default'] })
    expect((await relay.runOnce()).dispatched).toBe(5)
    expect((await relay.runOnce()).dispatched).toBe(0)
    const otherKey = `${keyPrefix}:{other}:ready`
    expect((await redis.lrange(otherKey, 0, -1)).map((m) => m.split(':')[0])).toEqual(ids)
    expect(await redis.llen(`${keyPrefix}:{default}:ready`)).toBe(20)
    const pending = await local.pool.query(`select queue, count(*)::int as n from "${local.schema}".tasks where state = 'pending' group by queue order by queue`)
    expect(pending.rows).toEqual([
      { queue: 'default', n: 30 },
      { queue: 'later', n: 1 },
    ])
    // Once the full queue drains below its bound, it is served again.
    await redis.lpop(`${keyPrefix}:{default}:ready`, 15)
    expect((await relay.runOnce()).dispatched).toBe(10)
  })

  it('skips rows another relay holds and takes the next ones, so relays side by side fill their batches', async () => {
    const t = defineTask({ name: 'p.side', payload: z.object({ i: z.number() }), run: async () => null })
    const local = await localDb()
    const other = await local.pool.connect()
    // Rolled back and released after the test, with the services.
    started.push({ stop: async () => { await other.query('rollback').catch(() => {}); other.release() } })
    const { ids } = await local.tr.enqueueMany(Array.from({ length: 30 }, (_, i) => ({ task: t, payload: { i } })))
    // Another relay's round in flight: it holds the five best rows.
    await other.query('begin')
    await other.query(`select id from "${local.schema}".tasks where id = any($1::bigint[]) for update`, [ids.slice(0, 5)])
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix: prefix(), batchSize: 10 })
    const batches: string[][] = []
    relay.events.on('relay:batch', (e) => void batches.push(e.ids))
    await withoutLoop(relay)
    expect((await relay.runOnce()).dispatched).toBe(10)
    expect(batches).toEqual([ids.slice(5, 15)])
  })

  it('lets queues take turns, each best first, so a deep queue cannot starve the others', async () => {
    const a = defineTask({ name: 'p.qa', queue: 'qa', payload: z.object({}), run: async () => null })
    const b = defineTask({ name: 'p.qb', queue: 'qb', payload: z.object({}), run: async () => null })
    const local = await localDb()
    // qa: five tasks, the last two enqueued with a higher priority; qb: four.
    const qa = [] as string[]
    for (const priority of [0, 0, 0, 5, 5]) qa.push((await local.tr.enqueue(a, {}, { priority })).id)
    const qb = [] as string[]
    for (let i = 0; i < 4; i++) qb.push((await local.tr.enqueue(b, {}, {})).id)
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix: prefix(), batchSize: 3 })
    const batches: string[][] = []
    relay.events.on('relay:batch', (e) => void batches.push(e.ids))
    await withoutLoop(relay)
    for (let i = 0; i < 5; i++) await relay.runOnce()
    expect(batches).toEqual([
      [qa[3], qa[4], qa[0]], // qa's best three fill the first batch
      [qb[0], qb[1], qb[2]], // then qb's turn
      [qa[1], qa[2], qb[3]], // back to qa, and the batch is topped up from qb
    ])
  })

  it('after Redis lost its data, re-dispatches what was dispatched before the marker was set, not what was pushed since', async () => {
    const t = defineTask({ name: 'p.epoch', payload: z.object({ i: z.number() }), run: async () => null })
    const local = await localDb()
    const { ids } = await local.tr.enqueueMany([0, 1].map((i) => ({ task: t, payload: { i } })))
    const [before, since] = ids as [string, string]
    // As a relay leaves them: one dispatched before the loss, one dispatched by
    // another relay after this relay set the marker (its dispatched_at is later).
    await local.pool.query(
      `update "${local.schema}".tasks
          set state = 'dispatched', dispatch_token = gen_random_uuid(),
              dispatched_at = case when id = $1 then now() - interval '10 seconds' else now() + interval '1 minute' end
        where id = any($2::bigint[])`,
      [before, ids],
    )
    const keyPrefix = prefix() // no epoch marker: the relay takes this Redis for one that lost its data
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix })
    const redispatched: Array<{ count: number; reason: string }> = []
    relay.events.on('relay:redispatch', (e) => void redispatched.push(e))
    await withoutLoop(relay)
    await waitUntil(() => redispatched.length > 0, { what: 'the data-loss re-dispatch' })
    expect(redispatched).toEqual([{ count: 1, reason: 'redis-data-lost' }])
    const states = await local.pool.query(`select id::text, state from "${local.schema}".tasks order by id`)
    expect(states.rows).toEqual([
      { id: before, state: 'pending' },
      { id: since, state: 'dispatched' },
    ])
  })

  it('several relays side by side dispatch each task exactly once', async () => {
    const t = defineTask({ name: 'p.many-relays', payload: z.object({ i: z.number() }), run: async () => null })
    const local = await localDb()
    const { ids } = await local.tr.enqueueMany(Array.from({ length: 3000 }, (_, i) => ({ task: t, payload: { i } })))
    const keyPrefix = prefix()
    // An existing epoch marker: a fresh prefix looks like a Redis that lost its data,
    // and the data-loss re-dispatch (tested above) is not what this test is about.
    await redis.set(`${keyPrefix}:epoch`, 'test')
    const relays = [1, 2, 3].map(() => new Relay(local.tr, { redis: redisUrl(), keyPrefix, batchSize: 100, pollIntervalMs: 20 }))
    started.push(...relays)
    await Promise.all(relays.map((r) => r.start()))
    const key = `${keyPrefix}:{default}:ready`
    await waitUntil(async () => (await redis.llen(key)) >= 3000, { what: 'all dispatched' })
    const batches = relays.map(() => 0)
    relays.forEach((r, i) => r.events.on('relay:batch', () => batches[i]!++))
    const messages = await redis.lrange(key, 0, -1)
    const dispatchedIds = messages.map((m) => m.split(':')[0])
    expect(dispatchedIds).toHaveLength(3000)
    expect(new Set(dispatchedIds).size).toBe(3000)
    expect(new Set(dispatchedIds)).toEqual(new Set(ids))
  })
})
