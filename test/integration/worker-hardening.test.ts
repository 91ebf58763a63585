import { randomBytes, randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { pino } from 'pino'
import { Relay, Worker, defineTask, type Task } from '../../src/index.ts'
import { Completer } from '../../src/worker/completer.ts'
import { redisKeys } from '../../src/redis/keys.ts'
import { taskDeferNoHandler, workerRegister } from '../../src/db/worker-queries.ts'
import { MAX_ERROR_MESSAGE_CHARS, MAX_RESULT_BYTES } from '../../src/worker/run-attempt.ts'
import { healthReport } from '../../src/cli/health.ts'
import { workerHealth } from '../../src/cli/services.ts'
import { createTestDb, redisUrl, waitUntil, type TestDb } from '../support/db.ts'
import { makeTask, taskRow } from '../support/factory.ts'

/**
 * Issue 12: one bad task never stops a worker. Each test here failed on the
 * main branch before the fix (see the closing note of issue 12).
 */
let db: TestDb
const started: Array<{ stop(): Promise<void> }> = []

beforeAll(async () => {
  db = await createTestDb()
})

afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()))
})

afterAll(async () => {
  await db.cleanup()
})

const fast = { leaseMs: 3000, heartbeatMs: 500, blockMs: 200 }

async function startPipeline(tasks: Task<any, any>[], worker: Partial<ConstructorParameters<typeof Worker>[1]> = {}) {
  const keyPrefix = `t${randomBytes(4).toString('hex')}`
  const relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 })
  const w = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks, concurrency: 10, ...fast, ...worker })
  started.push(relay, w)
  await relay.start()
  await w.start()
  return { relay, worker: w, keyPrefix }
}

async function rowsOf(ids: string[]) {
  return Promise.all(ids.map(async (id) => (await taskRow(db.pool, db.schema, id))!))
}

