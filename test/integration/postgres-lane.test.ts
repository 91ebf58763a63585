import { randomBytes, randomUUID } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { pino } from 'pino'
import { Relay, Sweeper, TaskRelayEvents, Worker, createMetrics, defineTask } from '../../src/index.ts'
import { createTestDb, redisUrl, waitUntil, type TestDb } from '../support/db.ts'
import { freePort, startRedisServer, stopServers, type RedisServer } from '../support/redis-servers.ts'

/**
 * Issue 17, items 1 and 3: workers take due tasks straight from Postgres
 * when Redis is unreachable (lane "auto") or always (lane "postgres"), with
 * the same fenced claim; relays start and wait while Redis is down; and the
 * sweeper retries a dead worker's tasks once its row in workers expires,
 * without waiting for their leases.
 */
let db: TestDb
const started: Array<{ stop(): Promise<void> }> = []
const servers: RedisServer[] = []

beforeAll(async () => {
  db = await createTestDb()
})
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()))
  await stopServers(servers.splice(0))
})
afterAll(async () => {
  await db?.cleanup()
})

const fast = { leaseMs: 1000, heartbeatMs: 200, blockMs: 200 }
const prefix = () => `pl${randomBytes(4).toString('hex')}`
const runs: string[] = []
const echo = defineTask({
  name: 'pl.echo',
  queue: 'lane',
  payload: z.object({ n: z.number() }),
  async run({ n }, ctx) {
    runs.push(`${ctx.task.id}:${ctx.attempt}`)
    return { n }
  },
})

function capture() {
  const lines: Array<Record<string, unknown>> = []
  return { lines, logger: pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }) }
}

const tasks = () => `"${db.schema}".tasks`
const states = async (ids: string[]) =>
  (await db.pool.query<{ state: string }>(`select state from ${tasks()} where id = any($1::bigint[])`, [ids])).rows.map((r) => r.state)
const allSucceeded = (ids: string[]) => async () => (await states(ids)).every((s) => s === 'succeeded') && (await states(ids)).length === ids.length

