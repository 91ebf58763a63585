import { afterEach, describe, expect, it } from 'vitest'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { z } from 'zod'
import { Relay, defineTask } from '../../src/index.ts'
import { closeRedis, createRedis, reconnectDelayMs } from '../../src/redis/connection.ts'
import { followSwitch } from '../../src/redis/failover.ts'
import { Service } from '../../src/service.ts'
import { silentLogger } from '../../src/logger.ts'
import { createTestDb, redisUrl, waitUntil, type TestDb } from '../support/db.ts'
import { redisCommand, startRedisServer, startSentinelSet, stopServers, type RedisServer, type SentinelSet } from '../support/redis-servers.ts'

/**
 * Issue 17, item 4, with real redis-server, sentinel and Postgres processes:
 * (a) clients reconnect fast after a failover, (b) the relay re-sends only
 * what the failover can have lost, (c) an expected, retried failover error
 * is logged as a warning. Time from promotion to the first write is measured
 * by bench/tools/failover-resume.ts, not asserted here.
 */

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})
const servers = (...s: RedisServer[]) => cleanups.push(() => stopServers(s))

describe('reconnect backoff (a)', () => {
  it('retries at once, then backs off to at most ~0.6 s', () => {
    for (const random of [() => 0, () => 0.999]) {
      const delays = Array.from({ length: 12 }, (_, i) => reconnectDelayMs(i + 1, random))
      // The first three attempts take less time together than the old first one alone (100–200 ms).
      expect(delays.slice(0, 3).reduce((a, b) => a + b)).toBeLessThan(200)
      expect(delays[0]).toBeLessThanOrEqual(25)
      expect(Math.max(...delays)).toBeLessThanOrEqual(600)
      expect(delays.every((d, i) => i === 0 || d >= delays[i - 1]!)).toBe(true)
    }
  })

  it('a client waiting out its backoff goes at once when a new primary is announced', async () => {
    const server = await startRedisServer({ name: 'backoff' })
    servers(server)
    const client = createRedis(server.url, { role: 'commands', commandTimeoutMs: 5000 }, silentLogger())
    cleanups.push(() => closeRedis(client))
    await client.connect()
    let waits = 0
    client.on('reconnecting', () => waits++)
    await server.kill()
    // Far into the backoff: waits of ~0.5 s between attempts.
    await waitUntil(() => (waits >= 7 && client.status === 'reconnecting') || null, { what: 'a long backoff', timeoutMs: 10_000, intervalMs: 1 })
    followSwitch(client, { host: '127.0.0.1', port: server.port }, () => {})
    expect(client.status).toBe('connecting') // not after the pending wait
    await server.start()
    expect(await client.set('backoff', '1')).toBe('OK')
  })

  it('shares one +switch-master subscription per sentinel, follows a promotion, and closes it with the last client', async () => {
    const set: SentinelSet = await startSentinelSet({ replicas: 1, sentinels: 3, downAfterMs: 1000 })
    cleanups.push(() => set.stop())
    const watchers = async () =>
      Promise.all(set.sentinels.map(async (s) => String(await redisCommand(s.port, ['CLIENT', 'LIST'])).split('\n').filter((l) => l.includes('name=taskrelay:sentinel-watch')).length))
    const commands = createRedis(set.url, { role: 'commands', commandTimeoutMs: 5000 }, silentLogger())
    const blocking = createRedis(set.url, { role: 'blocking' }, silentLogger())
    cleanups.push(() => closeRedis(commands), () => closeRedis(blocking))
    await Promise.all([commands.connect(), blocking.connect()])
    await waitUntil(async () => (await watchers()).every((n) => n === 1) || null, { what: 'one watch connection per sentinel', timeoutMs: 5000 })

    const announce = new Redis({ host: '127.0.0.1', port: set.sentinels[0]!.port })
    cleanups.push(() => announce.disconnect())
    announce.on('error', () => {})
    let switched = false
    announce.on('message', () => (switched = true))
    await announce.subscribe('+switch-master')
    await set.primary.kill()
    await waitUntil(() => switched || null, { what: '+switch-master', timeoutMs: 30_000 })
    expect(await commands.set('after-failover', '1')).toBe('OK')
    expect(await redisCommand(set.replicas[0]!.port, ['GET', 'after-failover'])).toBe('1')
    await waitUntil(() => blocking.status === 'ready' || null, { what: 'the blocking client back', timeoutMs: 10_000 })

    closeRedis(commands)
    expect((await watchers()).every((n) => n === 1)).toBe(true) // still used by the blocking client
    closeRedis(blocking)
    await waitUntil(async () => (await watchers()).every((n) => n === 0) || null, { what: 'the watch closed', timeoutMs: 5000 })
  }, 90_000)
})

