import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { Redis } from 'ioredis'
import pg from 'pg'
import { Relay, TaskRelay, Worker, defineTask } from '../../src/index.ts'
import { encodeMessage, redisKeys } from '../../src/redis/keys.ts'
import { createTestDb, databaseUrl, redisUrl, waitUntil, type TestDb } from '../support/db.ts'
import { ReplyCutter } from '../support/reply-cutter.ts'

/**
 * A claim whose reply is lost after Postgres committed it: the worker cannot
 * tell "not claimed" from "claimed", so it sends the claim again, and the
 * statement gives the same worker back what it already holds. Before, the
 * task stayed `running` with nobody on it until its lease expired, and the
 * sweeper then counted the attempt as lost: with maxAttempts 1 the task
 * failed without ever having run.
 */

let db: TestDb
let cutter: ReplyCutter
let proxiedPool: pg.Pool
let workerTr: TaskRelay
let redis: Redis
const services: Array<{ stop(): Promise<void> }> = []

beforeAll(async () => {
  db = await createTestDb()
  const url = new URL(databaseUrl())
  cutter = new ReplyCutter(url)
  await cutter.listen()
  url.hostname = '127.0.0.1'
  url.port = String(cutter.port)
  proxiedPool = new pg.Pool({ connectionString: url.toString(), max: 4 })
  proxiedPool.on('error', () => {})
  workerTr = new TaskRelay({ db: proxiedPool, schema: db.schema })
  redis = new Redis(redisUrl())
})

afterEach(async () => {
  for (const s of services.splice(0).reverse()) await s.stop()
})

afterAll(async () => {
  await workerTr?.close()
  await proxiedPool?.end()
  await cutter?.close()
  redis?.disconnect()
  await db?.cleanup()
})

async function taskRow(id: string) {
  const res = await db.pool.query(`select state, attempt, dispatch_token, worker_id from "${db.schema}".tasks where id = $1`, [id])
  return res.rows[0]
}

/** lane "redis" by default: these tests are about messages from Redis (an idle worker on "auto" may claim from Postgres instead). */
async function start(tasks: ReturnType<typeof defineTask<any, any>>[], workerId: string, lane: 'redis' | 'postgres' = 'redis') {
  const keyPrefix = `claimlost:${randomBytes(4).toString('hex')}`
  // The Postgres lane runs without a relay, as it is meant to: nothing is dispatched behind its back.
  const relay = lane === 'redis' ? new Relay(db.tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 }) : null
  const worker = new Worker(workerTr, { redis: redisUrl(), keyPrefix, tasks, workerId, lane, leaseMs: 3000, heartbeatMs: 500, blockMs: 200 })
  services.push(...(relay ? [relay] : []), worker)
  await relay?.start()
  await worker.start()
  return { relay, worker, keyPrefix }
}

describe('a claim whose reply is lost after its commit', () => {
  it('is sent again and runs the task in its first attempt, once', async () => {
    let runs = 0
    const t = defineTask({ name: 'lost.reply', payload: z.object({}), maxAttempts: 1, run: () => void runs++ })
    const workerId = `lost-reply-${randomBytes(4).toString('hex')}`
    // The worker id is a parameter of the claim and of the worker's row in the workers table;
    // only that row also names the worker's tasks: the cut hits the claim's reply.
    cutter.arm(workerId, { unless: 'lost.reply' })
    await start([t], workerId)
    const { id } = await db.tr.enqueue(t, {})
    await waitUntil(async () => (await taskRow(id)).state === 'succeeded' || null, { what: 'the task to succeed', timeoutMs: 15_000 })
    expect(cutter.cuts).toBe(1)
    expect(runs).toBe(1)
    const r = await taskRow(id)
    expect(r.attempt).toBe(1)
    expect(r.worker_id).toMatch(new RegExp(`^${workerId}:[0-9a-f]{6}$`))
  })

  it('on the Postgres lane: the next claim takes back what the lost one claimed, and the task runs in its first attempt, once', async () => {
    let runs = 0
    const t = defineTask({ name: 'lost.pg-lane', payload: z.object({}), maxAttempts: 1, run: () => void runs++ })
    const workerId = `lost-pg-${randomBytes(4).toString('hex')}`
    const { id } = await db.tr.enqueue(t, {})
    const cutsBefore = cutter.cuts
    // Not the worker's row (it names the task) nor its entry in relays: the first claim from Postgres.
    cutter.arm(workerId, { unless: ['lost.pg-lane', 'relay_id'] })
    await start([t], workerId, 'postgres')
    await waitUntil(async () => (await taskRow(id)).state === 'succeeded' || null, { what: 'the task to succeed', timeoutMs: 15_000 })
    expect(cutter.cuts - cutsBefore).toBe(1)
    expect(runs).toBe(1)
    expect((await taskRow(id)).attempt).toBe(1)
  })

  it('workers given the same workerId are still distinct instances (the resent claim is per instance)', () => {
    const tasks = [defineTask({ name: 'lost.same-id', payload: z.object({}), run: () => {} })]
    const a = new Worker(workerTr, { redis: redisUrl(), tasks, workerId: 'same' })
    const b = new Worker(workerTr, { redis: redisUrl(), tasks, workerId: 'same' })
    expect(a.workerId).toMatch(/^same:[0-9a-f]{6}$/)
    expect(b.workerId).toMatch(/^same:[0-9a-f]{6}$/)
    expect(a.workerId).not.toBe(b.workerId)
  })

  it('a duplicated message of a task the worker is running claims nothing new', async () => {
    let runs = 0
    let release!: () => void
    const held = new Promise<void>((r) => (release = r))
    const t = defineTask({
      name: 'lost.duplicate',
      payload: z.object({}),
      run: async () => {
        runs++
        await held
      },
    })
    const { worker, keyPrefix } = await start([t], `dup-${randomBytes(4).toString('hex')}`)
    const stale: number[] = []
    worker.events.on('worker:stale-messages', (e) => stale.push(e.count))
    const { id } = await db.tr.enqueue(t, {})
    await waitUntil(() => runs === 1 || null, { what: 'the handler to start' })
    const { dispatch_token: token } = await taskRow(id)
    // The same message again (as a resent RPUSH or a push-back would leave it): the claim
    // statement returns the row to its own worker, which must not start it twice.
    await redis.rpush(redisKeys(keyPrefix).ready(t.policy.queue), encodeMessage(String(id), token))
    await waitUntil(() => stale.length > 0 || null, { what: 'the duplicate to be dropped' })
    expect(stale).toEqual([1])
    release()
    await waitUntil(async () => (await taskRow(id)).state === 'succeeded' || null, { what: 'the task to succeed' })
    expect(runs).toBe(1)
    expect((await taskRow(id)).attempt).toBe(1)
  })
})
