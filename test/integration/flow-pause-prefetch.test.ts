import { describe, it, expect } from 'vitest'
import { z } from 'zod'
import { defineTask, Relay, Worker } from '../../src/index.ts'
import { usePipeline, db, started, prefix, fast } from '../support/pipeline.ts'
import { redisUrl } from '../support/db.ts'

usePipeline()

/**
 * A pause turns the queue's dispatched tasks back to pending, but tasks a
 * worker already claimed ahead of a free slot (prefetch) are running rows in
 * Postgres: before the fix they started as soon as the slot freed, after the
 * pause. Now the worker hands them back (PausedQueues, re-read every 250 ms).
 */
describe('pause and prefetched tasks', () => {
  it('a task claimed ahead of a slot before the pause does not start after it; resume runs it', async () => {
    const queue = `pp${prefix()}`
    let release!: () => void
    const blocker = new Promise<void>((r) => (release = r))
    const starts: Array<{ n: number; at: number }> = []
    const task = defineTask({
      name: `pp.task.${queue}`,
      queue,
      payload: z.object({ n: z.number() }),
      async run({ n }) {
        starts.push({ n, at: Date.now() })
        if (n === 0) await blocker
      },
    })
    // Settings on the queue (none binding), so it is flow-controlled like the others.
    await db.tr.queue(queue).configure({ concurrency: 100 })
    await db.tr.enqueue(task, { n: 0 })
    const keyPrefix = prefix()
    const relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 })
    const worker = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks: [task], concurrency: 1, prefetch: 5, ...fast })
    started.push(relay, worker)
    await relay.start()
    await worker.start()
    await expect.poll(() => starts.length, { timeout: 5000 }).toBe(1)
    // Five more, claimed by the worker ahead of its one busy slot.
    await db.tr.enqueueMany(Array.from({ length: 5 }, (_, i) => ({ task, payload: { n: i + 1 } })))
    const running = async () =>
      Number((await db.pool.query(`select count(*) from ${db.schema}.tasks where queue = $1 and state = 'running'`, [queue])).rows[0].count)
    await expect.poll(running, { timeout: 5000 }).toBe(6)

    await db.tr.queue(queue).pause()
    const pausedAt = Date.now()
    await new Promise((r) => setTimeout(r, 600)) // longer than the worker's re-read of paused queues
    release()
    await new Promise((r) => setTimeout(r, 1000))
    expect(starts.filter((s) => s.at > pausedAt).map((s) => s.n)).toEqual([])
    // Handed back: pending again, no attempt spent.
    const rows = await db.pool.query(`select state, attempt, max_attempts from ${db.schema}.tasks where queue = $1 and payload->>'n' <> '0'`, [queue])
    expect(rows.rows.every((r) => r.state === 'pending')).toBe(true)

    await db.tr.queue(queue).resume()
    await expect.poll(() => starts.length, { timeout: 10_000 }).toBe(6)
  }, 30_000)
})
