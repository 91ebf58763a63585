import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Redis } from 'ioredis'
import { redispatchWindow } from '../../src/relay/after-reconnect.ts'
import { closeRedis, createRedis } from '../../src/redis/connection.ts'
import { redisKeys, type Keys } from '../../src/redis/keys.ts'
import { silentLogger } from '../../src/logger.ts'
import { redisUrl, waitUntil } from '../support/db.ts'

/**
 * Which dispatches the relay puts back after a Redis (re)connection
 * (issue 17, item 4): the failover window before the connection was lost,
 * never up to now. Against the real Redis, with an epoch marker of its own.
 */

let redis: Redis
let keys: Keys
beforeAll(async () => {
  redis = new Redis(redisUrl())
  keys = redisKeys(`ar${randomBytes(4).toString('hex')}`)
  await redis.set(keys.epoch(), 'kept') // Redis kept its data: the failover path
})
afterAll(async () => {
  await redis.del(keys.epoch())
  redis.disconnect()
})

describe('redispatchWindow after a reconnect', () => {
  it('ends at the loss, not now, when the reconnect took less than 500 ms', async () => {
    const lostAt = performance.now() - 100
    const window = await redispatchWindow(redis, keys, { first: false, lostAt, failoverWindowMs: 2000 })
    const sinceLost = performance.now() - lostAt
    expect(window?.reason).toBe('redis-reconnect')
    // Before the fix: toMsAgo 0, i.e. every task dispatched since the loss was re-sent.
    expect(window!.toMsAgo).toBeGreaterThanOrEqual(100)
    expect(window!.toMsAgo).toBeLessThanOrEqual(sinceLost)
    expect(window!.fromMsAgo! - window!.toMsAgo!).toBeGreaterThanOrEqual(2000)
    expect(window!.fromMsAgo! - window!.toMsAgo!).toBeLessThanOrEqual(2002)
  })

  it('ends at the loss after a slow reconnect too (no 500 ms of slack past it)', async () => {
    const lostAt = performance.now() - 3000
    const window = await redispatchWindow(redis, keys, { first: false, lostAt, failoverWindowMs: 1000 })
    expect(window!.toMsAgo).toBeGreaterThanOrEqual(3000)
    expect(window!.fromMsAgo).toBeGreaterThanOrEqual(4000)
  })

  it('re-dispatches nothing for a ready that followed no recorded loss', async () => {
    // Before the fix: { fromMsAgo: failoverWindowMs, toMsAgo: null }, everything recent up to now.
    expect(await redispatchWindow(redis, keys, { first: false, lostAt: null, failoverWindowMs: 1000 })).toBeNull()
    expect(await redispatchWindow(redis, keys, { first: true, lostAt: null, failoverWindowMs: 1000 })).toBeNull()
  })

  it('reaches to the latest loss when the connection was lost again before the check', async () => {
    const client = createRedis(redisUrl(), { role: 'commands' }, silentLogger())
    try {
      await client.connect()
      const lostAt = performance.now() - 5000 // the first loss, not yet handled
      const id = await client.client('ID')
      const killedAfter = performance.now()
      await redis.client('KILL', 'ID', String(id))
      await waitUntil(async () => (await client.client('ID')) !== id || null, { what: 'a new connection', timeoutMs: 5000 })
      const window = await redispatchWindow(client, keys, { first: false, lostAt, failoverWindowMs: 1000 })
      // From the first loss back by the failover window, to the second loss.
      expect(window!.fromMsAgo).toBeGreaterThanOrEqual(6000)
      expect(window!.toMsAgo).toBeLessThanOrEqual(performance.now() - killedAfter)
    } finally {
      closeRedis(client)
    }
  })

  it('after a data loss, re-dispatches everything dispatched before the marker was set', async () => {
    const lost = redisKeys(`ar${randomBytes(4).toString('hex')}`)
    const window = await redispatchWindow(redis, lost, { first: false, lostAt: performance.now() - 50, failoverWindowMs: 1000 })
    await redis.del(lost.epoch())
    expect(window).toMatchObject({ fromMsAgo: null, reason: 'redis-data-lost' })
  })
})
