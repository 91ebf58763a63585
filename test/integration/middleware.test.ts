import { AsyncLocalStorage } from 'node:async_hooks'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { InvalidOptionsError, Worker, defineTask, type MiddlewareContext, type Task, type TaskMiddleware } from '../../src/index.ts'
import { runInline } from '../../src/testing.ts'
import { createTestDb, waitUntil, type TestDb } from '../support/db.ts'

/**
 * Worker middleware (issue 18 item 4): order, what ctx holds, failures that
 * fail one attempt and not the worker, skipping the handler, and context
 * that flows into the handler. Real Postgres; the worker claims on the
 * Postgres lane (no relay needed).
 */

let db: TestDb
const workers: Worker[] = []
beforeAll(async () => {
  db = await createTestDb()
})
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()))
})
afterAll(async () => {
  await db.cleanup()
})

const fast = { leaseMs: 2000, heartbeatMs: 300 }

async function startWorker(tasks: Task<any, any>[], options: { middleware?: TaskMiddleware[]; use?: TaskMiddleware[] } = {}) {
  const worker = new Worker(db.tr, { tasks, lane: 'postgres', concurrency: 4, ...fast, ...(options.middleware ? { middleware: options.middleware } : {}) })
  for (const m of options.use ?? []) worker.use(m)
  workers.push(worker)
  await worker.start()
  return worker
}

async function finished(id: string) {
  return waitUntil(
    async () => {
      const t = await db.tr.getTask(id)
      return t && ['succeeded', 'failed', 'cancelled'].includes(t.state) ? t : null
    },
    { what: `task ${id} to finish` },
  )
}

