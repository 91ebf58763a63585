import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import {
  InvalidOptionsError,
  NonRetryableError,
  Relay,
  SchemaVersionError,
  Sweeper,
  TaskRelay,
  Worker,
  defineTask,
  type Task,
} from '../../src/index.ts'
import pg from 'pg'
import { createTestDb, databaseUrl, redisUrl, uniqueSchema, waitUntil, type TestDb } from '../support/db.ts'
import { SEC, dbNow, makeTask, taskRow } from '../support/factory.ts'

let db: TestDb
let redis: Redis
const started: Array<{ stop(): Promise<void> }> = []

beforeAll(async () => {
  db = await createTestDb()
  redis = new Redis(redisUrl())
})

/** Databases of their own that tests made with localDb(): dropped after their services stop. */
const localDbs: TestDb[] = []

afterEach(async () => {
  // Every service a test started is stopped, even when the test failed.
  await Promise.all(started.splice(0).map((s) => s.stop()))
  await Promise.all(localDbs.splice(0).map((d) => d.cleanup()))
})

/** A test database of its own (for tests that need the whole table to themselves), dropped after the test. */
async function localDb(): Promise<TestDb> {
  const local = await createTestDb()
  localDbs.push(local)
  return local
}

afterAll(async () => {
  redis.disconnect()
  await db.cleanup()
})

/** A key prefix of its own per test: tests share one Redis. */
function prefix() {
  return `t${randomBytes(4).toString('hex')}`
}

const fast = { leaseMs: 1000, heartbeatMs: 200, blockMs: 200 }