describe('outcomes Postgres cannot store fail that attempt alone', () => {
  it('NUL and lone surrogates in results and errors, and huge backoffs, leave the healthy tasks of the worker alone', async () => {
    const nulResult = defineTask({ name: 'h.nul-result', payload: z.object({}), run: () => 'a\u0000b' })
    const surrogateResult = defineTask({ name: 'h.surrogate-result', payload: z.object({}), run: async () => ({ text: '😀'.slice(0, 1) }) })
    const nulError = defineTask({
      name: 'h.nul-error',
      payload: z.object({}),
      maxAttempts: 1,
      run: async () => {
        throw new Error('bad\u0000message \ud800')
      },
    })
    const hugeBackoff = defineTask({
      name: 'h.huge-backoff',
      payload: z.object({}),
      maxAttempts: 2,
      backoff: () => 1e20,
      run: async () => {
        throw new Error('retry me much later')
      },
    })
    const healthy = defineTask({ name: 'h.healthy', payload: z.object({ i: z.number() }), run: async ({ i }) => i * 2 })
    await startPipeline([nulResult, surrogateResult, nulError, hugeBackoff, healthy])
    const bad = await Promise.all([nulResult, surrogateResult, nulError, hugeBackoff].map((t) => db.tr.enqueue(t, {})))
    const good = await Promise.all(Array.from({ length: 20 }, (_, i) => db.tr.enqueue(healthy, { i })))
    const goodIds = good.map((t) => t.id)
    await waitUntil(async () => (await rowsOf(goodIds)).every((r) => r.state === 'succeeded'), { what: 'every healthy task succeeded', timeoutMs: 15_000 })
    for (const r of await rowsOf(goodIds)) expect(r.attempt).toBe(1)

    const [nr, sr, ne, hb] = await waitUntil(async () => {
      const rows = await rowsOf(bad.map((t) => t.id))
      return rows.every((r) => r.state === 'failed' || (r.state === 'pending' && r.attempt === 1)) && rows
    }, { what: 'the bad tasks recorded' })
    expect(nr!.state).toBe('failed')
    expect(nr!.last_error!.kind).toBe('invalid_result')
    expect(nr!.last_error!.message).toContain('NUL')
    expect(sr!.state).toBe('failed')
    expect(sr!.last_error!.kind).toBe('invalid_result')
    expect(sr!.last_error!.message).toContain('.text')
    expect(ne!.state).toBe('failed')
    expect(ne!.last_error!.kind).toBe('error')
    expect(ne!.last_error!.message).toBe('bad\ufffdmessage \ufffd')
    expect(hb!.state).toBe('pending')
    expect(new Date(hb!.run_at).getFullYear()).toBeGreaterThan(new Date().getFullYear() + 5)
  })

  it('a batch Postgres refuses is split until only the attempt at fault is failed (invalid_result)', async () => {
    // Outcomes that bypass run-attempt's checks: the completer is the last line of defence.
    const ids = await Promise.all(Array.from({ length: 9 }, () => makeTask(db.pool, db.schema, { state: 'running', attempt: 1 })))
    const completer = new Completer(db.tr.transitionExecutor, db.schema, 1, pino({ level: 'silent' }))
    const results = await Promise.all(
      ids.map(
        (id, i) =>
          new Promise<boolean>((resolve) =>
            completer.record(id, 1, { state: 'succeeded', result: i === 4 ? '"\\u0000"' : String(i) }, resolve),
          ),
      ),
    )
    expect(results).toEqual(ids.map(() => true))
    const rows = await rowsOf(ids)
    expect(rows.map((r) => r.state)).toEqual(ids.map((_, i) => (i === 4 ? 'failed' : 'succeeded')))
    expect(rows[4]!.last_error!.kind).toBe('invalid_result')
    expect(rows[4]!.last_error!.message).toContain('22P05')
    // What the worker reports (events, logs, metrics) is what the row got.
    const reported = await new Promise<string>((resolve) =>
      makeTask(db.pool, db.schema, { state: 'running', attempt: 1 }).then((id) =>
        completer.record(id, 1, { state: 'succeeded', result: '"\\u0000"' }, (_recorded, written) => resolve(written.state)),
      ),
    )
    expect(reported).toBe('failed')
    expect(rows[3]!.result).toBe(3)
  })

  it('caps stored error messages and refuses results over the limit', async () => {
    const longError = defineTask({
      name: 'h.long-error',
      payload: z.object({}),
      maxAttempts: 1,
      run: async () => {
        throw new Error('x'.repeat(20 * 1024 * 1024))
      },
    })
    const bigResult = defineTask({ name: 'h.big-result', payload: z.object({}), run: async () => 'y'.repeat(MAX_RESULT_BYTES + 1) })
    await startPipeline([longError, bigResult])
    const a = await db.tr.enqueue(longError, {})
    const b = await db.tr.enqueue(bigResult, {})
    const [ra, rb] = await waitUntil(async () => {
      const rows = await rowsOf([a.id, b.id])
      return rows.every((r) => r.state === 'failed') && rows
    }, { what: 'both failed' })
    expect(ra!.last_error!.message.length).toBeLessThanOrEqual(MAX_ERROR_MESSAGE_CHARS)
    expect(ra!.last_error!.message).toContain('[truncated: 20971520 characters]')
    expect(rb!.last_error!.kind).toBe('invalid_result')
    expect(rb!.last_error!.message).toContain('over the limit')
    expect(rb!.result).toBeNull()
  })

  it('an error whose message getter throws is recorded with a clear message, not as a lost worker', async () => {
    const weird = defineTask({
      name: 'h.weird-error',
      payload: z.object({}),
      maxAttempts: 1,
      run: async () => {
        const err = new Error('hidden')
        Object.defineProperty(err, 'message', {
          get() {
            throw new Error('no message for you')
          },
        })
        throw err
      },
    })
    await startPipeline([weird])
    const t = await db.tr.enqueue(weird, {})
    const row = await waitUntil(async () => {
      const r = await taskRow(db.pool, db.schema, t.id)
      return r?.state === 'failed' && r
    }, { what: 'failed' })
    expect(row.last_error!.kind).toBe('error')
    expect(row.last_error!.message).toMatch(/could not be read/)
  })
})

describe('bad messages in Redis', () => {
  it('a malformed message popped with a valid one does not stall the valid task', async () => {
    const t = defineTask({ name: 'h.after-bad-message', payload: z.object({}), run: async () => 'ran' })
    const keyPrefix = `t${randomBytes(4).toString('hex')}`
    const relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 })
    started.push(relay)
    await relay.start()
    const { id } = await db.tr.enqueue(t, {})
    await waitUntil(async () => (await taskRow(db.pool, db.schema, id))?.state === 'dispatched', { what: 'dispatched' })
    // At the head of the list: one blocking read pops both into one claim.
    const redis = new Redis(redisUrl())
    try {
      await redis.lpush(redisKeys(keyPrefix).ready('default'), `1:${'-'.repeat(36)}`, `9223372036854775808:${randomUUID()}`)
    } finally {
      redis.disconnect()
    }
    const worker = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks: [t], ...fast })
    started.push(worker)
    await worker.start()
    const row = await waitUntil(async () => {
      const r = await taskRow(db.pool, db.schema, id)
      return r?.state === 'succeeded' && r
    }, { what: 'the valid task succeeded', timeoutMs: 10_000 })
    expect(row.attempt).toBe(1)
  })
})

