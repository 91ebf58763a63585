import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { InvalidOptionsError, defineTask } from '../../src/index.ts'
import { db, rowCount, tasks, useEnqueueDb } from '../support/enqueue-db.ts'
import { report, run, welcome, withDefault } from '../support/enqueue-tasks.ts'

/**
 * What enqueue writes (policy, run_at, payloads, id order) and what getTask reads back.
 * Real Postgres, one schema per file, rows deleted before each test (test/support/enqueue-db.ts).
 */

useEnqueueDb()

describe('what enqueue writes', () => {
  async function row(id: string) {
    const res = await db.pool.query(
      `select *, (extract(epoch from run_at - created_at) * 1000)::int as delay_ms, run_at > now() as in_future
         from ${tasks()} where id = $1`,
      [id],
    )
    return res.rows[0]
  }

  it('uses the task’s policy, and per-call options override it', async () => {
    const plain = await db.tr.enqueue(report, { day: 'wed' })
    expect(await row(plain.id)).toMatchObject({ queue: 'reports', priority: 5, max_attempts: 7, state: 'pending', attempt: 0 })
    const custom = await db.tr.enqueue(report, { day: 'thu' }, { queue: 'urgent', priority: -3, maxAttempts: 1 })
    expect(await row(custom.id)).toMatchObject({ queue: 'urgent', priority: -3, max_attempts: 1 })
    const defaults = await db.tr.enqueue(welcome, { userId: 1 })
    expect(await row(defaults.id)).toMatchObject({ queue: 'default', priority: 0, max_attempts: 3 })
  })

  it('run_at is the insert time by default', async () => {
    const { id } = await db.tr.enqueue(welcome, { userId: 1 })
    expect(await row(id)).toMatchObject({ delay_ms: 0, in_future: false })
  })

  it('delayMs puts run_at that far in the future (database clock)', async () => {
    const { id } = await db.tr.enqueue(welcome, { userId: 1 }, { delayMs: 90_000 })
    expect(await row(id)).toMatchObject({ delay_ms: 90000, in_future: true })
    const { ids } = await db.tr.enqueueMany([
      { task: welcome, payload: { userId: 2 }, options: { delayMs: 5000 } },
      { task: welcome, payload: { userId: 3 } },
    ])
    expect(await row(ids[0]!)).toMatchObject({ delay_ms: 5000, in_future: true })
    expect(await row(ids[1]!)).toMatchObject({ delay_ms: 0, in_future: false })
  })

  it('runAt is stored as given', async () => {
    const runAt = new Date(Date.now() + 3_600_000)
    const { id } = await db.tr.enqueue(welcome, { userId: 1 }, { runAt })
    const r = await row(id)
    expect(r.run_at.getTime()).toBe(runAt.getTime())
    expect(r.in_future).toBe(true)
    const { ids } = await db.tr.enqueueMany([{ task: welcome, payload: { userId: 2 }, options: { runAt } }])
    expect((await row(ids[0]!)).run_at.getTime()).toBe(runAt.getTime())
  })

  it('stores the payload the caller sent, not the parsed output (defaults apply in the worker)', async () => {
    const { id } = await db.tr.enqueue(withDefault, {})
    expect((await row(id)).payload).toEqual({})
  })

  it('stores any JSON payload the schema accepts, null included; a missing payload becomes {}', async () => {
    const nullable = defineTask({ name: 'nullable', payload: z.null(), run })
    const text = defineTask({ name: 'text', payload: z.string(), run })
    const optional = defineTask({ name: 'optional', payload: z.object({ a: z.number().optional() }).optional(), run })
    // undefined is stored as {}; a schema that accepts undefined but not {}
    // would fail in the worker on every attempt, so enqueue refuses it.
    const strict = defineTask({ name: 'optional-strict', payload: z.object({ a: z.number() }).optional(), run })
    await expect(db.tr.enqueue(strict, undefined)).rejects.toThrow(/after the JSON round trip/)
    const a = await db.tr.enqueue(nullable, null)
    const b = await db.tr.enqueue(text, 'hi')
    const c = await db.tr.enqueue(optional, undefined)
    const { ids } = await db.tr.enqueueMany([{ task: nullable, payload: null }])
    expect((await row(a.id)).payload).toBeNull()
    expect((await row(b.id)).payload).toBe('hi')
    expect((await row(c.id)).payload).toEqual({})
    expect((await row(ids[0]!)).payload).toBeNull()
  })

  it('enqueueMany returns ids in input order', async () => {
    const items = Array.from({ length: 100 }, (_, i) => ({ task: welcome, payload: { userId: i } }))
    const { ids } = await db.tr.enqueueMany(items)
    expect(new Set(ids).size).toBe(100)
    const res = await db.pool.query<{ id: string; user_id: number }>(
      `select id, (payload->>'userId')::int as user_id from ${tasks()}`,
    )
    const byId = new Map(res.rows.map((r) => [r.id, r.user_id]))
    expect(ids.map((id) => byId.get(id))).toEqual(items.map((_, i) => i))
  })

  it('enqueueMany of nothing writes nothing and sends no query', async () => {
    expect(await db.tr.enqueueMany([])).toEqual({ ids: [] })
    // A client inside a transaction that fails any query proves no SQL ran.
    const noSql = {
      getTransactionStatus: () => 'T',
      query: () => Promise.reject(new Error('no SQL expected')),
    }
    expect(await db.tr.enqueueMany(noSql as never, [])).toEqual({ ids: [] })
    expect(await rowCount()).toBe(0)
  })
})

