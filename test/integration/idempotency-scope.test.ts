import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type pg from 'pg'
import { z } from 'zod'
import { createTestDb, type TestDb } from '../support/db.ts'
import { makeTask } from '../support/factory.ts'
import { InvalidOptionsError, defineTask } from '../../src/index.ts'
import { fireKey } from '../../src/scheduler/fire.ts'

/**
 * Issue 12, defect 4: an idempotency key is scoped to its task name, and the
 * scheduler's keys (schedule:<name>:<fire time>) cannot be taken by a user.
 * Real Postgres, one schema for this file, rows deleted before each test.
 */

const run = async () => {}
const receipt = defineTask({ name: 'order.receipt', payload: z.object({ order: z.number() }), run })
const stock = defineTask({ name: 'order.stock', payload: z.object({ order: z.number() }), run })

let db: TestDb
const held: pg.PoolClient[] = []

beforeAll(async () => {
  db = await createTestDb()
})
afterAll(async () => {
  await db?.cleanup()
})
beforeEach(async () => {
  await db.pool.query(`delete from "${db.schema}".tasks`)
})
afterEach(() => {
  for (const c of held.splice(0)) c.release(true)
})

const rows = async () =>
  (await db.pool.query<{ id: string; name: string; idempotency_key: string | null; payload: unknown }>(
    `select id::text, name, idempotency_key, payload from "${db.schema}".tasks order by id`,
  )).rows
const sqlEnqueue = async (fn: string, args: string, values: unknown[] = []) =>
  String((await db.pool.query(`select "${db.schema}".${fn}(${args}) as id`, values)).rows[0].id)

describe('TypeScript enqueue', () => {
  it('the same key for two task names writes two tasks', async () => {
    const a = await db.tr.enqueue(receipt, { order: 1 }, { idempotencyKey: 'order-1' })
    const b = await db.tr.enqueue(stock, { order: 1 }, { idempotencyKey: 'order-1' })
    expect(b.id).not.toBe(a.id)
    expect((await rows()).map((r) => r.name)).toEqual(['order.receipt', 'order.stock'])
    // Within one name the key still deduplicates.
    expect(await db.tr.enqueue(stock, { order: 2 }, { idempotencyKey: 'order-1' })).toEqual({ id: b.id, outcome: 'existing' })
    expect(await rows()).toHaveLength(2)
  })

  it('inside a caller transaction too', async () => {
    const c = await db.pool.connect()
    held.push(c)
    await c.query('begin')
    const a = await db.tr.enqueue(c, receipt, { order: 1 }, { idempotencyKey: 'k' })
    const b = await db.tr.enqueue(c, stock, { order: 1 }, { idempotencyKey: 'k' })
    await c.query('commit')
    expect(b.id).not.toBe(a.id)
    expect(await rows()).toHaveLength(2)
  })

  it('enqueueMany maps each (name, key) to its own task, old and new', async () => {
    const old = await db.tr.enqueue(receipt, { order: 0 }, { idempotencyKey: 'k' })
    const { ids } = await db.tr.enqueueMany([
      { task: stock, payload: { order: 1 }, options: { idempotencyKey: 'k' } },
      { task: receipt, payload: { order: 2 }, options: { idempotencyKey: 'k' } },
      { task: stock, payload: { order: 3 }, options: { idempotencyKey: 'k' } },
      { task: receipt, payload: { order: 4 } },
    ])
    expect(ids[1]).toBe(old.id)
    expect(ids[2]).toBe(ids[0])
    expect(new Set([old.id, ids[0], ids[3]]).size).toBe(3)
    const byId = new Map((await rows()).map((r) => [r.id, r]))
    expect(byId.size).toBe(3)
    expect(byId.get(ids[0]!)).toMatchObject({ name: 'order.stock', payload: { order: 1 } })
    expect(byId.get(ids[3]!)).toMatchObject({ name: 'order.receipt', payload: { order: 4 } })
  })

  it('with dependsOn (the dependent insert path)', async () => {
    const parent = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1 })
    const a = await db.tr.enqueue(receipt, { order: 1 }, { idempotencyKey: 'dep', dependsOn: [parent] })
    const b = await db.tr.enqueue(stock, { order: 1 }, { idempotencyKey: 'dep', dependsOn: [parent] })
    expect(b.id).not.toBe(a.id)
    expect(await db.tr.enqueue(stock, { order: 9 }, { idempotencyKey: 'dep', dependsOn: [parent] })).toEqual({ id: b.id, outcome: 'existing' })
  })

  it('refuses keys in the scheduler’s reserved namespace, writing nothing', async () => {
    const key = fireKey('nightly', new Date('2030-01-01T03:00:00Z'))
    const err = await db.tr.enqueue(receipt, { order: 1 }, { idempotencyKey: key }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidOptionsError)
    expect((err as Error).message).toMatch(/idempotencyKey: .*"schedule:" is reserved/)
    await expect(db.tr.enqueueMany([{ task: receipt, payload: { order: 1 }, options: { idempotencyKey: 'schedule:x' } }])).rejects.toBeInstanceOf(
      InvalidOptionsError,
    )
    expect(await rows()).toEqual([])
  })
})

describe('SQL API', () => {
  it('enqueue(): the same key for two task names writes two tasks', async () => {
    const a = await sqlEnqueue('enqueue', `'order.receipt', idempotency_key => 'k'`)
    const b = await sqlEnqueue('enqueue', `'order.stock', idempotency_key => 'k'`)
    expect(b).not.toBe(a)
    expect(await sqlEnqueue('enqueue', `'order.stock', '{"again": true}', idempotency_key => 'k'`)).toBe(b)
    expect(await rows()).toHaveLength(2)
  })

  it('enqueue_after(): the same key for two task names writes two tasks', async () => {
    const parent = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1 })
    const deps = `{${parent}}`
    const a = await sqlEnqueue('enqueue_after', `$1::bigint[], 'order.receipt', idempotency_key => 'k'`, [deps])
    const b = await sqlEnqueue('enqueue_after', `$1::bigint[], 'order.stock', idempotency_key => 'k'`, [deps])
    expect(b).not.toBe(a)
    expect(await sqlEnqueue('enqueue_after', `$1::bigint[], 'order.stock', idempotency_key => 'k'`, [deps])).toBe(b)
  })

  it('enqueue() and enqueue_after() refuse scheduler keys with a hint', async () => {
    const parent = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1 })
    for (const call of [
      () => sqlEnqueue('enqueue', `'order.receipt', idempotency_key => 'schedule:nightly:2030-01-01T03:00:00.000Z'`),
      () => sqlEnqueue('enqueue_after', `$1::bigint[], 'order.receipt', idempotency_key => 'schedule:x'`, [`{${parent}}`]),
    ]) {
      const err = (await call().catch((e: unknown) => e)) as { code?: string; message: string; hint?: string }
      expect(err.message).toMatch(/idempotency_key must not start with "schedule:"/)
      expect(err.code).toBe('22023')
      expect(err.hint).toMatch(/reserved for the scheduler/)
    }
    expect((await rows()).map((r) => r.id)).toEqual([parent])
  })
})