describe('worker middleware', () => {
  it('runs around the handler, first registered outermost, options before use()', async () => {
    const order: string[] = []
    const tag =
      (name: string): TaskMiddleware =>
      async (_ctx, next) => {
        order.push(`${name}>`)
        const result = await next()
        order.push(`<${name}`)
        return result
      }
    const task = defineTask({
      name: 'mw.order',
      payload: z.object({ n: z.number() }),
      run: ({ n }) => {
        order.push('handler')
        return n * 2 // synchronous: the chain still awaits it
      },
    })
    await startWorker([task], { middleware: [tag('a'), tag('b')], use: [tag('c')] })
    const { id } = await db.tr.enqueue(task, { n: 21 })
    const t = await finished(id)
    expect(t.state).toBe('succeeded')
    expect(t.result).toBe(42)
    expect(order).toEqual(['a>', 'b>', 'c>', 'handler', '<c', '<b', '<a'])
  })

  it('gives ctx the task, attempt, parsed payload, log, signal and (untraced) a null traceContext', async () => {
    let seen: MiddlewareContext | undefined
    let fields: Record<string, unknown> = {}
    const task = defineTask({
      name: 'mw.ctx',
      queue: 'mw-ctx',
      payload: z.object({ when: z.coerce.date() }),
      run: () => 'done',
    })
    await startWorker([task], {
      middleware: [
        async (ctx, next) => {
          seen = ctx
          fields = {
            id: ctx.task.id,
            name: ctx.task.name,
            queue: ctx.task.queue,
            attempt: ctx.attempt,
            taskAttempt: ctx.task.attempt,
            payloadIsDate: (ctx.payload as { when: unknown }).when instanceof Date,
            logs: typeof ctx.log.info,
            aborted: ctx.signal.aborted,
            traceContext: ctx.traceContext,
          }
          return next()
        },
      ],
    })
    const { id } = await db.tr.enqueue(task, { when: new Date(0).toISOString() })
    expect((await finished(id)).state).toBe('succeeded')
    expect(seen).toBeDefined()
    expect(fields).toEqual({ id, name: 'mw.ctx', queue: 'mw-ctx', attempt: 1, taskAttempt: 1, payloadIsDate: true, logs: 'function', aborted: false, traceContext: null })
  })

  it('a middleware that throws fails that attempt (the retry policy applies); other tasks on the worker succeed', async () => {
    const failing = defineTask({
      name: 'mw.guarded',
      payload: z.object({}),
      maxAttempts: 2,
      backoff: { type: 'fixed', delayMs: 0 },
      run: () => 'never',
    })
    const fine = defineTask({ name: 'mw.fine', payload: z.object({}), run: () => 'ok' })
    let handlerRuns = 0
    const guard: TaskMiddleware = async (ctx, next) => {
      if (ctx.task.name === 'mw.guarded') throw new Error(`refused attempt ${ctx.attempt}`)
      handlerRuns++
      return next()
    }
    const worker = await startWorker([failing, fine], { middleware: [guard] })
    const bad = await db.tr.enqueue(failing, {})
    const good = await db.tr.enqueue(fine, {})
    const b = await finished(bad.id)
    expect(b.state).toBe('failed')
    expect(b.attempt).toBe(2) // retried once, per maxAttempts
    expect(b.lastError?.message).toBe('refused attempt 2')
    const g = await finished(good.id)
    expect(g.state).toBe('succeeded')
    expect(g.result).toBe('ok')
    expect(handlerRuns).toBe(1)
    expect(worker.running).toBe(true)
    // A synchronous throw (not a rejected promise) is the same failure.
    const syncThrow = defineTask({ name: 'mw.sync-throw', payload: z.object({}), maxAttempts: 1, run: () => 'never' })
    const w2 = await startWorker([syncThrow], {
      middleware: [
        ((): never => {
          throw new Error('thrown synchronously')
        }) as unknown as TaskMiddleware,
      ],
    })
    const s = await finished((await db.tr.enqueue(syncThrow, {})).id)
    expect(s.state).toBe('failed')
    expect(s.lastError?.message).toBe('thrown synchronously')
    expect(w2.running).toBe(true)
  })

  it('not calling next() skips the handler: the attempt succeeds with the middleware\'s value', async () => {
    let handlerRan = false
    const task = defineTask({
      name: 'mw.skip',
      payload: z.object({ cached: z.boolean() }),
      run: () => {
        handlerRan = true
        return 'computed'
      },
    })
    const cache: TaskMiddleware = async (ctx, next) => ((ctx.payload as { cached: boolean }).cached ? { fromCache: true } : next())
    await startWorker([task], { middleware: [cache] })
    const hit = await finished((await db.tr.enqueue(task, { cached: true })).id)
    expect(hit.state).toBe('succeeded')
    expect(hit.result).toEqual({ fromCache: true })
    expect(handlerRan).toBe(false)
    const miss = await finished((await db.tr.enqueue(task, { cached: false })).id)
    expect(miss.result).toBe('computed')
    expect(handlerRan).toBe(true)
  })

  it('AsyncLocalStorage set by a middleware reaches the handler and its awaits (tenancy)', async () => {
    const tenant = new AsyncLocalStorage<string>()
    const seen: Array<string | undefined> = []
    const task = defineTask({
      name: 'mw.tenant',
      payload: z.object({ tenant: z.string() }),
      run: async () => {
        seen.push(tenant.getStore())
        await new Promise((r) => setTimeout(r, 10))
        seen.push(tenant.getStore())
        return tenant.getStore()
      },
    })
    const scope: TaskMiddleware = (ctx, next) => tenant.run((ctx.payload as { tenant: string }).tenant, next)
    await startWorker([task], { middleware: [scope] })
    const [a, b] = await Promise.all([db.tr.enqueue(task, { tenant: 'acme' }), db.tr.enqueue(task, { tenant: 'globex' })])
    expect((await finished(a.id)).result).toBe('acme')
    expect((await finished(b.id)).result).toBe('globex')
    expect(seen.sort()).toEqual(['acme', 'acme', 'globex', 'globex'])
  })

  it('refuses what is not middleware, and use() once running', async () => {
    const task = defineTask({ name: 'mw.refuse', payload: z.object({}), run: () => null })
    expect(() => new Worker(db.tr, { tasks: [task], lane: 'postgres', middleware: ['nope' as never] })).toThrow(InvalidOptionsError)
    const worker = await startWorker([task])
    expect(() => worker.use(async (_c, next) => next())).toThrow(/before start/)
  })

  it('runInline runs middleware too', async () => {
    const task = defineTask({ name: 'mw.inline', payload: z.object({ n: z.number() }), run: ({ n }) => n + 1 })
    const doubled: TaskMiddleware = async (_ctx, next) => ((await next()) as number) * 2
    expect(await runInline(task, { n: 1 }, { middleware: [doubled] })).toBe(4)
    expect(await runInline(task, { n: 1 })).toBe(2)
  })
})
