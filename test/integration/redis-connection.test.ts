import { afterEach, describe, expect, it } from 'vitest'
import type { Redis } from 'ioredis'
import { pino } from 'pino'
import { closeRedis, createRedis } from '../../src/redis/connection.ts'
import { silentLogger } from '../../src/logger.ts'
import { redisUrl, waitUntil } from '../support/db.ts'
import { redisCommand, startRedisServer, stopServers, type RedisServer } from '../support/redis-servers.ts'

const clients: Redis[] = []
const servers: RedisServer[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) closeRedis(c)
  await stopServers(servers.splice(0))
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

  it('on a READONLY reply, says so, reconnects and resends the write until the server accepts it', async () => {
    // What a client sees when its server is demoted under it, or when a URL
    // points at a replica: a managed Redis's DNS name that is about to follow
    // the new primary, here a replica that is then promoted in place.
    const primary = await startRedisServer({ name: 'ro-primary' })
    servers.push(primary)
    const replica = await startRedisServer({ name: 'ro-replica', replicaOf: primary.port })
    servers.push(replica)
    const lines: Array<{ msg: string }> = []
    const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) })
    const redis = createRedis(replica.url, { role: 'commands', commandTimeoutMs: 10_000 }, log)
    clients.push(redis)
    let connects = 0
    redis.on('connect', () => connects++)
    await redis.connect()
    const push = redis.rpush('ro:list', 'one')
    await waitUntil(() => lines.some((l) => /READONLY: this server is a replica/.test(l.msg)) || null, {
      what: 'the READONLY warning',
      timeoutMs: 5000,
    })
    // Several reconnects, but one warning per 5 s, not one per reconnect.
    await waitUntil(() => connects >= 4 || null, { what: 'reconnects after READONLY', timeoutMs: 4000 })
    expect(lines.filter((l) => /READONLY/.test(l.msg))).toHaveLength(1)
    expect(await redisCommand(replica.port, ['REPLICAOF', 'NO', 'ONE'])).toBe('OK')
    expect(await push).toBe(1)
    // Refused writes did nothing: the resent one went through once.
    expect(await redisCommand(replica.port, ['LRANGE', 'ro:list', '0', '-1'])).toEqual(['one'])
  })
})
