import { afterEach, describe, expect, it } from 'vitest'
import type { Redis } from 'ioredis'
import { closeRedis, createRedis } from '../../src/redis/connection.ts'
import { silentLogger } from '../../src/logger.ts'
import { redisUrl, waitUntil } from '../support/db.ts'

const clients: Redis[] = []
afterEach(() => {
  for (const c of clients.splice(0)) closeRedis(c)
})

describe('createRedis', () => {
  it('revives a client that ioredis gave up on', async () => {
    const redis = createRedis(redisUrl(), { role: 'commands' }, silentLogger())
    clients.push(redis)
    await redis.connect()
    // The state ioredis leaves a client in when its Sentinel connector is
    // disconnected mid-resolution (a +switch-master during a reconnect): 'end',
    // with no reconnect scheduled. Seen in the Sentinel failover test.
    ;(redis as unknown as { setStatus(s: string): void }).setStatus('end')
    await waitUntil(() => redis.status === 'ready' || null, { what: 'the client to be revived', timeoutMs: 5000 })
    expect(await redis.ping()).toBe('PONG')
  })

  it('leaves a client closed with closeRedis closed', async () => {
    const redis = createRedis(redisUrl(), { role: 'commands' }, silentLogger())
    await redis.connect()
    closeRedis(redis)
    await waitUntil(() => redis.status === 'end' || null, { what: 'end', timeoutMs: 5000 })
    // Longer than the revive delay: it must stay closed.
    await new Promise((r) => setTimeout(r, 600))
    expect(redis.status).toBe('end')
  })
})
