import { describe, it, expect } from 'vitest'
import { z } from 'zod'
import { defineTask, Worker } from '../../src/index.ts'
import { usePipeline, db, started, prefix, fast } from '../support/pipeline.ts'

usePipeline()

/** The Postgres lane (no Redis, no relay) takes flow-controlled queues through flow_take() too. */
describe('flow control on the Postgres lane', () => {
  it('two workers on lane postgres never run more than the queue limit, and run everything', async () => {
    const queue = `fl${prefix()}`
    let now = 0
    let max = 0
    let done = 0
    const task = defineTask({
      name: `fl.task.${queue}`,
      queue,
      payload: z.object({ n: z.number() }),
      async run() {
        max = Math.max(max, ++now)
        await new Promise((r) => setTimeout(r, 20))
        now--
        done++
      },
    })
    await db.tr.queue(queue).configure({ concurrency: 2 })
    await db.tr.enqueueMany(Array.from({ length: 40 }, (_, n) => ({ task, payload: { n } })))
    for (let i = 0; i < 2; i++) {
      const worker = new Worker(db.tr, { redis: 'redis://127.0.0.1:1', lane: 'postgres', tasks: [task], concurrency: 10, ...fast })
      started.push(worker)
      await worker.start()
    }
    await expect.poll(() => done, { timeout: 20_000 }).toBe(40)
    expect(max).toBe(2)
  }, 30_000)
})