describe('the Postgres lane', () => {
  it('lane "postgres": a worker with no Redis at all and no relay runs tasks, woken by NOTIFY', async () => {
    const worker = new Worker(db.tr, { tasks: [echo], lane: 'postgres', ...fast })
    started.push(worker)
    await worker.start()
    const ids = []
    for (let n = 0; n < 20; n++) ids.push((await db.tr.enqueue(echo, { n })).id)
    await waitUntil(allSucceeded(ids), { what: 'every task succeeded on the Postgres lane' })
    expect(worker.lane).toEqual({ active: 'postgres', degraded: null })
    const r = await db.tr.waitFor(echo, ids[3]!, { timeoutMs: 5000 })
    expect(r).toMatchObject({ state: 'succeeded', result: { n: 3 } })
  })

  it('lane "auto": relay and worker start while Redis is unreachable, say so once, and tasks run from Postgres', async () => {
    const closed = `redis://127.0.0.1:${await freePort()}`
    const relayLog = capture()
    const workerLog = capture()
    const keyPrefix = prefix()
    const events = new TaskRelayEvents()
    const metrics = createMetrics({ events })
    const relay = new Relay(db.tr, { redis: closed, keyPrefix, pollIntervalMs: 50 }, { logger: relayLog.logger, events })
    const worker = new Worker(db.tr, { redis: closed, keyPrefix, tasks: [echo], ...fast }, { logger: workerLog.logger, events })
    started.push(relay, worker)
    await relay.start()
    await worker.start()
    const ids = []
    for (let n = 0; n < 10; n++) ids.push((await db.tr.enqueue(echo, { n })).id)
    await waitUntil(allSucceeded(ids), { what: 'tasks ran while Redis was down' })
    expect(worker.lane.active).toBe('postgres')
    expect(worker.lane.degraded).toMatch(/redis unreachable/)
    expect(relay.degraded).toMatch(/redis unreachable/)
    const laneLines = workerLog.lines.filter((l) => String(l.msg).includes('Postgres lane'))
    expect(laneLines).toHaveLength(1)
    expect(laneLines[0]!.level).toBe(40)
    expect(relayLog.lines.filter((l) => String(l.msg).startsWith('redis is unreachable'))).toHaveLength(1)
    // The relay left them alone: never dispatched, so nothing churned between pending and dispatched.
    const dispatchedByRelay = relayLog.lines.filter((l) => l.msg === 'dispatched batch')
    expect(dispatchedByRelay).toEqual([])
    const text = await metrics.registry.metrics()
    expect(text).toContain('taskrelay_redis_unreachable{component="relay"} 1')
    expect(text).toContain('taskrelay_redis_unreachable{component="worker"} 1')
    expect(text).toContain('taskrelay_worker_postgres_lane 1')
  })

  it('lane "auto": goes back to Redis when it returns, and a task claimed from Postgres is never run again by its Redis message', async () => {
    const port = await freePort()
    const url = `redis://127.0.0.1:${port}`
    const keyPrefix = prefix()
    const workerLog = capture()
    const worker = new Worker(db.tr, { redis: url, keyPrefix, tasks: [echo], ...fast }, { logger: workerLog.logger })
    started.push(worker)
    await worker.start()
    const first = (await db.tr.enqueue(echo, { n: 1 })).id
    await waitUntil(allSucceeded([first]), { what: 'ran from Postgres while Redis was down' })
    servers.push(await startRedisServer({ port, name: 'lane-redis' }))
    await waitUntil(() => worker.lane.active === 'redis', { what: 'back on the Redis lane', timeoutMs: 15_000 })
    expect(workerLog.lines.some((l) => l.msg === 'redis is back: taking tasks from redis again')).toBe(true)
    // A stale message for the task the Postgres lane already ran: the fenced claim refuses it.
    const before = runs.filter((r) => r.startsWith(`${first}:`)).length
    const token = randomUUID()
    const { Redis } = await import('ioredis')
    const client = new Redis(url)
    try {
      await client.rpush(`${keyPrefix}:{lane}:ready`, `${first}:${token}`)
      const relay = new Relay(db.tr, { redis: url, keyPrefix, pollIntervalMs: 50 })
      started.push(relay)
      await relay.start()
      const second = (await db.tr.enqueue(echo, { n: 2 })).id
      await waitUntil(allSucceeded([second]), { what: 'a task through the relay and Redis' })
      expect(await client.llen(`${keyPrefix}:{lane}:ready`)).toBe(0)
    } finally {
      client.disconnect()
    }
    expect(runs.filter((r) => r.startsWith(`${first}:`)).length).toBe(before)
  })

  it('claims a dispatched task whose message waits in a Redis it cannot reach, and the claim fences that message out', async () => {
    const id = (await db.tr.enqueue(echo, { n: 7 })).id
    const token = randomUUID()
    // As a relay would have left it: dispatched 5 s ago into a Redis that is gone now.
    await db.pool.query(`update ${tasks()} set state = 'dispatched', dispatch_token = $2, dispatched_at = now() - interval '5 seconds' where id = $1`, [id, token])
    const worker = new Worker(db.tr, { redis: `redis://127.0.0.1:${await freePort()}`, keyPrefix: prefix(), tasks: [echo], ...fast })
    started.push(worker)
    await worker.start()
    await waitUntil(allSucceeded([id]), { what: 'the stranded task ran from Postgres' })
    const claimAgain = await db.pool.query(
      `update ${tasks()} set state = 'running' where id = $1 and dispatch_token = $2 and state = 'dispatched' returning id`,
      [id, token],
    )
    expect(claimAgain.rowCount).toBe(0)
    expect(runs.filter((r) => r.startsWith(`${id}:`))).toEqual([`${id}:1`])
  })
})

describe('dead workers noticed in seconds', () => {
  it("the sweeper retries a running task once its worker's row expired, long before the lease", async () => {
    const id = (await db.tr.enqueue(echo, { n: 9 })).id
    await db.pool.query(`insert into "${db.schema}".workers (id, queues, tasks, expires_at) values ('gone:1', '{lane}', '{pl.echo}', now() - interval '1 second')`)
    await db.pool.query(
      `update ${tasks()} set state = 'running', attempt = 1, worker_id = 'gone:1', started_at = now(), lease_expires_at = now() + interval '10 minutes' where id = $1`,
      [id],
    )
    const sweeper = new Sweeper(db.tr, { lostWorkerRetryDelayMs: 0 })
    const result = await sweeper.runOnce()
    expect(result.leasesReclaimed).toBe(1)
    const r = (await db.pool.query(`select state, last_error from ${tasks()} where id = $1`, [id])).rows[0]
    expect(r.state).toBe('pending')
    expect(r.last_error).toMatchObject({ kind: 'lost_worker' })
    expect(r.last_error.message).toMatch(/stopped renewing its row/)
  })

  it("leaves a live worker's tasks alone", async () => {
    const id = (await db.tr.enqueue(echo, { n: 10 })).id
    await db.pool.query(`insert into "${db.schema}".workers (id, queues, tasks, expires_at) values ('alive:1', '{lane}', '{pl.echo}', now() + interval '1 minute')`)
    await db.pool.query(
      `update ${tasks()} set state = 'running', attempt = 1, worker_id = 'alive:1', started_at = now(), lease_expires_at = now() + interval '10 minutes' where id = $1`,
      [id],
    )
    await new Sweeper(db.tr).runOnce()
    expect(await states([id])).toEqual(['running'])
    await db.pool.query(`update ${tasks()} set state = 'cancelled', finished_at = now() where id = $1`, [id])
  })
})
