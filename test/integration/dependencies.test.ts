import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import {
  DependencyNotFoundError,
  InvalidOptionsError,
  Relay,
  Sweeper,
  TaskFailedError,
  Worker,
  defineTask,
  type Task,
} from '../../src/index.ts'
import { createTestDb, redisUrl, waitUntil, type TestDb } from '../support/db.ts'
import { makeTask } from '../support/factory.ts'

/**
 * dependsOn: a task waits until every task it names has succeeded; if one
 * fails or is cancelled it is cancelled without running. Real relay, worker
 * and sweeper against real Postgres and Redis.
 */
let db: TestDb
const services: Array<{ stop(): Promise<void> }> = []

beforeAll(async () => {
  db = await createTestDb()
})
afterEach(async () => {
  for (const s of services.splice(0).reverse()) await s.stop()
})
afterAll(async () => {
  await db?.cleanup()
})

/** Handler starts and ends, in order, by label. */
const events: string[] = []
/** Handlers whose label is a key here wait until the test resolves it. */
const gates = new Map<string, { promise: Promise<void>; resolve: () => void }>()
function gate(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}
const step = defineTask({
  name: 'deps.step',
  payload: z.object({ label: z.string(), ms: z.number().default(0), fail: z.boolean().default(false) }),
  maxAttempts: 1,
  run: async ({ label, ms, fail }) => {
    events.push(`start ${label}`)
    await gates.get(label)?.promise
    if (ms > 0) await new Promise((r) => setTimeout(r, ms))
    events.push(`end ${label}`)
    if (fail) throw new Error(`${label} fails`)
    return label
  },
})

async function start(tasks: Task<any, any>[] = [step], opts: { sweeper?: boolean } = {}) {
  const keyPrefix = `deps:${randomBytes(4).toString('hex')}`
  const relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 })
  const worker = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks, concurrency: 10, leaseMs: 3000, heartbeatMs: 500, blockMs: 200 })
  services.push(relay, worker)
  await relay.start()
  await worker.start()
  if (opts.sweeper) {
    const sweeper = new Sweeper(db.tr, { intervalMs: 100 })
    services.push(sweeper)
    await sweeper.start()
  }
}

async function state(id: string): Promise<string> {
  return (await db.pool.query(`select state from "${db.schema}".tasks where id = $1`, [id])).rows[0]?.state
}

