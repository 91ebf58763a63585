import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { defineTask } from '../../src/index.ts'
import { db, finalRow, startWithoutPolling, usePipeline } from '../support/pipeline.ts'

/**
 * Retries and delayed tasks run when they are due, not at the relay's next poll.
 * Real Postgres and Redis; the shared stack is in test/support/pipeline.ts.
 */

usePipeline()

describe('retry timing', () => {
  it("runs a retry when its backoff ends, not at the relay's next poll", async () => {
    const runs: number[] = []
    const t = defineTask({
      name: 'p.retry-timing',
      payload: z.object({}),
      backoff: { type: 'fixed', delayMs: 300 },
      run: async () => {
        runs.push(Date.now())
        if (runs.length === 1) throw new Error('first try fails')
      },
    })
    // Only the retry's NOTIFY can wake the relay in time.
    await startWithoutPolling([t])
    const { id } = await db.tr.enqueue(t, {})
    const r = await finalRow(id, 10_000)
    expect(r.state).toBe('succeeded')
    expect(r.attempt).toBe(2)
    // Not before its backoff either.
    expect(runs[1]! - runs[0]!).toBeGreaterThanOrEqual(300)
  })
})

describe('delayed tasks', () => {
  it("run when their delay ends, not at the relay's next poll, the earliest first", async () => {
    const ran = new Map<string, number>()
    const t = defineTask({
      name: 'p.delayed',
      payload: z.object({ label: z.string() }),
      run: ({ label }) => {
        ran.set(label, Date.now())
      },
    })
    // Only the relay's timer for the next delayed task can wake it in time.
    await startWithoutPolling([t])
    const enqueuedAt = Date.now()
    // The later one first: the relay's timer must move earlier for the second.
    const late = await db.tr.enqueue(t, { label: 'late' }, { delayMs: 1500 })
    const soon = await db.tr.enqueue(t, { label: 'soon' }, { delayMs: 400 })
    const at = await db.tr.enqueue(t, { label: 'at' }, { runAt: new Date(Date.now() + 800) })
    for (const { id } of [late, soon, at]) expect((await finalRow(id, 10_000)).state).toBe('succeeded')
    // Never before the delay (the database clock decides; the two clocks are one host's here).
    expect(ran.get('soon')! - enqueuedAt).toBeGreaterThanOrEqual(400)
    expect(ran.get('at')! - enqueuedAt).toBeGreaterThanOrEqual(800)
    expect(ran.get('late')! - enqueuedAt).toBeGreaterThanOrEqual(1500)
    expect([...ran.keys()]).toEqual(['soon', 'at', 'late'])
  })
})
