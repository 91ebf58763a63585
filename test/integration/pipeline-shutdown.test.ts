import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { Worker, defineTask } from '../../src/index.ts'
import { redisUrl, waitUntil } from '../support/db.ts'
import { SEC, dbNow, makeTask, taskRow } from '../support/factory.ts'
import { db, fast, finalRow, prefix, row, startPipeline, started, usePipeline } from '../support/pipeline.ts'

/**
 * Graceful shutdown and hand-back, and the rule that one task never runs twice at once.
 * Real Postgres and Redis; the shared stack is in test/support/pipeline.ts.
 */

usePipeline()

describe('graceful shutdown', () => {
  it('lets in-flight tasks finish within the grace period', async () => {
    let started = false
    const t = defineTask({
      name: 'p.finishes',
      payload: z.object({}),
      run: async () => {
        started = true
        await new Promise((r) => setTimeout(r, 300))
        return 'done'
      },
    })
    const { worker } = await startPipeline([t], { shutdownGraceMs: 5000 })
    const { id } = await db.tr.enqueue(t, {})
    // The handler itself, not only the row: a task claimed but not yet started is handed back at stop.
    await waitUntil(() => started, { what: 'the handler to start' })
    await worker.stop()
    const r = await row(id)
    expect(r.state).toBe('succeeded')
    expect(r.result).toBe('done')
  })

  it('hands back tasks that outlive the grace period without using an attempt', async () => {
    let firstSignal: AbortSignal | null = null
    const long = defineTask({
      name: 'p.long',
      payload: z.object({}),
      maxAttempts: 1,
      run: async (_p, ctx) => {
        if (ctx.attempt === 1) {
          firstSignal = ctx.signal
          await new Promise((r) => ctx.signal.addEventListener('abort', r))
          return 'aborted run'
        }
        return 'second run'
      },
    })
    const keyPrefix = prefix()
    const first = await startPipeline([long], { shutdownGraceMs: 100, keyPrefix })
    const { id } = await db.tr.enqueue(long, {})
    await waitUntil(() => firstSignal !== null, { what: 'the handler to start' })
    await first.worker.stop()
    expect(firstSignal!.aborted).toBe(true)
    const handedBack = await row(id)
    // Back to pending; the relay, still running, may already have dispatched it again.
    expect(['pending', 'dispatched']).toContain(handedBack.state)
    expect(handedBack.attempt).toBe(1)
    expect(handedBack.max_attempts).toBe(2) // the hand-back did not cost the only attempt
    expect(handedBack.last_error.kind).toBe('shutdown')
    const second = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks: [long], ...fast })
    started.push(second)
    await second.start()
    const r = await finalRow(id)
    expect(r).toMatchObject({ state: 'succeeded', result: 'second run', attempt: 2 })
  })
})

describe('never concurrent', () => {
  it('retry() of a task cancelled while running waits until the old attempt lost its lease', async () => {
    const id = await makeTask(db.pool, db.schema, { state: 'running', attempt: 1, maxAttempts: 3, leaseExpiresAt: dbNow(20 * SEC) })
    expect(await db.tr.cancel(id)).toBe(true)
    const cancelled = (await taskRow(db.pool, db.schema, id))!
    expect(cancelled.last_error).toMatchObject({ kind: 'cancelled', attempt: 1 })
    expect(await db.tr.retry(id)).toBe(true)
    const res = await db.pool.query(`select state, extract(epoch from run_at - now()) as wait_s from "${db.schema}".tasks where id = $1`, [id])
    expect(res.rows[0].state).toBe('pending')
    // The old handler learns of the cancel at its next heartbeat; no new run before its lease ends.
    expect(Number(res.rows[0].wait_s)).toBeGreaterThan(15)
  })

  it('a handler that ignores the shutdown abort is left to its lease, not handed back', async () => {
    let release: () => void = () => {}
    const stubborn = defineTask({
      name: 'p.stubborn',
      payload: z.object({}),
      run: () => new Promise<void>((resolve) => (release = resolve)), // never looks at ctx.signal
    })
    const { worker } = await startPipeline([stubborn], { shutdownGraceMs: 50 })
    const { id } = await db.tr.enqueue(stubborn, {})
    await waitUntil(async () => (await row(id)).state === 'running', { what: 'running' })
    await worker.stop()
    const r = await row(id)
    expect(r.state).toBe('running') // still leased: the sweeper retries it after expiry
    expect(r.max_attempts).toBe(3)
    release()
  })
})
