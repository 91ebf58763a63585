import { describe, expect, it } from 'vitest'
import pg from 'pg'
import { sql } from 'kysely'
import { databaseUrl } from '../support/db.ts'
import { TaskRelay, TransactionRequiredError } from '../../src/index.ts'
import { allIds, client, db, kdb, rejection, rowCount, tasks, useEnqueueDb } from '../support/enqueue-db.ts'
import { report, welcome } from '../support/enqueue-tasks.ts'

/**
 * Transactional enqueue (issue #2): a task exists if and only if the caller's
 * transaction committed, with a pg client or a Kysely Transaction; without a
 * trx it commits at once; a trx that is not inside a transaction is refused.
 * Real Postgres, one schema per file, rows deleted before each test (test/support/enqueue-db.ts).
 */

useEnqueueDb()

describe('transactional enqueue with a pg client', () => {
  it('is invisible until COMMIT, then visible', async () => {
    const c = await client()
    await c.query('begin')
    const { id } = await db.tr.enqueue(c, welcome, { userId: 1 })
    expect(id).toMatch(/^[1-9][0-9]*$/)
    expect(await rowCount()).toBe(0)
    expect(await db.tr.getTask(id)).toBeNull()
    await c.query('commit')
    expect(await allIds()).toEqual([id])
    expect(await db.tr.getTask(id)).toMatchObject({ id, name: 'email.welcome', state: 'pending', payload: { userId: 1 } })
  })

  it('leaves nothing after ROLLBACK', async () => {
    const c = await client()
    await c.query('begin')
    await db.tr.enqueue(c, welcome, { userId: 1 })
    await db.tr.enqueue(c, report, { day: '2026-01-01' }, { delayMs: 1000 })
    expect((await c.query(`select count(*)::int as n from ${tasks()}`)).rows[0].n).toBe(2)
    await c.query('rollback')
    expect(await rowCount()).toBe(0)
  })

  it('enqueueMany: all rows on COMMIT, none on ROLLBACK', async () => {
    const items = [
      { task: welcome, payload: { userId: 1 } },
      { task: report, payload: { day: 'mon' }, options: { priority: 9 } },
      { task: welcome, payload: { userId: 2 } },
    ]
    const c = await client()
    await c.query('begin')
    await db.tr.enqueueMany(c, items)
    await c.query('rollback')
    expect(await rowCount()).toBe(0)

    await c.query('begin')
    const { ids } = await db.tr.enqueueMany(c, items)
    expect(await rowCount()).toBe(0)
    await c.query('commit')
    expect(ids).toHaveLength(3)
    expect(await allIds()).toEqual([...ids].sort((a, b) => Number(a) - Number(b)))
  })

  it('ROLLBACK TO SAVEPOINT drops only the tasks enqueued after the savepoint', async () => {
    const c = await client()
    await c.query('begin')
    const kept = await db.tr.enqueue(c, welcome, { userId: 1 })
    await c.query('savepoint before_more')
    await db.tr.enqueue(c, welcome, { userId: 2 })
    await db.tr.enqueueMany(c, [
      { task: welcome, payload: { userId: 3 } },
      { task: welcome, payload: { userId: 4 } },
    ])
    await c.query('rollback to savepoint before_more')
    const after = await db.tr.enqueue(c, welcome, { userId: 5 })
    await c.query('commit')
    expect(await allIds()).toEqual([kept.id, after.id])
  })
})

describe('transactional enqueue with a Kysely Transaction', () => {
  it('commits with the transaction', async () => {
    const ids = await kdb.transaction().execute(async (trx) => {
      const one = await db.tr.enqueue(trx, welcome, { userId: 1 })
      const many = await db.tr.enqueueMany(trx, [
        { task: welcome, payload: { userId: 2 } },
        { task: report, payload: { day: 'tue' } },
      ])
      expect(await rowCount()).toBe(0)
      return [one.id, ...many.ids]
    })
    expect(await allIds()).toEqual(ids)
  })

  it('rolls back with the transaction', async () => {
    const boom = new Error('caller failed after enqueue')
    await expect(
      kdb.transaction().execute(async (trx) => {
        await db.tr.enqueue(trx, welcome, { userId: 1 })
        await db.tr.enqueueMany(trx, [{ task: welcome, payload: { userId: 2 } }])
        throw boom
      }),
    ).rejects.toBe(boom)
    expect(await rowCount()).toBe(0)
  })

  it('honours savepoints of a controlled transaction', async () => {
    const trx = await kdb.startTransaction().execute()
    try {
      const kept = await db.tr.enqueue(trx, welcome, { userId: 1 })
      const sp = await trx.savepoint('sp1').execute()
      await db.tr.enqueue(sp, welcome, { userId: 2 })
      await sp.rollbackToSavepoint('sp1').execute()
      await trx.commit().execute()
      expect(await allIds()).toEqual([kept.id])
    } catch (err) {
      await trx.rollback().execute().catch(() => {})
      throw err
    }
  })
})

