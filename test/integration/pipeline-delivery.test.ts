import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { NonRetryableError, Relay, Worker, defineTask } from '../../src/index.ts'
import { redisUrl, waitUntil } from '../support/db.ts'
import { taskRow } from '../support/factory.ts'
import { db, fast, finalRow, prefix, redis, row, startPipeline, started, usePipeline } from '../support/pipeline.ts'

/**
 * Delivery end to end: a committed task runs once, its outcome lands in
 * its row (results, retries, timeouts, cancels, duplicates, concurrency).
 * Real Postgres and Redis; the shared stack is in test/support/pipeline.ts.
 */

usePipeline()

describe('delivery', () => {
  it('runs a committed task and stores its JSON result', async () => {
    const double = defineTask({ name: 'p.double', payload: z.object({ n: z.number() }), run: async ({ n }) => ({ doubled: n * 2 }) })
    await startPipeline([double])
    const { id } = await db.tr.enqueue(double, { n: 21 })
    const r = await finalRow(id)
    expect(r.state).toBe('succeeded')
    expect(r.result).toEqual({ doubled: 42 })
    expect(r.attempt).toBe(1)
    expect(r.started_at.getTime()).toBeGreaterThanOrEqual(r.dispatched_at.getTime())
    expect(r.lease_expires_at).toBeNull()
  })

  it('never runs a rolled-back task', async () => {
    const runs: number[] = []
    const t = defineTask({ name: 'p.rollback', payload: z.object({ n: z.number() }), run: async ({ n }) => void runs.push(n) })
    await startPipeline([t])
    const client = await db.pool.connect()
    await client.query('begin')
    await db.tr.enqueue(client, t, { n: 1 })
    await client.query('rollback')
    client.release()
    const { id } = await db.tr.enqueue(t, { n: 2 })
    await finalRow(id)
    expect(runs).toEqual([2])
  })

  it('retries with backoff, keeps the last error, then succeeds', async () => {
    let calls = 0
    const flaky = defineTask({
      name: 'p.flaky',
      payload: z.object({}),
      maxAttempts: 3,
      backoff: { type: 'fixed', delayMs: 300, jitter: false },
      run: async (_p, ctx) => {
        calls++
        if (ctx.attempt < 3) throw new Error(`flake ${ctx.attempt}`)
        return 'ok'
      },
    })
    await startPipeline([flaky])
    const { id } = await db.tr.enqueue(flaky, {})
    // After the first failure the row waits in pending with run_at pushed out by the backoff.
    const retrying = await waitUntil(async () => {
      const r = await row(id)
      return r.state === 'pending' && r.attempt === 1 ? r : null
    }, { what: 'first retry' })
    expect(retrying.last_error.message).toBe('flake 1')
    expect(retrying.last_error.kind).toBe('error')
    expect(retrying.run_at.getTime() - retrying.started_at.getTime()).toBeGreaterThanOrEqual(290)
    const r = await finalRow(id)
    expect(r.state).toBe('succeeded')
    expect(r.attempt).toBe(3)
    expect(calls).toBe(3)
    expect(r.last_error.message).toBe('flake 2')
  })

  it('fails at once on NonRetryableError and after the last attempt otherwise', async () => {
    const fatal = defineTask({ name: 'p.fatal', payload: z.object({}), maxAttempts: 5, run: async () => { throw new NonRetryableError('card declined') } })
    const always = defineTask({
      name: 'p.always',
      payload: z.object({}),
      maxAttempts: 2,
      backoff: { type: 'fixed', delayMs: 0 },
      run: async () => { throw new Error('still broken') },
    })
    await startPipeline([fatal, always])
    const a = await db.tr.enqueue(fatal, {})
    const b = await db.tr.enqueue(always, {})
    const ra = await finalRow(a.id)
    expect(ra).toMatchObject({ state: 'failed', attempt: 1 })
    expect(ra.last_error).toMatchObject({ message: 'card declined', kind: 'non_retryable', attempt: 1 })
    const rb = await finalRow(b.id)
    expect(rb).toMatchObject({ state: 'failed', attempt: 2 })
    expect(rb.last_error).toMatchObject({ message: 'still broken', attempt: 2 })
    expect(rb.finished_at).not.toBeNull()
  })

  it('aborts ctx.signal on timeout and counts the attempt as failed', async () => {
    let sawAbort = false
    const slow = defineTask({
      name: 'p.slow',
      payload: z.object({}),
      timeoutMs: 150,
      maxAttempts: 1,
      run: (_p, ctx) =>
        new Promise((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => {
            sawAbort = true
            reject(ctx.signal.reason)
          })
        }),
    })
    // Never settles and ignores its signal: recorded anyway after the grace.
    const stuck = defineTask({ name: 'p.stuck', payload: z.object({}), timeoutMs: 100, maxAttempts: 1, run: () => new Promise(() => {}) })
    await startPipeline([slow, stuck])
    const a = await db.tr.enqueue(slow, {})
    const b = await db.tr.enqueue(stuck, {})
    const ra = await finalRow(a.id)
    expect(sawAbort).toBe(true)
    expect(ra.state).toBe('failed')
    expect(ra.last_error).toMatchObject({ kind: 'timeout' })
    expect(ra.last_error.message).toContain('timeoutMs (150 ms)')
    const rb = await finalRow(b.id)
    expect(rb.state).toBe('failed')
    expect(rb.last_error.kind).toBe('timeout')
  })

  it('records non-Error throws and non-JSON results', async () => {
    const throwsString = defineTask({ name: 'p.throws-string', payload: z.object({}), maxAttempts: 1, run: async () => { throw 'plain string' } })
    const bigint = defineTask({ name: 'p.bigint', payload: z.object({}), run: async () => ({ n: 10n }) })
    await startPipeline([throwsString, bigint])
    const a = await db.tr.enqueue(throwsString, {})
    const b = await db.tr.enqueue(bigint, {})
    const ra = await finalRow(a.id)
    expect(ra.state).toBe('failed')
    expect(ra.last_error.message).toContain('plain string')
    const rb = await finalRow(b.id)
    expect(rb.state).toBe('failed')
    expect(rb.attempt).toBe(1) // not retried: the work was done, only the result can't be stored
    expect(rb.last_error.kind).toBe('invalid_result')
    expect(rb.last_error.message).toMatch(/not JSON/)
  })

  it('fails tasks whose payload no longer matches; defers tasks it has no handler for, naming the task and queue', async () => {
    const known = defineTask({ name: 'p.known', payload: z.object({ n: z.number() }), run: async () => 'ran' })
    await startPipeline([known])
    const unknownId = (await db.pool.query(`select "${db.schema}".enqueue('p.nobody-handles-this', '{}') as id`)).rows[0].id
    // A payload written before the schema changed (bypassing enqueue's validation).
    const staleId = (await db.pool.query(`select "${db.schema}".enqueue('p.known', '{"n":"not a number"}') as id`)).rows[0].id
    // No handler here: waiting for a worker that has one (a rolling deploy), not failed.
    const ru = await waitUntil(async () => {
      const row = await taskRow(db.pool, db.schema, String(unknownId))
      return row?.last_error?.kind === 'no_handler' && row
    }, { what: 'the unknown task deferred' })
    expect(ru.state).toBe('pending')
    expect(ru.last_error!.message).toContain('p.nobody-handles-this')
    expect(ru.last_error!.message).toContain('queue default')
    expect(ru.max_attempts - ru.attempt).toBe(3) // no attempt used
    // Nobody will ever run it: cancel it, or the next tests' relays dispatch it into their lists.
    await db.pool.query(`select "${db.schema}".cancel($1)`, [unknownId])
    const rs = await finalRow(String(staleId))
    expect(rs.state).toBe('failed')
    expect(rs.last_error.kind).toBe('invalid_payload')
    expect(rs.last_error.message).toContain('p.known')
    expect(rs.last_error.message).toMatch(/n/)
  })

  it('never runs more handlers at once than concurrency', async () => {
    let running = 0
    let maxRunning = 0
    const t = defineTask({
      name: 'p.capped',
      payload: z.object({ i: z.number() }),
      run: async () => {
        running++
        maxRunning = Math.max(maxRunning, running)
        await new Promise((r) => setTimeout(r, 20))
        running--
      },
    })
    await startPipeline([t], { concurrency: 3 })
    const { ids } = await db.tr.enqueueMany(Array.from({ length: 30 }, (_, i) => ({ task: t, payload: { i } })))
    await waitUntil(async () => (await db.pool.query(`select count(*)::int as c from "${db.schema}".tasks where id = any($1) and state = 'succeeded'`, [ids])).rows[0].c === 30, { what: '30 tasks' })
    expect(maxRunning).toBe(3)
  })

  it('drops duplicated and stale messages without running the handler twice', async () => {
    let runs = 0
    const t = defineTask({ name: 'p.dup', payload: z.object({}), run: async () => void runs++ })
    const keyPrefix = prefix()
    const relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix })
    started.push(relay)
    await relay.start()
    await relay.stop()
    const { id } = await db.tr.enqueue(t, {})
    await relay.start()
    await waitUntil(async () => (await row(id)).state === 'dispatched', { what: 'dispatch' })
    await relay.stop()
    const key = `${keyPrefix}:{default}:ready`
    const [message] = await redis.lrange(key, 0, -1)
    // The same message three times, plus one whose token is stale.
    await redis.rpush(key, message!, message!, `${id}:00000000-0000-4000-8000-000000000000`)
    const worker = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks: [t], ...fast })
    const stale: number[] = []
    worker.events.on('worker:stale-messages', ({ count }) => stale.push(count))
    started.push(worker)
    await worker.start()
    await finalRow(id)
    await waitUntil(() => (stale.reduce((a, b) => a + b, 0) === 3 ? true : null), { what: 'stale messages dropped' })
    expect(runs).toBe(1)
    expect(await redis.llen(key)).toBe(0)
  })

  it('cancelling a running task aborts its handler and discards its outcome', async () => {
    let aborted: unknown = null
    const t = defineTask({
      name: 'p.cancellable',
      payload: z.object({}),
      run: (_p, ctx) =>
        new Promise((resolve) => {
          ctx.signal.addEventListener('abort', () => {
            aborted = ctx.signal.reason
            resolve('finished anyway')
          })
        }),
    })
    await startPipeline([t])
    const { id } = await db.tr.enqueue(t, {})
    await waitUntil(async () => (await row(id)).state === 'running', { what: 'running' })
    expect(await db.tr.cancel(id)).toBe(true)
    await waitUntil(() => aborted, { what: 'handler aborted by heartbeat' })
    expect((aborted as Error).name).toBe('LeaseLostError')
    const r = await row(id)
    expect(r.state).toBe('cancelled')
    expect(r.result).toBeNull()
  })

  it('ctx.heartbeat extends the lease', async () => {
    let before: Date | null = null
    let after: Date | null = null
    const t = defineTask({
      name: 'p.heartbeat',
      payload: z.object({}),
      run: async (_p, ctx) => {
        before = (await row(ctx.task.id)).lease_expires_at
        await new Promise((r) => setTimeout(r, 50))
        await ctx.heartbeat()
        after = (await row(ctx.task.id)).lease_expires_at
      },
    })
    const keyPrefix = prefix()
    const relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 })
    const worker = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks: [t], leaseMs: 60_000, heartbeatMs: 20_000, blockMs: 200 })
    started.push(relay, worker)
    await relay.start()
    await worker.start()
    const { id } = await db.tr.enqueue(t, {})
    expect((await finalRow(id)).state).toBe('succeeded')
    expect(after!.getTime()).toBeGreaterThan(before!.getTime())
  })
})
