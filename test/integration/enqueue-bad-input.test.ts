import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createTestDb } from '../support/db.ts'
import {
  ConfigError,
  InvalidOptionsError,
  PayloadTooLargeError,
  PayloadValidationError,
  TaskRelay,
  defineTask,
  type EnqueueOptions,
} from '../../src/index.ts'
import { allIds, client, db, rejection, rowCount, useEnqueueDb } from '../support/enqueue-db.ts'
import { badEnqueueCases, expectRefusal, loose, welcome } from '../support/enqueue-tasks.ts'

/**
 * Bad input throws a typed, exported error and writes nothing. The table
 * itself is checked against prepareTask() in test/unit/enqueue-validation.test.ts;
 * here, that enqueue and enqueueMany refuse it before any SQL.
 * Real Postgres, one schema per file, rows deleted before each test (test/support/enqueue-db.ts).
 */

useEnqueueDb()

describe('bad input throws a typed, exported error and writes nothing', () => {
  it.each(badEnqueueCases)('$what — enqueue(trx): the caller’s transaction stays usable', async (c) => {
    const client_ = await client()
    await client_.query('begin')
    const err = await rejection(db.tr.enqueue(client_, c.task, c.payload as never, c.options as EnqueueOptions))
    expectRefusal(err, c)
    // Validation runs before any SQL: the transaction is not aborted.
    expect(client_.getTransactionStatus()).toBe('T')
    const good = await db.tr.enqueue(client_, welcome, { userId: 99 })
    await client_.query('commit')
    expect(await allIds()).toEqual([good.id])
  })

  it.each(badEnqueueCases)('$what — enqueueMany: the good items are not written either', async (c) => {
    const err = await rejection(
      db.tr.enqueueMany([
        { task: welcome, payload: { userId: 1 } },
        { task: c.task, payload: c.payload, options: c.options as EnqueueOptions },
        { task: welcome, payload: { userId: 2 } },
      ]),
    )
    expectRefusal(err, c)
    expect(await rowCount()).toBe(0)
  })
  it('maxPayloadBytes is configurable and counts UTF-8 bytes, not characters', async () => {
    const tr = new TaskRelay({ db: db.pool, schema: db.schema, maxPayloadBytes: 20 })
    // {"s":"0123456789ab"} is exactly 20 bytes
    const { id } = await tr.enqueue(loose, { s: '0123456789ab' })
    expect(await allIds()).toEqual([id])
    const over = await rejection(tr.enqueue(loose, { s: '0123456789abc' }))
    expect(over).toBeInstanceOf(PayloadTooLargeError)
    expect((over as Error).message).toMatch(/is 21 bytes, over the limit of 20 bytes/)
    // 12 characters, 13 bytes: é is two bytes in UTF-8
    const multiByte = await rejection(tr.enqueue(loose, { s: 'é123456789ab' }))
    expect(multiByte).toBeInstanceOf(PayloadTooLargeError)
    expect(await rowCount()).toBe(1)
  })

  it('maxPayloadBytes must be a positive integer', () => {
    for (const maxPayloadBytes of [0, -1, 1.5]) {
      expect(() => new TaskRelay({ db: db.pool, schema: db.schema, maxPayloadBytes })).toThrow(ConfigError)
    }
  })

  it('a value that is not a task is refused', async () => {
    const fake = { name: 'email.welcome', payload: z.object({}) }
    const c = await client()
    await c.query('begin')
    await expect(db.tr.enqueue(fake as never, {} as never)).rejects.toBeInstanceOf(InvalidOptionsError)
    await expect(db.tr.enqueue(c, fake as never, {} as never)).rejects.toBeInstanceOf(InvalidOptionsError)
    await expect(db.tr.enqueueMany(c, 'items' as never)).rejects.toThrow(/items: expected an array/)
    await expect(db.tr.enqueueMany(c, [{ task: fake } as never])).rejects.toThrow(/items\.0\.task: expected a task from defineTask\(\)/)
    await c.query('commit')
    expect(await rowCount()).toBe(0)
  })
})

describe('payloads the worker could not read', () => {
  it('rejects a payload that is valid only before its JSON round trip, writing nothing', async () => {
    const db = await createTestDb()
    try {
      const withDate = defineTask({ name: 'dated', payload: z.object({ at: z.date() }), run: async () => null })
      const error = await db.tr.enqueue(withDate, { at: new Date() }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(PayloadValidationError)
      expect((error as PayloadValidationError).issues[0]!.path).toBe('at')
      expect((error as Error).message).toMatch(/z\.coerce\.date\(\)/)
      const coerced = defineTask({ name: 'dated-ok', payload: z.object({ at: z.coerce.date() }), run: async () => null })
      await db.tr.enqueue(coerced, { at: new Date() })
      const count = await db.pool.query(`select name from "${db.schema}".tasks`)
      expect(count.rows).toEqual([{ name: 'dated-ok' }])
    } finally {
      await db.cleanup()
    }
  })
})
