import { describe, expect, it } from 'vitest'
import { allIds, backendPid, client, db, rowCount, useEnqueueDb, waitForLockWait } from '../support/enqueue-db.ts'
import { welcome } from '../support/enqueue-tasks.ts'

/**
 * Idempotency keys: a repeated key returns the first task's id, also across racing transactions.
 * Real Postgres, one schema per file, rows deleted before each test (test/support/enqueue-db.ts).
 */

useEnqueueDb()

describe('idempotency keys', () => {
  it('a repeated key returns the first task’s id and writes nothing', async () => {
    const first = await db.tr.enqueue(welcome, { userId: 1 }, { idempotencyKey: 'signup:1' })
    const again = await db.tr.enqueue(welcome, { userId: 2 }, { idempotencyKey: 'signup:1' })
    expect(again).toEqual({ id: first.id, outcome: 'existing' })
    expect(await allIds()).toEqual([first.id])
    expect((await db.tr.getTask(first.id))?.payload).toEqual({ userId: 1 })
  })

  it('works inside one transaction too', async () => {
    const c = await client()
    await c.query('begin')
    const a = await db.tr.enqueue(c, welcome, { userId: 1 }, { idempotencyKey: 'k' })
    const b = await db.tr.enqueue(c, welcome, { userId: 1 }, { idempotencyKey: 'k' })
    await c.query('commit')
    expect(b).toEqual({ id: a.id, outcome: 'existing' })
    expect(await rowCount()).toBe(1)
  })

  it('enqueueMany: existing keys, repeated keys in the batch and keyless items map to the right ids', async () => {
    const existing = await db.tr.enqueue(welcome, { userId: 0 }, { idempotencyKey: 'old' })
    const { ids } = await db.tr.enqueueMany([
      { task: welcome, payload: { userId: 1 }, options: { idempotencyKey: 'new' } },
      { task: welcome, payload: { userId: 2 } },
      { task: welcome, payload: { userId: 3 }, options: { idempotencyKey: 'old' } },
      { task: welcome, payload: { userId: 4 }, options: { idempotencyKey: 'new' } },
      { task: welcome, payload: { userId: 5 } },
    ])
    expect(ids[2]).toBe(existing.id)
    expect(ids[3]).toBe(ids[0])
    expect(new Set([existing.id, ids[0], ids[1], ids[4]]).size).toBe(4)
    expect(await rowCount()).toBe(4)
    const payloadOf = async (id: string) => (await db.tr.getTask(id))?.payload
    expect(await payloadOf(ids[0]!)).toEqual({ userId: 1 })
    expect(await payloadOf(ids[1]!)).toEqual({ userId: 2 })
    expect(await payloadOf(ids[4]!)).toEqual({ userId: 5 })
  })

  describe('two transactions racing with the same key', () => {
    it('the second waits for the first, and gets its id when it commits', async () => {
      const a = await client()
      const b = await client()
      const bPid = await backendPid(b)
      await a.query('begin')
      await b.query('begin')
      const first = await db.tr.enqueue(a, welcome, { userId: 1 }, { idempotencyKey: 'race' })
      const second = db.tr.enqueue(b, welcome, { userId: 2 }, { idempotencyKey: 'race' })
      await waitForLockWait(bPid)
      await a.query('commit')
      expect(await second).toEqual({ id: first.id, outcome: 'existing' })
      await b.query('commit')
      expect(await allIds()).toEqual([first.id])
      expect((await db.tr.getTask(first.id))?.payload).toEqual({ userId: 1 })
    })

    it('the second inserts its own row when the first rolls back', async () => {
      const a = await client()
      const b = await client()
      const bPid = await backendPid(b)
      await a.query('begin')
      await b.query('begin')
      const first = await db.tr.enqueue(a, welcome, { userId: 1 }, { idempotencyKey: 'race' })
      const second = db.tr.enqueue(b, welcome, { userId: 2 }, { idempotencyKey: 'race' })
      await waitForLockWait(bPid)
      await a.query('rollback')
      const got = await second
      expect(got.id).not.toBe(first.id)
      await b.query('commit')
      expect(await allIds()).toEqual([got.id])
      expect(await db.tr.getTask(got.id)).toMatchObject({ payload: { userId: 2 }, idempotencyKey: 'race' })
    })

    it('enqueueMany waits too, and maps the key to the committed id', async () => {
      const a = await client()
      const b = await client()
      const bPid = await backendPid(b)
      await a.query('begin')
      await b.query('begin')
      const first = await db.tr.enqueue(a, welcome, { userId: 1 }, { idempotencyKey: 'race' })
      const second = db.tr.enqueueMany(b, [
        { task: welcome, payload: { userId: 2 } },
        { task: welcome, payload: { userId: 3 }, options: { idempotencyKey: 'race' } },
      ])
      await waitForLockWait(bPid)
      await a.query('commit')
      const { ids } = await second
      await b.query('commit')
      expect(ids[1]).toBe(first.id)
      expect(ids[0]).not.toBe(first.id)
      expect(await rowCount()).toBe(2)
    })
  })
})
