import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import pg from 'pg'
import { z } from 'zod'
import { TaskRelay, defineTask } from '../../src/index.ts'
import { createTestDb, databaseUrl, type TestDb } from '../support/db.ts'
import { ReplyCutter } from '../support/reply-cutter.ts'

/**
 * Group commit of enqueues made without a caller transaction: concurrent
 * calls share INSERTs and commits, each call still gets its own id after its
 * row committed, a row the server refuses fails only its own call, and a
 * batch whose outcome is unknown is never written a second time.
 */

const note = defineTask({ name: 'note', payload: z.object({ i: z.number().int(), text: z.string().default('') }), run: () => {} })

let db: TestDb

beforeAll(async () => {
  db = await createTestDb()
})

afterAll(async () => {
  await db?.cleanup()
})

beforeEach(async () => {
  await db.pool.query(`delete from "${db.schema}".tasks`)
})

/** Each task's payload index and the transaction that wrote it. */
async function rows() {
  const res = await db.pool.query<{ id: string; i: number; xid: string }>(
    `select id, (payload->>'i')::int as i, xmin::text as xid from "${db.schema}".tasks order by id`,
  )
  return res.rows
}

describe('enqueue without a transaction, many calls at once', () => {
  it('shares commits between calls and gives each call the id of its own row', async () => {
    const calls = Array.from({ length: 300 }, (_, i) => db.tr.enqueue(note, { i }))
    const ids = (await Promise.all(calls)).map((r) => r.id)

    const stored = await rows()
    expect(stored).toHaveLength(300)
    expect(new Set(ids).size).toBe(300)
    const byId = new Map(stored.map((r) => [String(r.id), r.i]))
    ids.forEach((id, i) => expect(byId.get(id)).toBe(i))
    // 300 calls in one tick: far fewer transactions than calls.
    const transactions = new Set(stored.map((r) => r.xid)).size
    expect(transactions).toBeLessThanOrEqual(10)
  })

  it('keeps sharing while calls keep coming (16 loops, each awaiting its call)', async () => {
    const ids: string[] = []
    await Promise.all(
      Array.from({ length: 16 }, async (_, loop) => {
        for (let k = 0; k < 25; k++) ids.push((await db.tr.enqueue(note, { i: loop * 100 + k })).id)
      }),
    )
    const stored = await rows()
    expect(stored).toHaveLength(400)
    expect(new Set(ids).size).toBe(400)
    expect(new Set(stored.map((r) => r.xid)).size).toBeLessThan(400)
  })

  it('writes one statement per call when enqueueCoalescing is 0', async () => {
    const tr = new TaskRelay({ db: db.pool, schema: db.schema, enqueueCoalescing: 0 })
    await Promise.all(Array.from({ length: 20 }, (_, i) => tr.enqueue(note, { i })))
    const stored = await rows()
    expect(stored).toHaveLength(20)
    expect(new Set(stored.map((r) => r.xid)).size).toBe(20)
  })

  it('fails only the call whose row the server refused; its neighbours are written', async () => {
    // A per-row refusal taskrelay cannot see coming (enqueue now refuses NUL
    // itself): a CHECK added for this test, SQLSTATE 23514.
    const tasks = `"${db.schema}".tasks`
    await db.pool.query(`alter table ${tasks} add constraint test_poison check (payload->>'text' is distinct from 'poison')`)
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 21 }, (_, i) => db.tr.enqueue(note, { i, text: i === 10 ? 'poison' : 'fine' })),
      )
      const refused = results.flatMap((r, i) => (r.status === 'rejected' ? [{ i, code: (r.reason as { code?: string }).code }] : []))
      expect(refused).toEqual([{ i: 10, code: '23514' }])
      const stored = await rows()
      expect(stored.map((r) => r.i).sort((a, b) => a - b)).toEqual([...Array(21).keys()].filter((i) => i !== 10))
    } finally {
      await db.pool.query(`alter table ${tasks} drop constraint test_poison`)
    }
  })

  it('writes keyed tasks alone, so a key held by an open transaction stalls no neighbour', async () => {
    const key = `coalesced-${randomBytes(4).toString('hex')}`
    // An open transaction holds the key: a keyed INSERT waits for it.
    const holder = await db.pool.connect()
    try {
      await holder.query('begin')
      const held = await db.tr.enqueue(holder, note, { i: 0 }, { idempotencyKey: key })
      const keyed = db.tr.enqueue(note, { i: 1 }, { idempotencyKey: key })
      const plain = await Promise.all(Array.from({ length: 5 }, (_, k) => db.tr.enqueue(note, { i: 2 + k })))
      expect(plain).toHaveLength(5)
      await holder.query('commit')
      expect((await keyed).id).toBe(held.id)
    } finally {
      holder.release()
    }
    const stored = await rows()
    expect(stored.map((r) => r.i).sort()).toEqual([0, 2, 3, 4, 5, 6])
  })

  it('lets close() send and wait for calls already made, beyond the INSERTs in flight', async () => {
    const tr = new TaskRelay({ db: databaseUrl(), schema: db.schema })
    // 2,500 calls: two 1,000-row INSERTs in flight and the rest queued behind them.
    const calls = Promise.all(Array.from({ length: 2500 }, (_, i) => tr.enqueue(note, { i })))
    await tr.close()
    expect((await calls).length).toBe(2500)
    expect(await rows()).toHaveLength(2500)
  })
})

describe('a shared commit whose reply is lost', () => {
  it('fails every call of the batch and writes none of them twice', async () => {
    const url = new URL(databaseUrl())
    const cutter = new ReplyCutter(url)
    await cutter.listen()
    url.hostname = '127.0.0.1'
    url.port = String(cutter.port)
    const pool = new pg.Pool({ connectionString: url.toString(), max: 4 })
    pool.on('error', () => {})
    const tr = new TaskRelay({ db: pool, schema: db.schema })
    try {
      // The marker travels in one payload, so the cut hits the shared INSERT's reply.
      const marker = `cut-${randomBytes(6).toString('hex')}`
      cutter.arm(marker)
      const results = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) => tr.enqueue(note, { i, text: i === 5 ? marker : 'fine' })),
      )
      expect(cutter.cuts).toBe(1)
      expect(results.every((r) => r.status === 'rejected')).toBe(true)
      // The batch had committed: each task exists exactly once, none was
      // written again on its own after the connection was lost.
      const stored = await rows()
      expect(stored.map((r) => r.i).sort((a, b) => a - b)).toEqual([...Array(12).keys()])
      expect(new Set(stored.map((r) => r.xid)).size).toBe(1)
      // The instance is usable afterwards.
      const { id } = await tr.enqueue(note, { i: 99 })
      expect((await rows()).find((r) => String(r.id) === id)?.i).toBe(99)
    } finally {
      await tr.close()
      await pool.end()
      await cutter.close()
    }
  })
})
