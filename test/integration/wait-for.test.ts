import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createTestDb, redisUrl, type TestDb } from '../support/db.ts'
import { pino } from 'pino'
import { defineTask, NonRetryableError, Relay, TaskFailedError, TaskNotFoundError, WaitTimeoutError, Worker } from '../../src/index.ts'
import { Completer } from '../../src/worker/completer.ts'

/**
 * tr.waitFor() against a real relay and worker: it resolves with the final
 * row on success and rejects with a typed error on failure, cancellation,
 * timeout or abort.
 */
let db: TestDb
let relay: Relay
let worker: Worker

const double = defineTask({
  name: 'wait.double',
  queue: 'wait',
  payload: z.object({ n: z.number() }),
  async run({ n }) {
    return { doubled: n * 2 }
  },
})

const broken = defineTask({
  name: 'wait.broken',
  queue: 'wait',
  payload: z.object({}),
  async run() {
    throw new NonRetryableError('the handler gave up')
  },
})

/** Runs until its signal aborts (cancel, or the worker stopping). */
const hang = defineTask({
  name: 'wait.hang',
  queue: 'wait',
  payload: z.object({}),
  run: (_p, ctx) => new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true })),
})

beforeAll(async () => {
  db = await createTestDb()
  const redis = redisUrl()
  const keyPrefix = `wait-${db.schema}`
  relay = new Relay(db.tr, { redis, keyPrefix, pollIntervalMs: 200 })
  worker = new Worker(db.tr, { redis, keyPrefix, queues: ['wait'], tasks: [double, broken, hang], heartbeatMs: 100, leaseMs: 1000, shutdownGraceMs: 0 })
  await Promise.all([relay.start(), worker.start()])
})

afterAll(async () => {
  await Promise.all([relay?.stop(), worker?.stop()])
  await db?.cleanup()
})

describe('tr.waitFor', () => {
  it('resolves with the finished task and its result', async () => {
    const { id } = await db.tr.enqueue(double, { n: 21 })
    const task = await db.tr.waitFor(id, { timeoutMs: 20_000 })
    expect(task).toMatchObject({ id, state: 'succeeded', result: { doubled: 42 }, attempt: 1 })
    expect(task.finishedAt).toBeInstanceOf(Date)
  })

  it('hears every task of a finish batch whose ids overflow one notification', async () => {
    // 500 ids of 19 digits: ~10 kB of ids, over Postgres's 8000-byte payload limit for one NOTIFY.
    const first = 9_000_000_000_000_000_000n
    await db.pool.query(
      `insert into "${db.schema}".tasks (id, name, queue, state, attempt, started_at, lease_expires_at)
       select $1::bigint + g, 'wait.double', 'elsewhere', 'running', 1, now(), now() + interval '1 hour'
         from generate_series(1, 500) g`,
      [first.toString()],
    )
    const ids = Array.from({ length: 500 }, (_, i) => (first + BigInt(i + 1)).toString())
    const waits = ids.map((id) => db.tr.waitFor(id, { timeoutMs: 20_000 }))
    // One statement for all 500 (a completer flushes up to 500 outcomes at once).
    const completer = new Completer(db.tr.executor, db.schema, 50, pino({ level: 'silent' }))
    const recorded: boolean[] = []
    for (const id of ids) completer.record(id, 1, { state: 'succeeded', result: '"ok"' }, (ok) => recorded.push(ok))
    const tasks = await Promise.all(waits)
    expect(tasks.map((t) => t.state)).toEqual(ids.map(() => 'succeeded'))
    expect(recorded).toEqual(ids.map(() => true))
    await completer.drain(1000)
  })

  it('resolves at once for a task that finished before the call', async () => {
    const { id } = await db.tr.enqueue(double, { n: 1 })
    await db.tr.waitFor(id, { timeoutMs: 20_000 })
    // No notification will come for it: only the check made after subscribing can resolve this wait.
    await expect(db.tr.waitFor(id, { timeoutMs: 5000 })).resolves.toMatchObject({ id, state: 'succeeded' })
  })

  it('rejects with TaskFailedError carrying the failed row', async () => {
    const { id } = await db.tr.enqueue(broken, {})
    const err = await db.tr.waitFor(id, { timeoutMs: 20_000 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TaskFailedError)
    expect((err as TaskFailedError).code).toBe('TASK_FAILED')
    expect((err as Error).message).toContain('ended failed: the handler gave up')
    expect((err as TaskFailedError).task).toMatchObject({ id, state: 'failed', lastError: { message: 'the handler gave up' } })
  })

  it('rejects with TaskFailedError when the task is cancelled while running', async () => {
    const { id } = await db.tr.enqueue(hang, {})
    const waiting = db.tr.waitFor(id, { timeoutMs: 20_000 }).catch((e: unknown) => e)
    // Cancel only once it runs, so this covers the running → cancelled move.
    for (let t = await db.tr.getTask(id); t?.state !== 'running'; t = await db.tr.getTask(id)) await new Promise((r) => setTimeout(r, 20))
    expect(await db.tr.cancel(id)).toBe(true)
    const err = await waiting
    expect(err).toBeInstanceOf(TaskFailedError)
    expect((err as TaskFailedError).task).toMatchObject({ id, state: 'cancelled' })
  })

  it('rejects with WaitTimeoutError when the task does not finish in time, and leaves the task alone', async () => {
    const { id } = await db.tr.enqueue(double, { n: 3 }, { delayMs: 3_600_000 })
    const started = Date.now()
    const err = await db.tr.waitFor(id, { timeoutMs: 150 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(WaitTimeoutError)
    expect((err as WaitTimeoutError).code).toBe('WAIT_TIMEOUT')
    expect(Date.now() - started).toBeGreaterThanOrEqual(140)
    expect((await db.tr.getTask(id))!.state).toBe('pending')
  })

  it('rejects with the abort reason when the signal aborts, before or during the wait', async () => {
    const { id } = await db.tr.enqueue(double, { n: 4 }, { delayMs: 3_600_000 })
    const controller = new AbortController()
    const waiting = db.tr.waitFor(id, { signal: controller.signal }).catch((e: unknown) => e)
    const reason = new Error('caller went away')
    controller.abort(reason)
    expect(await waiting).toBe(reason)
    await expect(db.tr.waitFor(id, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason)
  })

  it('rejects with TaskNotFoundError for an id that does not exist', async () => {
    await expect(db.tr.waitFor('987654321', { timeoutMs: 5000 })).rejects.toBeInstanceOf(TaskNotFoundError)
  })
})