describe('enqueue without trx (autocommit on taskrelay’s pool)', () => {
  it('enqueue(task, payload) commits at once', async () => {
    const { id } = await db.tr.enqueue(welcome, { userId: 7 })
    expect(await allIds()).toEqual([id])
  })

  it('enqueueMany(items) commits at once', async () => {
    const { ids } = await db.tr.enqueueMany([
      { task: welcome, payload: { userId: 1 } },
      { task: welcome, payload: { userId: 2 } },
    ])
    expect(await allIds()).toEqual(ids)
  })

  it('works on a TaskRelay built over a Kysely instance', async () => {
    const tr = new TaskRelay({ db: kdb, schema: db.schema })
    const { id } = await tr.enqueue(welcome, { userId: 3 })
    expect(await tr.getTask(id)).toMatchObject({ id, payload: { userId: 3 } })
    await kdb.transaction().execute((trx) => tr.enqueue(trx, welcome, { userId: 4 }))
    expect(await rowCount()).toBe(2)
    await tr.close()
  })
})

describe('a trx that is not inside a transaction is refused, and nothing is written', () => {
  async function expectRefused(trx: unknown, detail: RegExp) {
    const one = await rejection(db.tr.enqueue(trx as pg.PoolClient, welcome, { userId: 1 }))
    expect(one).toBeInstanceOf(TransactionRequiredError)
    expect(one).toMatchObject({ code: 'TRANSACTION_REQUIRED', message: expect.stringMatching(detail) })
    const many = await rejection(db.tr.enqueueMany(trx as pg.PoolClient, [{ task: welcome, payload: { userId: 2 } }]))
    expect(many).toBeInstanceOf(TransactionRequiredError)
    expect(await rowCount()).toBe(0)
  }

  it('a pg client without BEGIN (would otherwise autocommit)', async () => {
    const c = await client()
    await expectRefused(c, /not inside a transaction/)
  })

  it('a pg client after COMMIT', async () => {
    const c = await client()
    await c.query('begin')
    await c.query('commit')
    await expectRefused(c, /not inside a transaction/)
  })

  it('a pg client in an aborted transaction', async () => {
    const c = await client()
    await c.query('begin')
    await expect(c.query('select 1/0')).rejects.toThrow(/division by zero/)
    // Right after the failure pg may not have read ReadyForQuery('E') yet: then
    // the INSERT itself is refused (25P02), reported as the same error.
    await expectRefused(c, /inside a failed transaction \(ROLLBACK it first\)/)
    expect(c.getTransactionStatus()).toBe('E')
    // Once pg knows, no statement is sent at all.
    await expectRefused(c, /inside a failed transaction \(ROLLBACK it first\)/)
    // Force the lagging case: pg still says 'T', the server refuses the INSERT.
    const lagging = c as pg.PoolClient & { getTransactionStatus(): string }
    lagging.getTransactionStatus = () => 'T'
    try {
      await expectRefused(c, /inside a failed transaction \(ROLLBACK it first\)/)
    } finally {
      delete (lagging as { getTransactionStatus?: unknown }).getTransactionStatus
    }
    await c.query('rollback')
    expect(await rowCount()).toBe(0)
  })

  it('a Kysely transaction aborted by an earlier error', async () => {
    const trx = await kdb.startTransaction().execute()
    try {
      await expect(sql`select 1/0`.execute(trx)).rejects.toThrow(/division by zero/)
      const err = await rejection(db.tr.enqueue(trx, welcome, { userId: 1 }))
      expect(err).toBeInstanceOf(TransactionRequiredError)
      expect((err as Error).message).toMatch(/inside a failed transaction/)
      expect((err as Error).cause).toMatchObject({ code: '25P02' })
      await expect(db.tr.enqueueMany(trx, [{ task: welcome, payload: { userId: 2 } }])).rejects.toBeInstanceOf(TransactionRequiredError)
    } finally {
      await trx.rollback().execute()
    }
    expect(await rowCount()).toBe(0)
  })

  it('a pg.Pool', async () => {
    await expectRefused(db.pool, /pg\.Pool/)
  })

  it('a pg.Client that never connected', async () => {
    await expectRefused(new pg.Client({ connectionString: databaseUrl() }), /not connected yet/)
  })

  it('a Kysely instance that is not a Transaction', async () => {
    await expectRefused(kdb, /Kysely instance, not a Transaction/)
  })

  it('undefined or null (e.g. an optional trx that was not passed on)', async () => {
    await expectRefused(undefined, /got undefined/)
    await expectRefused(null, /got null/)
  })

  it('a Kysely transaction that already committed', async () => {
    let leaked: unknown
    await kdb.transaction().execute(async (trx) => {
      leaked = trx
    })
    await expect(db.tr.enqueue(leaked as pg.PoolClient, welcome, { userId: 1 })).rejects.toThrow(/already committed/)
    expect(await rowCount()).toBe(0)
  })
})
