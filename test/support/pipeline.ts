import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll } from 'vitest'
import { Redis } from 'ioredis'
import { Relay, Worker, type Task } from '../../src/index.ts'
import { createTestDb, redisUrl, waitUntil, type TestDb } from './db.ts'

/**
 * The stack the test/integration/pipeline-*.test.ts files share: one migrated
 * schema and one Redis client per file, and every service a test starts is
 * stopped after it. `db` and `redis` are live bindings, set by usePipeline().
 */

export let db: TestDb
export let redis: Redis
export const started: Array<{ stop(): Promise<void> }> = []

/** Databases of their own that tests made with localDb(): dropped after their services stop. */
const localDbs: TestDb[] = []

/** Register the file's hooks; call once at the top of a test file. */
export function usePipeline(): void {
  beforeAll(async () => {
    db = await createTestDb()
    redis = new Redis(redisUrl())
  })

  afterEach(async () => {
    // Every service a test started is stopped, even when the test failed.
    await Promise.all(started.splice(0).map((s) => s.stop()))
    await Promise.all(localDbs.splice(0).map((d) => d.cleanup()))
  })

  afterAll(async () => {
    redis.disconnect()
    await db.cleanup()
  })
}

/** A test database of its own (for tests that need the whole table to themselves), dropped after the test. */
export async function localDb(): Promise<TestDb> {
  const local = await createTestDb()
  localDbs.push(local)
  return local
}

/** A key prefix of its own per test: tests share one Redis. */
export function prefix() {
  return `t${randomBytes(4).toString('hex')}`
}

export const fast = { leaseMs: 1000, heartbeatMs: 200, blockMs: 200 }

export async function startPipeline(tasks: Task<any, any>[], opts: { concurrency?: number; shutdownGraceMs?: number; keyPrefix?: string } = {}) {
  const keyPrefix = opts.keyPrefix ?? prefix()
  const relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 })
  const worker = new Worker(db.tr, {
    redis: redisUrl(),
    keyPrefix,
    tasks,
    concurrency: opts.concurrency ?? 10,
    shutdownGraceMs: opts.shutdownGraceMs ?? 2000,
    ...fast,
  })
  started.push(relay, worker)
  await relay.start()
  await worker.start()
  return { relay, worker, keyPrefix }
}

/** A relay whose safety-net poll (60 s) is far longer than any test here, and a worker. */
export async function startWithoutPolling(tasks: Task<any, any>[]): Promise<void> {
  const keyPrefix = prefix()
  const relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 60_000, lingerMs: 0 })
  const worker = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks, ...fast })
  started.push(relay, worker)
  await relay.start()
  await worker.start()
}

/**
 * Set a relay up without its loop, for deterministic rounds (call
 * relay.runOnce() yourself); torn down after the test, before its database.
 */
export async function withoutLoop(relay: Relay): Promise<void> {
  const service = relay as unknown as { onStart(): Promise<void>; onStop(): Promise<void> }
  await service.onStart()
  started.push({ stop: () => service.onStop() })
}

export async function row(id: string) {
  const res = await db.pool.query(`select * from "${db.schema}".tasks where id = $1`, [id])
  return res.rows[0]
}

export async function finalRow(id: string, timeoutMs = 15_000) {
  return waitUntil(
    async () => {
      const r = await row(id)
      return ['succeeded', 'failed', 'cancelled'].includes(r.state) ? r : null
    },
    { timeoutMs, what: `task ${id} to finish` },
  )
}
