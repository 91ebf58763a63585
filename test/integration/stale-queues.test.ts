import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { Redis } from 'ioredis'
import { createTestDb, redisUrl, type TestDb } from '../support/db.ts'
import { HOUR, makeTasks } from '../support/factory.ts'
import { InvalidOptionsError, Relay, Sweeper, TaskRelayEvents, createMetrics } from '../../src/index.ts'
import type { Clock } from '../../src/clock.ts'

/**
 * Queue names used once, by tasks no worker reads (issue 12, defect 9): their
 * Redis messages must not pile up on each re-dispatch, their keys must go
 * once their tasks are gone, and so must their Prometheus series.
 */
let db: TestDb
let redis: Redis
const stopped: Array<{ stop(): Promise<void> }> = []

beforeAll(async () => {
  db = await createTestDb()
  redis = new Redis(redisUrl())
})

afterEach(async () => {
  vi.useRealTimers()
  await Promise.all(stopped.splice(0).map((s) => s.stop()))
  await db.pool.query(`delete from "${db.schema}".tasks`)
})

afterAll(async () => {
  redis.disconnect()
  await db.cleanup()
})

const QUEUES = 60

/** One pending task in each of QUEUES one-off queues. */
function oneOffTasks(tag: string): Promise<string[]> {
  return makeTasks(db.pool, db.schema, Array.from({ length: QUEUES }, (_, i) => ({ state: 'pending' as const, queue: `${tag}-${i}` })))
}

/** Every queue's key under `keyPrefix`, with each list's length. */
async function redisLists(keyPrefix: string): Promise<{ keys: number; messages: number }> {
  let keys = 0
  let messages = 0
  for await (const batch of redis.scanStream({ match: `${keyPrefix}:{*}:ready`, count: 1000 })) {
    for (const key of batch as string[]) {
      keys++
      messages += await redis.llen(key)
    }
  }
  return { keys, messages }
}

/**
 * A relay connected but not looping: the test runs its rounds. Its Redis
 * epoch is set beforehand, so connecting re-dispatches nothing.
 */
async function relayWithoutLoop(options: { keyPrefix: string }, deps: ConstructorParameters<typeof Relay>[2] = {}): Promise<Relay> {
  await redis.set(`${options.keyPrefix}:epoch`, 'test')
  const relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix: options.keyPrefix, pollIntervalMs: 60_000 }, deps)
  const service = relay as unknown as { onStart(): Promise<void>; onStop(): Promise<void> }
  await service.onStart()
  stopped.push({ stop: () => service.onStop() })
  return relay
}

/** A clock the test moves: each tick is an hour later, past any relay interval. */
function steppingClock(): Clock {
  let at = Date.now()
  return { now: () => new Date((at += HOUR)) }
}

/** The sweeper's view after the dispatch timeout: every dispatch is old. */
async function ageDispatches(): Promise<void> {
  await db.pool.query(`update "${db.schema}".tasks set dispatched_at = now() - interval '1 hour' where state = 'dispatched'`)
}

describe('one-off queues that no worker reads', () => {
  it('keep one message per dispatched task through re-dispatches, and lose their keys once their tasks are gone', async () => {
    const keyPrefix = `stale-${randomBytes(4).toString('hex')}`
    const relay = await relayWithoutLoop({ keyPrefix }, { clock: steppingClock() })
    const sweeper = new Sweeper(db.tr, { dispatchTimeoutMs: 1000 })
    await oneOffTasks('once')
    expect((await relay.runOnce()).dispatched).toBe(QUEUES)
    // Each cycle the sweeper finds every dispatch stale (nobody claimed it) and the relay pushes it again.
    for (let cycle = 0; cycle < 3; cycle++) {
      await ageDispatches()
      expect((await sweeper.runOnce()).redispatched).toBe(QUEUES)
      expect((await relay.runOnce()).dispatched).toBe(QUEUES)
      await relay.housekeepingSettled()
    }
    await relay.runOnce()
    await relay.housekeepingSettled()
    expect(await redisLists(keyPrefix)).toEqual({ keys: QUEUES, messages: QUEUES })

    // The tasks are finished and pruned, or deleted: nothing in Redis refers to a task any more.
    await db.pool.query(`delete from "${db.schema}".tasks`)
    await relay.runOnce()
    await relay.housekeepingSettled()
    expect(await redisLists(keyPrefix)).toEqual({ keys: 0, messages: 0 })
  })

  it('leave a message alone while its task is still dispatched with its token', async () => {
    const keyPrefix = `stale-${randomBytes(4).toString('hex')}`
    const relay = await relayWithoutLoop({ keyPrefix })
    await oneOffTasks('live')
    await relay.runOnce()
    const removed = await relay.pruneStaleMessages()
    expect(removed).toMatchObject({ messagesRemoved: 0 })
    expect(await redisLists(keyPrefix)).toEqual({ keys: QUEUES, messages: QUEUES })
    // A message whose task moved on (here: claimed) is stale; one nobody can parse too.
    await db.pool.query(`update "${db.schema}".tasks set state = 'running', attempt = 1, started_at = now(), lease_expires_at = now() + interval '1 minute' where queue = 'live-0'`)
    await redis.rpush(`${keyPrefix}:{live-1}:ready`, 'not a message', '99999999999999999999:00000000-0000-0000-0000-000000000000')
    expect(await relay.pruneStaleMessages()).toMatchObject({ messagesRemoved: 3 })
    expect(await redisLists(keyPrefix)).toEqual({ keys: QUEUES - 1, messages: QUEUES - 1 })
  })
})

describe('metric series of queues whose tasks are gone', () => {
  it('read 0 for a while, then are removed', async () => {
    const events = new TaskRelayEvents()
    const metrics = createMetrics({ events, tr: db.tr, processMetrics: false, queueDepthCacheMs: 0 })
    const keyPrefix = `stale-${randomBytes(4).toString('hex')}`
    const relay = await relayWithoutLoop({ keyPrefix }, { events })
    try {
      await oneOffTasks('series')
      await relay.runOnce()
      // Per queue: taskrelay_tasks{state="dispatched"} and taskrelay_relay_dispatched_total.
      expect(queueSeries(await metrics.registry.metrics())).toBe(2 * QUEUES)
      await db.pool.query(`delete from "${db.schema}".tasks`)
      // A queue still in use keeps its series however long it is.
      await makeTasks(db.pool, db.schema, [{ state: 'pending', queue: 'in-use', runAt: new Date(Date.now() + 48 * HOUR) }])
      const emptied = await metrics.registry.metrics()
      expect(queueSeries(emptied)).toBe(2 * QUEUES)
      expect(emptied).toContain('taskrelay_tasks{queue="series-0",state="dispatched"} 0')

      vi.useFakeTimers({ toFake: ['Date'] })
      vi.setSystemTime(Date.now() + 24 * HOUR)
      const later = await metrics.registry.metrics()
      expect(queueSeries(later)).toBe(0)
      expect(later).toContain('taskrelay_tasks{queue="in-use",state="pending"} 1')
    } finally {
      metrics.close()
    }
  })
})

describe('createMetrics({ staleSeriesMs })', () => {
  it('refuses a value that is not a duration in milliseconds', () => {
    for (const staleSeriesMs of [-1, 1.5, Number.NaN, 2 ** 31]) {
      expect(() => createMetrics({ events: new TaskRelayEvents(), processMetrics: false, staleSeriesMs })).toThrow(InvalidOptionsError)
    }
  })
})

/** Series of the test's one-off queues in a scrape. */
function queueSeries(text: string): number {
  return text.split('\n').filter((line) => /queue="series-\d+"/.test(line)).length
}