describe('dependsOn', () => {
  it('runs a chain in order: each task starts only after the one before it succeeded', async () => {
    events.length = 0
    await start()
    const client = await db.pool.connect()
    let ids: string[]
    try {
      // Enqueued together in the caller's transaction; nothing runs before COMMIT.
      await client.query('begin')
      const a = await db.tr.enqueue(client, step, { label: 'a', ms: 100 })
      const b = await db.tr.enqueue(client, step, { label: 'b', ms: 50 }, { dependsOn: [a.id] })
      const c = await db.tr.enqueue(client, step, { label: 'c' }, { dependsOn: [b.id] })
      ids = [a.id, b.id, c.id]
      expect([await stateIn(client, b.id), await stateIn(client, c.id)]).toEqual(['waiting', 'waiting'])
      await client.query('commit')
    } finally {
      client.release()
    }
    const last = await db.tr.waitFor(ids[2]!, { timeoutMs: 15_000 })
    expect(last.result).toBe('c')
    expect(events).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c'])
  })

  it('fan-in: waits for every task it names, and starts pending when they all succeeded already', async () => {
    events.length = 0
    await start()
    const held = gate()
    gates.set('b', held)
    const a = await db.tr.enqueue(step, { label: 'a' })
    const b = await db.tr.enqueue(step, { label: 'b' })
    const { ids } = await db.tr.enqueueMany([
      { task: step, payload: { label: 'join' }, options: { dependsOn: [a.id, b.id, a.id] } },
      { task: step, payload: { label: 'free' } },
    ])
    await db.tr.waitFor(a.id, { timeoutMs: 10_000 })
    // b is held: the join still waits, however long we look.
    expect(await state(ids[0]!)).toBe('waiting')
    held.resolve()
    gates.delete('b')
    await db.tr.waitFor(ids[0]!, { timeoutMs: 10_000 })
    expect(events.indexOf('start join')).toBeGreaterThan(events.indexOf('end b'))
    expect(events).toContain('start free')
    // Everything it names has succeeded: pending at once.
    const late = await db.tr.enqueue(step, { label: 'late' }, { dependsOn: [a.id, b.id] })
    expect(await state(late.id)).not.toBe('waiting')
    expect((await db.tr.waitFor(late.id, { timeoutMs: 10_000 })).result).toBe('late')
  })

  it('cancels the dependents of a failed task, down the chain, without running them', async () => {
    events.length = 0
    await start([step], { sweeper: true })
    const a = await db.tr.enqueue(step, { label: 'a', fail: true })
    const b = await db.tr.enqueue(step, { label: 'b' }, { dependsOn: [a.id] })
    const c = await db.tr.enqueue(step, { label: 'c' }, { dependsOn: [b.id] })
    const err = await db.tr.waitFor(c.id, { timeoutMs: 15_000 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TaskFailedError)
    for (const id of [b.id, c.id]) {
      const t = (await db.tr.getTask(id))!
      expect(t.state).toBe('cancelled')
      expect(t.attempt).toBe(0)
      expect(t.lastError).toMatchObject({ kind: 'dependency_failed' })
    }
    expect(await state(a.id)).toBe('failed')
    expect(events).toEqual(['start a', 'end a'])
  })

  it('the sweeper releases a waiting task whose dependencies all succeeded (two finishes at once)', async () => {
    const parent = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1 })
    const other = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1 })
    const child = await makeTask(db.pool, db.schema, { state: 'waiting' })
    const blocked = await makeTask(db.pool, db.schema, { state: 'waiting' })
    const running = await makeTask(db.pool, db.schema, { state: 'running', attempt: 1 })
    await db.pool.query(`insert into "${db.schema}".task_dependencies (task_id, depends_on) values ($1, $2), ($1, $3), ($4, $2), ($4, $5)`, [
      child,
      parent,
      other,
      blocked,
      running,
    ])
    const result = await new Sweeper(db.tr, {}).runOnce()
    expect(result.dependentsReleased).toBe(1)
    expect(result.dependentsCancelled).toBe(0)
    expect(await state(child)).toBe('pending')
    expect(await state(blocked)).toBe('waiting')
  })

  it('retry() of a dependent waits again while a task it depends on has not succeeded', async () => {
    const failed = await makeTask(db.pool, db.schema, { state: 'failed', attempt: 1 })
    const done = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1 })
    const blocked = await makeTask(db.pool, db.schema, { state: 'cancelled' })
    const free = await makeTask(db.pool, db.schema, { state: 'cancelled' })
    await db.pool.query(`insert into "${db.schema}".task_dependencies (task_id, depends_on) values ($1, $2), ($1, $3), ($4, $3)`, [
      blocked,
      failed,
      done,
      free,
    ])
    expect(await db.tr.retry(blocked)).toBe(true)
    expect(await db.tr.retry(free)).toBe(true)
    expect(await state(blocked)).toBe('waiting')
    expect(await state(free)).toBe('pending')
    // Its dependency is still failed: the sweeper cancels it again.
    await new Sweeper(db.tr, {}).runOnce()
    expect(await state(blocked)).toBe('cancelled')
  })

  it('refuses ids that are no tasks, writes nothing, and leaves the transaction usable', async () => {
    const client = await db.pool.connect()
    try {
      await client.query('begin')
      const a = await db.tr.enqueue(client, step, { label: 'a' })
      const err = await db.tr.enqueue(client, step, { label: 'b' }, { dependsOn: [a.id, '999999999999'] }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(DependencyNotFoundError)
      expect((err as DependencyNotFoundError).taskIds).toEqual(['999999999999'])
      expect((err as Error).message).toMatch(/999999999999/)
      // The caller's transaction goes on.
      const b = await db.tr.enqueue(client, step, { label: 'b' }, { dependsOn: [a.id] })
      const rows = await client.query(`select payload->>'label' as label from "${db.schema}".tasks where id = any($1::bigint[]) order by id`, [[a.id, b.id]])
      expect(rows.rows.map((r) => r.label)).toEqual(['a', 'b'])
      await client.query('rollback')
    } finally {
      client.release()
    }
  })

  it('rejects bad dependsOn values with every problem listed', async () => {
    // 2^63 is past Postgres's bigint: refused here, not as a cast error that aborts the caller's transaction.
    for (const dependsOn of [[], ['abc'], [0], ['1', -2], ['9223372036854775808'], [1.5]] as unknown as string[][]) {
      const err = await db.tr.enqueue(step, { label: 'x' }, { dependsOn }).catch((e: unknown) => e)
      expect(err, JSON.stringify(dependsOn)).toBeInstanceOf(InvalidOptionsError)
      expect((err as InvalidOptionsError).problems.join('\n')).toMatch(/dependsOn/)
    }
  })

  it('an idempotent repeat returns the first id and adds no second task', async () => {
    const a = await db.tr.enqueue(step, { label: 'a' })
    const first = await db.tr.enqueue(step, { label: 'k' }, { dependsOn: [a.id], idempotencyKey: `deps-${randomBytes(3).toString('hex')}` })
    const key = (await db.tr.getTask(first.id))!.idempotencyKey!
    const again = await db.tr.enqueue(step, { label: 'k' }, { dependsOn: [a.id], idempotencyKey: key })
    expect(again.id).toBe(first.id)
    const edges = await db.pool.query(`select count(*)::int as n from "${db.schema}".task_dependencies where task_id = $1`, [first.id])
    expect(edges.rows[0].n).toBe(1)
  })
})

async function stateIn(client: { query(text: string, values: unknown[]): Promise<{ rows: Array<{ state: string }> }> }, id: string) {
  return (await client.query(`select state from "${db.schema}".tasks where id = $1`, [id])).rows[0]?.state
}