async function startPipeline(tasks: Task<any, any>[], opts: { concurrency?: number; shutdownGraceMs?: number; keyPrefix?: string } = {}) {
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
async function startWithoutPolling(tasks: Task<any, any>[]): Promise<void> {
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
async function withoutLoop(relay: Relay): Promise<void> {
  const service = relay as unknown as { onStart(): Promise<void>; onStop(): Promise<void> }
  await service.onStart()
  started.push({ stop: () => service.onStop() })
}

async function row(id: string) {
  const res = await db.pool.query(`select * from "${db.schema}".tasks where id = $1`, [id])
  return res.rows[0]
}

async function finalRow(id: string, timeoutMs = 15_000) {
  return waitUntil(
    async () => {
      const r = await row(id)
      return ['succeeded', 'failed', 'cancelled'].includes(r.state) ? r : null
    },
    { timeoutMs, what: `task ${id} to finish` },
  )
}

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

describe('relay', () => {
  it('dispatches higher priority first and keeps future tasks in Postgres', async () => {
    const t = defineTask({ name: 'p.prio', payload: z.object({ label: z.string() }), run: async () => null })
    const local = await localDb()
    const low = await local.tr.enqueue(t, { label: 'low' }, { priority: -5 })
    const high = await local.tr.enqueue(t, { label: 'high' }, { priority: 50 })
    const mid = await local.tr.enqueue(t, { label: 'mid' })
    const later = await local.tr.enqueue(t, { label: 'later' }, { delayMs: 60_000, priority: 1000 })
    const keyPrefix = prefix()
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix, batchSize: 2 })
    started.push(relay)
    await relay.start()
    const key = `${keyPrefix}:{default}:ready`
    await waitUntil(async () => (await redis.llen(key)) === 3, { what: 'three dispatches' })
    await relay.stop()
    const messages = await redis.lrange(key, 0, -1)
    expect(messages.map((m) => m.split(':')[0])).toEqual([high.id, mid.id, low.id])
    const states = await local.pool.query(`select id, state from "${local.schema}".tasks where id = $1`, [later.id])
    expect(states.rows[0].state).toBe('pending')
  })

  it('bounds the Redis backlog per queue', async () => {
    const t = defineTask({ name: 'p.backlog', payload: z.object({ i: z.number() }), run: async () => null })
    const local = await localDb()
    await local.tr.enqueueMany(Array.from({ length: 50 }, (_, i) => ({ task: t, payload: { i } })))
    const keyPrefix = prefix()
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix, batchSize: 10, maxBacklogPerQueue: 20 })
    await withoutLoop(relay)
    const rounds = [] as number[]
    for (let i = 0; i < 4; i++) rounds.push((await relay.runOnce()).dispatched)
    const key = `${keyPrefix}:{default}:ready`
    expect(await redis.llen(key)).toBe(20)
    expect(rounds.slice(-2)).toEqual([0, 0])
    await redis.lpop(key, 15)
    expect((await relay.runOnce()).dispatched).toBe(10)
  })

  it('serves the other queues on the very next round while a queue is saturated', async () => {
    const hot = defineTask({ name: 'p.hot', payload: z.object({ i: z.number() }), run: async () => null })
    const other = defineTask({ name: 'p.other', queue: 'other', payload: z.object({}), run: async () => null })
    const later = defineTask({ name: 'p.later', queue: 'later', payload: z.object({}), run: async () => null })
    const local = await localDb()
    await local.tr.enqueueMany(Array.from({ length: 50 }, (_, i) => ({ task: hot, payload: { i } })))
    const keyPrefix = prefix()
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix, batchSize: 10, maxBacklogPerQueue: 20 })
    await withoutLoop(relay)
    // Two rounds fill "default" to its bound; the third finds nothing else to do.
    const rounds = [] as number[]
    for (let i = 0; i < 3; i++) rounds.push((await relay.runOnce()).dispatched)
    expect(rounds).toEqual([10, 10, 0])
    expect(await redis.llen(`${keyPrefix}:{default}:ready`)).toBe(20)
    // A queue with only future tasks is visited and yields nothing.
    await local.tr.enqueue(later, {}, { delayMs: 60_000 })
    const { ids } = await local.tr.enqueueMany(Array.from({ length: 15 }, () => ({ task: other, payload: {} })))
    // The next round serves "other" at once (a full batch, then the rest), best first.
    expect(await relay.runOnce()).toMatchObject({ dispatched: 10, saturatedQueues: ['default'] })
    expect((await relay.runOnce()).dispatched).toBe(5)
    expect((await relay.runOnce()).dispatched).toBe(0)
    const otherKey = `${keyPrefix}:{other}:ready`
    expect((await redis.lrange(otherKey, 0, -1)).map((m) => m.split(':')[0])).toEqual(ids)
    expect(await redis.llen(`${keyPrefix}:{default}:ready`)).toBe(20)
    const pending = await local.pool.query(`select queue, count(*)::int as n from "${local.schema}".tasks where state = 'pending' group by queue order by queue`)
    expect(pending.rows).toEqual([
      { queue: 'default', n: 30 },
      { queue: 'later', n: 1 },
    ])
    // Once the full queue drains below its bound, it is served again.
    await redis.lpop(`${keyPrefix}:{default}:ready`, 15)
    expect((await relay.runOnce()).dispatched).toBe(10)
  })

  it('skips rows another relay holds and takes the next ones, so relays side by side fill their batches', async () => {
    const t = defineTask({ name: 'p.side', payload: z.object({ i: z.number() }), run: async () => null })
    const local = await localDb()
    const other = await local.pool.connect()
    // Rolled back and released after the test, with the services.
    started.push({ stop: async () => { await other.query('rollback').catch(() => {}); other.release() } })
    const { ids } = await local.tr.enqueueMany(Array.from({ length: 30 }, (_, i) => ({ task: t, payload: { i } })))
    // Another relay's round in flight: it holds the five best rows.
    await other.query('begin')
    await other.query(`select id from "${local.schema}".tasks where id = any($1::bigint[]) for update`, [ids.slice(0, 5)])
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix: prefix(), batchSize: 10 })
    const batches: string[][] = []
    relay.events.on('relay:batch', (e) => void batches.push(e.ids))
    await withoutLoop(relay)
    expect((await relay.runOnce()).dispatched).toBe(10)
    expect(batches).toEqual([ids.slice(5, 15)])
  })

  it('lets queues take turns, each best first, so a deep queue cannot starve the others', async () => {
    const a = defineTask({ name: 'p.qa', queue: 'qa', payload: z.object({}), run: async () => null })
    const b = defineTask({ name: 'p.qb', queue: 'qb', payload: z.object({}), run: async () => null })
    const local = await localDb()
    // qa: five tasks, the last two enqueued with a higher priority; qb: four.
    const qa = [] as string[]
    for (const priority of [0, 0, 0, 5, 5]) qa.push((await local.tr.enqueue(a, {}, { priority })).id)
    const qb = [] as string[]
    for (let i = 0; i < 4; i++) qb.push((await local.tr.enqueue(b, {}, {})).id)
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix: prefix(), batchSize: 3 })
    const batches: string[][] = []
    relay.events.on('relay:batch', (e) => void batches.push(e.ids))
    await withoutLoop(relay)
    for (let i = 0; i < 5; i++) await relay.runOnce()
    expect(batches).toEqual([
      [qa[3], qa[4], qa[0]], // qa's best three fill the first batch
      [qb[0], qb[1], qb[2]], // then qb's turn
      [qa[1], qa[2], qb[3]], // back to qa, and the batch is topped up from qb
    ])
  })

  it('after Redis lost its data, re-dispatches what was dispatched before the marker was set, not what was pushed since', async () => {
    const t = defineTask({ name: 'p.epoch', payload: z.object({ i: z.number() }), run: async () => null })
    const local = await localDb()
    const { ids } = await local.tr.enqueueMany([0, 1].map((i) => ({ task: t, payload: { i } })))
    const [before, since] = ids as [string, string]
    // As a relay leaves them: one dispatched before the loss, one dispatched by
    // another relay after this relay set the marker (its dispatched_at is later).
    await local.pool.query(
      `update "${local.schema}".tasks
          set state = 'dispatched', dispatch_token = gen_random_uuid(),
              dispatched_at = case when id = $1 then now() - interval '10 seconds' else now() + interval '1 minute' end
        where id = any($2::bigint[])`,
      [before, ids],
    )
    const keyPrefix = prefix() // no epoch marker: the relay takes this Redis for one that lost its data
    const relay = new Relay(local.tr, { redis: redisUrl(), keyPrefix })
    const redispatched: Array<{ count: number; reason: string }> = []
    relay.events.on('relay:redispatch', (e) => void redispatched.push(e))
    await withoutLoop(relay)
    await waitUntil(() => redispatched.length > 0, { what: 'the data-loss re-dispatch' })
    expect(redispatched).toEqual([{ count: 1, reason: 'redis-data-lost' }])
    const states = await local.pool.query(`select id::text, state from "${local.schema}".tasks order by id`)
    expect(states.rows).toEqual([
      { id: before, state: 'pending' },
      { id: since, state: 'dispatched' },
    ])
  })

  it('several relays side by side dispatch each task exactly once', async () => {
    const t = defineTask({ name: 'p.many-relays', payload: z.object({ i: z.number() }), run: async () => null })
    const local = await localDb()
    const { ids } = await local.tr.enqueueMany(Array.from({ length: 3000 }, (_, i) => ({ task: t, payload: { i } })))
    const keyPrefix = prefix()
    // An existing epoch marker: a fresh prefix looks like a Redis that lost its data,
    // and the data-loss re-dispatch (tested above) is not what this test is about.
    await redis.set(`${keyPrefix}:epoch`, 'test')
    const relays = [1, 2, 3].map(() => new Relay(local.tr, { redis: redisUrl(), keyPrefix, batchSize: 100, pollIntervalMs: 20 }))
    started.push(...relays)
    await Promise.all(relays.map((r) => r.start()))
    const key = `${keyPrefix}:{default}:ready`
    await waitUntil(async () => (await redis.llen(key)) >= 3000, { what: 'all dispatched' })
    const batches = relays.map(() => 0)
    relays.forEach((r, i) => r.events.on('relay:batch', () => batches[i]!++))
    const messages = await redis.lrange(key, 0, -1)
    const dispatchedIds = messages.map((m) => m.split(':')[0])
    expect(dispatchedIds).toHaveLength(3000)
    expect(new Set(dispatchedIds).size).toBe(3000)
    expect(new Set(dispatchedIds)).toEqual(new Set(ids))
  })
})

