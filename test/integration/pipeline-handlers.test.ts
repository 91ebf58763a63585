import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { pino } from 'pino'
import { Relay, TaskRelay, Worker, defineTask } from '../../src/index.ts'
import pg from 'pg'
import { databaseUrl, redisUrl } from '../support/db.ts'
import { db, fast, finalRow, prefix, row, startPipeline, started, usePipeline } from '../support/pipeline.ts'

/**
 * What a handler sees and what the worker records around it: synchronous
 * handlers, ctx, an application's own pg type parsers, per-task log lines.
 * Real Postgres and Redis; the shared stack is in test/support/pipeline.ts.
 */

usePipeline()

describe('synchronous handlers and ctx', () => {
  it('records what a synchronous handler returns or throws, and frees its slot at once', async () => {
    const active: number[] = []
    let worker: Worker | undefined
    const sync = defineTask({
      name: 'p.sync',
      payload: z.object({ n: z.number() }),
      backoff: { type: 'fixed', delayMs: 0 },
      run: ({ n }, ctx) => {
        active.push(worker!.activeCount)
        if (n % 2 === 1 && ctx.attempt === 1) throw new Error(`odd ${n}`)
        return { n, attempt: ctx.attempt }
      },
    })
    ;({ worker } = await startPipeline([sync], { concurrency: 3 }))
    const ids = await Promise.all(Array.from({ length: 20 }, (_, n) => db.tr.enqueue(sync, { n }).then((r) => r.id)))
    for (const [n, id] of ids.entries()) {
      const r = await finalRow(id)
      expect(r.state).toBe('succeeded')
      expect(r.result).toEqual({ n, attempt: n % 2 === 1 ? 2 : 1 })
      expect(r.attempt).toBe(n % 2 === 1 ? 2 : 1)
      if (n % 2 === 1) expect(r.last_error.message).toBe(`odd ${n}`)
    }
    // Each saw only itself running: a synchronous handler's slot is free before the next one starts.
    expect(active).toEqual(Array.from({ length: 30 }, () => 1))
  })

  it('ctx works destructured: task, signal, log and heartbeat', async () => {
    const seen: Record<string, unknown> = {}
    const t = defineTask({
      name: 'p.destructured',
      payload: z.object({}),
      run: async (_p, { task, signal, log, heartbeat, attempt }) => {
        const before = (await row(task.id)).lease_expires_at as Date
        await new Promise((r) => setTimeout(r, 50))
        await heartbeat()
        seen.extended = ((await row(task.id)).lease_expires_at as Date).getTime() > before.getTime()
        seen.aborted = signal.aborted
        seen.attempt = attempt
        seen.createdAt = task.createdAt
        seen.maxAttempts = task.maxAttempts
        log.info('destructured')
      },
    })
    await startPipeline([t])
    const { id } = await db.tr.enqueue(t, {})
    const r = await finalRow(id)
    expect(r.state).toBe('succeeded')
    expect(seen).toEqual({ extended: true, aborted: false, attempt: 1, createdAt: r.created_at, maxAttempts: r.max_attempts })
  })
})

describe("an application's own pg type parsers", () => {
  it('a pool that parses bigint into numbers still heartbeats and records outcomes', async () => {
    // Applications often parse int8 as a JS number; task ids must still compare as strings.
    const numericPool = new pg.Pool({
      connectionString: databaseUrl(),
      max: 4,
      types: { getTypeParser: ((oid: number, format?: 'text') => (oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format))) as typeof pg.types.getTypeParser },
    })
    const tr = new TaskRelay({ db: numericPool, schema: db.schema })
    const seen: unknown[] = []
    const t = defineTask({
      name: 'p.numeric-ids',
      payload: z.object({}),
      run: async (_p, ctx) => {
        await ctx.heartbeat()
        seen.push(ctx.task.id)
        return 'ok'
      },
    })
    const keyPrefix = prefix()
    const relay = new Relay(tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 })
    const worker = new Worker(tr, { redis: redisUrl(), keyPrefix, tasks: [t], ...fast })
    const discarded: unknown[] = []
    worker.events.on('task:lease-lost', (e) => discarded.push(e))
    try {
      await relay.start()
      await worker.start()
      const { id } = await db.tr.enqueue(t, {})
      const r = await finalRow(id)
      expect(r.state).toBe('succeeded')
      expect(r.attempt).toBe(1)
      expect(seen).toEqual([String(id)])
      expect(discarded).toEqual([])
    } finally {
      await worker.stop()
      await relay.stop()
      await tr.close()
      await numericPool.end()
    }
  })
})

describe('task logs', () => {
  it("ctx.log and the worker's lines about an attempt carry the task's id, name, queue and attempt", async () => {
    const lines: Array<Record<string, unknown>> = []
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) })
    const tr = new TaskRelay({ db: db.pool, schema: db.schema, logger })
    const flaky = defineTask({
      name: 'p.logs',
      payload: z.object({}),
      maxAttempts: 2,
      backoff: { type: 'fixed', delayMs: 10 },
      run: async (_p, ctx) => {
        ctx.log.info('from the handler')
        if (ctx.attempt === 1) throw new Error('first try fails')
        return null
      },
    })
    const keyPrefix = prefix()
    const relay = new Relay(tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 })
    const worker = new Worker(tr, { redis: redisUrl(), keyPrefix, tasks: [flaky], ...fast })
    started.push(relay, worker)
    await relay.start()
    await worker.start()
    const { id } = await tr.enqueue(flaky, {})
    expect((await finalRow(id)).state).toBe('succeeded')

    const about = (msg: string) => lines.filter((l) => l.msg === msg).map((l) => [l.taskId, l.task, l.queue, l.attempt])
    expect(about('from the handler')).toEqual([
      [id, 'p.logs', 'default', 1],
      [id, 'p.logs', 'default', 2],
    ])
    expect(about('task failed; will retry')).toEqual([[id, 'p.logs', 'default', 1]])
  })
})