describe('relay after a fast reconnect (b)', () => {
  it('re-dispatches what was dispatched before the loss, not what was dispatched after it', async () => {
    const t = defineTask({ name: 'fd.window', payload: z.object({ i: z.number() }), run: async () => null })
    const db: TestDb = await createTestDb()
    cleanups.push(() => db.cleanup())
    // This relay's Redis (a server of its own, so the test can cut it off) and another relay's.
    const server = await startRedisServer({ name: 'relay-redis' })
    servers(server)
    const prefix = `fd${Date.now()}`
    await redisCommand(server.port, ['SET', `${prefix}:epoch`, 'kept'])
    const shared = new Redis(redisUrl())
    cleanups.push(() => shared.disconnect())
    await shared.set(`${prefix}o:epoch`, 'kept')
    const relay = new Relay(db.tr, { redis: server.url, keyPrefix: prefix })
    const other = new Relay(db.tr, { redis: redisUrl(), keyPrefix: `${prefix}o` })
    for (const r of [relay, other]) {
      const service = r as unknown as { onStart(): Promise<void>; onStop(): Promise<void> }
      await service.onStart()
      cleanups.push(() => service.onStop())
    }
    const redispatched: Array<{ count: number; reason: string }> = []
    relay.events.on('relay:redispatch', (e) => void redispatched.push(e))

    const before = await db.tr.enqueue(t, { i: 0 })
    expect((await relay.runOnce()).dispatched).toBe(1)
    // Cut the relay's connection and hold its reconnect for 400 ms: a reconnect faster than 500 ms.
    const admin = new Redis(server.url)
    cleanups.push(() => admin.disconnect())
    const cut = await admin.multi().call('CLIENT', 'PAUSE', '400', 'ALL').call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes').exec()
    expect(cut?.[1]?.[1]).toBeGreaterThanOrEqual(1) // the relay's connection
    await waitUntil(async () => ((await relay.runOnce()) && relay.degraded !== null) || null, { what: 'the relay to notice the loss', intervalMs: 1 })
    await new Promise((r) => setTimeout(r, 50))
    // Dispatched after the loss, by a relay connected all along (in a failover: to the new primary).
    const after = await db.tr.enqueue(t, { i: 1 })
    expect((await other.runOnce()).dispatched).toBe(1)
    expect(redispatched).toEqual([]) // the relay has not reconnected yet: the race is set up
    await waitUntil(() => redispatched.length > 0 || null, { what: 'the re-dispatch after the reconnect', timeoutMs: 10_000 })
    // Before the fix: [{ count: 2 }], the task dispatched after the loss was reset and sent again.
    expect(redispatched).toEqual([{ count: 1, reason: 'redis-reconnect' }])
    const states = await db.pool.query(`select id::text, state from "${db.schema}".tasks order by id`)
    expect(states.rows).toEqual([
      { id: before.id, state: 'pending' },
      { id: after.id, state: 'dispatched' },
    ])
  })
})

describe('expected failover errors (c)', () => {
  class Once extends Service<number> {
    calls = 0
    readonly fail: () => Promise<unknown>
    constructor(log: pino.Logger, fail: () => Promise<unknown>) {
      super('probe', { logger: log })
      this.fail = fail
    }
    async runOnce() {
      if (this.calls++ === 0) await this.fail()
      return 0
    }
    protected delayAfter() {
      return 10
    }
  }

  async function loggedFailure(fail: () => Promise<unknown>): Promise<{ level: number; msg: string; err: { message: string } }> {
    const lines: Array<{ level: number; msg: string; err: { message: string } }> = []
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) })
    const service = new Once(log, fail)
    await service.start()
    cleanups.push(() => service.stop())
    return waitUntil(() => lines.find((l) => /loop iteration failed/.test(l.msg)), { what: 'the failure logged', timeoutMs: 5000 })
  }

  it('logs a read cut off by a failover ("Stream isn\'t writeable") as a warning that says it is retried', async () => {
    const blocking = createRedis(redisUrl(), { role: 'blocking' }, silentLogger())
    cleanups.push(() => closeRedis(blocking))
    // Not connected yet, and blocking reads are never queued offline: ioredis's own error.
    const line = await loggedFailure(() => blocking.blmpop(1, 1, 'fd:none', 'LEFT'))
    expect(line.err.message).toMatch(/^Stream isn't writeable/)
    expect(line.level).toBe(40) // was 50 (error)
    expect(line.msg).toMatch(/redis connection was lost.*retrying/)
  })

  it("logs the relay's failed push (its cause: a connection loss) as a warning, and anything else still as an error", async () => {
    const cause = new Error('Connection is closed.')
    const push = await loggedFailure(async () => {
      throw new Error('redis push failed, 3 tasks put back to pending: Connection is closed.', { cause })
    })
    expect(push.level).toBe(40)
    const other = await loggedFailure(async () => {
      throw new Error('relation "tasks" does not exist')
    })
    expect(other.level).toBe(50)
  })
})