describe('bad input', () => {
  it('rejects invalid service options, listing every problem', () => {
    const t = defineTask({ name: 'p.opts', payload: z.object({}), run: async () => null })
    expect(() => new Worker(db.tr, { redis: redisUrl(), tasks: [] })).toThrow(InvalidOptionsError)
    let error: InvalidOptionsError | undefined
    try {
      new Worker(db.tr, { redis: redisUrl(), tasks: [t], leaseMs: 1000, heartbeatMs: 600, concurrency: 0, bogus: 1 } as never)
    } catch (err) {
      error = err as InvalidOptionsError
    }
    expect(error).toBeInstanceOf(InvalidOptionsError)
    expect(error!.problems.join('\n')).toMatch(/concurrency/)
    expect(error!.problems.join('\n')).toMatch(/bogus/)
    expect(() => new Relay(db.tr, { redis: redisUrl(), batchSize: -1 })).toThrow(/batchSize/)
    expect(() => new Sweeper(db.tr, { dispatchTimeoutMs: 'soon' } as never)).toThrow(/dispatchTimeoutMs/)
    const other = defineTask({ name: 'p.opts', payload: z.object({ x: z.string() }), run: async () => null })
    expect(() => new Worker(db.tr, { redis: redisUrl(), tasks: [t, other] })).toThrow(/two different tasks are named "p.opts"/)
  })

  it('refuses to start against a schema that is not migrated', async () => {
    const tr = new TaskRelay({ db: db.pool, schema: uniqueSchema('unmigrated') })
    const sweeper = new Sweeper(tr)
    await expect(sweeper.start()).rejects.toBeInstanceOf(SchemaVersionError)
    await expect(sweeper.start()).rejects.toThrow(/run `taskrelay migrate`/)
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