describe('rolling deploys', () => {
  it('a worker without the handler hands the task back; a worker that has it runs it; none fail', async () => {
    const v1 = defineTask({ name: 'h.deploy-old', payload: z.object({}), run: async () => 'old' })
    const newTask = defineTask({ name: 'h.deploy-new', payload: z.object({ i: z.number() }), run: async ({ i }) => i })
    // The old worker knows only the old task; both listen on the same queue.
    const { keyPrefix } = await startPipeline([v1])
    const ids = (await Promise.all(Array.from({ length: 40 }, (_, i) => db.tr.enqueue(newTask, { i })))).map((t) => t.id)
    // Before any new worker runs: the tasks wait, visibly, without failing.
    const waiting = await waitUntil(async () => {
      const rows = await rowsOf(ids)
      return rows.filter((r) => r.last_error?.kind === 'no_handler').length >= 10 && rows
    }, { what: 'tasks deferred by the old worker' })
    expect(waiting.filter((r) => r.state === 'failed')).toEqual([])
    const newWorker = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks: [v1, newTask], concurrency: 10, ...fast })
    started.push(newWorker)
    await newWorker.start()
    const rows = await waitUntil(async () => {
      const r = await rowsOf(ids)
      return r.every((x) => x.state === 'succeeded' || x.state === 'failed') && r
    }, { what: 'every new-type task finished', timeoutMs: 30_000 })
    expect(rows.filter((r) => r.state !== 'succeeded').map((r) => r.last_error)).toEqual([])
    // Deferrals cost no attempt: the one run used one.
    for (const r of rows) expect(r.max_attempts - r.attempt).toBe(2)
  })
})

describe('deferring a task without a handler', () => {
  async function deferOnce(workers: Array<{ queues: string[]; tasks: string[] }>): Promise<number> {
    await db.pool.query(`delete from "${db.schema}".workers`)
    for (const [i, w] of workers.entries()) {
      await workerRegister(db.tr.executor, { schema: db.schema, workerId: `w${i}`, queues: w.queues, tasks: w.tasks, ttlMs: 60_000 })
    }
    const id = await makeTask(db.pool, db.schema, { name: 'h.defer-me', queue: 'jobs', state: 'running', attempt: 1 })
    await taskDeferNoHandler(db.tr.executor, { schema: db.schema, ids: [id], attempts: [1], workerId: 'old' })
    const res = await db.pool.query(`select extract(epoch from run_at - now()) * 1000 as wait from "${db.schema}".tasks where id = $1`, [id])
    return Number(res.rows[0].wait)
  }

  it('comes back at once only while a running worker of its queue has the task', async () => {
    expect(await deferOnce([{ queues: ['jobs'], tasks: ['h.defer-me'] }])).toBeLessThan(300)
    // A worker that has the task but serves another queue will never claim it: back off.
    expect(await deferOnce([{ queues: ['other'], tasks: ['h.defer-me'] }])).toBeGreaterThan(400)
    expect(await deferOnce([])).toBeGreaterThan(400)
  })
})

describe('handlers that ignore their abort', () => {
  it('when they hold every slot, prefetched tasks go back and the worker reports unhealthy', async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const stubborn = defineTask({
      name: 'h.stubborn',
      payload: z.object({}),
      timeoutMs: 1000,
      maxAttempts: 1,
      run: () => gate, // ignores ctx.signal
    })
    const quick = defineTask({ name: 'h.quick', payload: z.object({ i: z.number() }), run: async ({ i }) => i })
    const { worker } = await startPipeline([stubborn, quick], { concurrency: 1, prefetch: 3 })
    try {
      const s = await db.tr.enqueue(stubborn, {})
      await waitUntil(async () => (await taskRow(db.pool, db.schema, s.id))?.state === 'running', { what: 'stubborn running' })
      // Prefetched behind the stubborn handler, before its timeout (1 s) and grace (1 s) run out.
      const quickIds = (await Promise.all([1, 2, 3].map((i) => db.tr.enqueue(quick, { i })))).map((t) => t.id)
      await waitUntil(async () => (await rowsOf(quickIds)).every((r) => r.state === 'running'), { what: 'the quick tasks prefetched' })
      // The stubborn attempt times out and is recorded; its code keeps the only slot.
      await waitUntil(async () => (await taskRow(db.pool, db.schema, s.id))?.state === 'failed', { what: 'stubborn timed out' })
      const report = await waitUntil(
        () => {
          const r = healthReport([{ name: 'worker', service: worker, staleAfterMs: 60_000, ...workerHealth(worker) }])
          return !r.ok && r
        },
        { what: 'health to report the worker whose every slot is stuck', timeoutMs: 5000 },
      )
      expect(report.services.worker!.problem).toMatch(/ignored its timeout/)
      // Nothing waits behind the stuck handler: the prefetched tasks went back for other workers.
      const rows = await waitUntil(async () => {
        const r = await rowsOf(quickIds)
        return r.every((x) => x.state !== 'running') && r
      }, { what: 'the prefetched tasks handed back', timeoutMs: 5000 })
      expect(rows.map((r) => r.last_error?.kind)).toEqual(['stuck', 'stuck', 'stuck'])
      expect(rows.map((r) => r.max_attempts - r.attempt)).toEqual([3, 3, 3]) // no attempt used
      expect(worker.stuckCount).toBe(1)
    } finally {
      release()
    }
    await waitUntil(() => worker.stuckCount === 0, { what: 'the stuck handler settled' })
  })
})
