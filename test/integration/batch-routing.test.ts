import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { z } from 'zod'
import { Relay, TaskRelay, Worker, defineTask } from '../../src/index.ts'
import type { Executor } from '../../src/db/executor.ts'
import { createTestDb, databaseUrl, redisUrl, waitUntil, type TestDb } from '../support/db.ts'

/**
 * The relay's and worker's batch statements must run on the pools that never
 * plan a sequential scan (batch-plans.test.ts shows why): this records the
 * first line of every statement each executor ran while a real relay and
 * worker took a task through dispatch, claim, heartbeats and finish.
 */
class RecordingTaskRelay extends TaskRelay {
  readonly ran = { batch: new Set<string>(), transition: new Set<string>(), main: new Set<string>() }

  #record(into: Set<string>, inner: Executor): Executor {
    return {
      query: (text, values) => {
        into.add(text.trimStart().split('\n')[0]!)
        return inner.query(text, values)
      },
    }
  }

  override get batchExecutor(): Executor {
    return this.#record(this.ran.batch, super.batchExecutor)
  }

  override get transitionExecutor(): Executor {
    return this.#record(this.ran.transition, super.transitionExecutor)
  }

  override get executor(): Executor {
    return this.#record(this.ran.main, super.executor)
  }
}

let db: TestDb
let pool: pg.Pool
let tr: RecordingTaskRelay

beforeAll(async () => {
  db = await createTestDb()
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 4 })
  pool.on('error', () => {})
  tr = new RecordingTaskRelay({ db: pool, schema: db.schema })
})

afterAll(async () => {
  await tr?.close()
  await pool?.end()
  await db?.cleanup()
})

describe('which pool runs which statement', () => {
  it('sends dispatch and outcomes to the transition pool, claims and heartbeats to the batch pool', async () => {
    const slow = defineTask({ name: 'routing.slow', payload: z.object({}), run: () => new Promise((r) => setTimeout(r, 700)) })
    const keyPrefix = `routing:${randomBytes(4).toString('hex')}`
    const relay = new Relay(tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 })
    const worker = new Worker(tr, { redis: redisUrl(), keyPrefix, tasks: [slow], leaseMs: 1000, heartbeatMs: 200, blockMs: 200 })
    await relay.start()
    await worker.start()
    try {
      const { id } = await tr.enqueue(slow, {})
      await waitUntil(async () => (await tr.getTask(id))?.state === 'succeeded', { what: 'the task to succeed' })
    } finally {
      await worker.stop()
      await relay.stop()
    }
    const on = (set: Set<string>, prefix: string) => [...set].some((line) => line.startsWith(prefix))
    // An idle worker may claim the task from Redis or straight from Postgres on its NOTIFY
    // (whichever wins the race): both claims are on the batch pool.
    expect(on(tr.ran.batch, '-- Worker: claim') || on(tr.ran.batch, '-- Worker, Postgres lane: claim')).toBe(true)
    expect(on(tr.ran.batch, '-- Worker: extend the leases')).toBe(true)
    expect(on(tr.ran.transition, '-- Relay: claim up to')).toBe(true)
    expect(on(tr.ran.transition, '-- Worker: record the outcomes')).toBe(true)
    for (const prefix of ['-- Worker: claim', '-- Worker, Postgres lane: claim', '-- Worker: extend the leases', '-- Relay: claim up to', '-- Worker: record the outcomes']) {
      expect(on(tr.ran.main, prefix), prefix).toBe(false)
    }
  })
})