describe('getTask', () => {
  it('returns the documented TaskRecord: string id, camelCase fields, Dates', async () => {
    const runAt = new Date(Date.now() + 60_000)
    const { id } = await db.tr.enqueue(report, { day: 'fri' }, { runAt, priority: 2, idempotencyKey: 'rec-1' })
    const rec = await db.tr.getTask(id)
    expect(rec).not.toBeNull()
    expect(Object.keys(rec!).sort()).toEqual(
      [
        'id',
        'name',
        'queue',
        'state',
        'payload',
        'priority',
        'attempt',
        'maxAttempts',
        'runAt',
        'createdAt',
        'dispatchedAt',
        'startedAt',
        'finishedAt',
        'leaseExpiresAt',
        'workerId',
        'result',
        'lastError',
        'idempotencyKey',
        'progress',
      ].sort(),
    )
    expect(rec).toEqual({
      id,
      name: 'report.build',
      queue: 'reports',
      state: 'pending',
      payload: { day: 'fri' },
      priority: 2,
      attempt: 0,
      maxAttempts: 7,
      runAt,
      createdAt: expect.any(Date),
      dispatchedAt: null,
      startedAt: null,
      finishedAt: null,
      leaseExpiresAt: null,
      workerId: null,
      result: null,
      lastError: null,
      progress: null,
      idempotencyKey: 'rec-1',
    })
    expect(typeof rec!.id).toBe('string')
    expect(Math.abs(rec!.createdAt.getTime() - Date.now())).toBeLessThan(60_000)
  })

  it('accepts string, number and bigint ids', async () => {
    const { id } = await db.tr.enqueue(welcome, { userId: 1 })
    expect((await db.tr.getTask(Number(id)))?.id).toBe(id)
    expect((await db.tr.getTask(BigInt(id)))?.id).toBe(id)
  })

  it('returns null for a missing id', async () => {
    const { id } = await db.tr.enqueue(welcome, { userId: 1 })
    expect(await db.tr.getTask(BigInt(id) + 1000n)).toBeNull()
  })

  it('refuses ids that are not positive integers', async () => {
    for (const bad of ['abc', '0', '-4', '1.5', '']) {
      await expect(db.tr.getTask(bad)).rejects.toBeInstanceOf(InvalidOptionsError)
    }
  })
})
