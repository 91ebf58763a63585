import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type pg from 'pg'
import { z } from 'zod'
import { createTestDb, type TestDb } from '../support/db.ts'
import { makeTask } from '../support/factory.ts'
import { InvalidOptionsError, PayloadValidationError, defineTask, type EnqueueOptions } from '../../src/index.ts'
import { MAX_DELAY_MS } from '../../src/duration.ts'

/**
 * Issue 12, defect 5 and the SQL half of 8: input that passes validation but
 * that Postgres would refuse (NUL, lone surrogates, dates and delays out of
 * range, oversized SQL payloads) is refused first with a typed error that
 * names the field. Nothing is written, and the caller's transaction goes on.
 */

const run = async () => {}
const note = defineTask({
  name: 'note.save',
  payload: z.object({ text: z.string(), user: z.object({ name: z.string() }).optional(), tags: z.array(z.string()).optional() }),
  run,
})
const loose = defineTask({ name: 'note.loose', payload: z.record(z.string(), z.unknown()), run })

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

const names = async () => (await db.pool.query<{ name: string }>(`select name from "${db.schema}".tasks order by id`)).rows.map((r) => r.name)

async function client(): Promise<pg.PoolClient> {
  const c = await db.pool.connect()
  held.push(c)
  return c
}

/**
 * Run `bad` inside a caller transaction, then enqueue a good task in the same
 * transaction and commit: the error must come from taskrelay, not from a
 * statement that aborted the transaction.
 */
async function refusedInTransaction(bad: (c: pg.PoolClient) => Promise<unknown>): Promise<unknown> {
  const c = await client()
  await c.query('begin')
  const err = await bad(c).then(
    () => null,
    (e: unknown) => e,
  )
  await db.tr.enqueue(c, note, { text: 'after' })
  await c.query('commit')
  expect(await names()).toEqual(['note.save'])
  return err
}

const lone = '😀'.slice(0, 1)

describe('payload text Postgres cannot store', () => {
  const cases: Array<{ what: string; task: typeof note | typeof loose; payload: Record<string, unknown>; path: string; message: RegExp }> = [
    { what: 'NUL in a string', task: note, payload: { text: 'a\u0000b' }, path: 'text', message: /NUL/ },
    { what: 'a lone surrogate (str.slice on an emoji)', task: note, payload: { text: 'ok', user: { name: `Ada ${lone}` } }, path: 'user.name', message: /lone UTF-16 surrogate/ },
    { what: 'a lone surrogate in an array', task: note, payload: { text: 'ok', tags: ['a', '\udc00'] }, path: 'tags[1]', message: /lone UTF-16 surrogate/ },
    { what: 'NUL in an object key', task: loose, payload: { 'k\u0000': 1 }, path: '(key)', message: /NUL/ },
  ]
  for (const c of cases) {
    it(`${c.what}: PayloadValidationError naming ${c.path}; the transaction goes on`, async () => {
      const err = await refusedInTransaction((trx) => db.tr.enqueue(trx, c.task as typeof loose, c.payload))
      expect(err).toBeInstanceOf(PayloadValidationError)
      expect((err as PayloadValidationError).issues).toEqual([{ path: c.path, message: expect.stringMatching(c.message) }])
      expect((err as Error).message).toContain(`note.`)
    })
  }

  it('enqueueMany: one bad item refuses the batch before any SQL', async () => {
    const err = await refusedInTransaction((trx) =>
      db.tr.enqueueMany(trx, [
        { task: note, payload: { text: 'fine' } },
        { task: note, payload: { text: `cut ${lone}` } },
      ]),
    )
    expect(err).toBeInstanceOf(PayloadValidationError)
  })

  it('without a transaction (the coalesced path): typed error, nothing written', async () => {
    const results = await Promise.allSettled([db.tr.enqueue(note, { text: 'good' }), db.tr.enqueue(note, { text: 'bad\u0000' })])
    expect(results[0].status).toBe('fulfilled')
    expect(results[1].status === 'rejected' && results[1].reason).toBeInstanceOf(PayloadValidationError)
    expect(await names()).toEqual(['note.save'])
  })
})

describe('options Postgres cannot store', () => {
  const cases: Array<{ what: string; options: EnqueueOptions; message: RegExp }> = [
    { what: 'NUL in the idempotency key', options: { idempotencyKey: 'k\u0000' }, message: /idempotencyKey: .*NUL/ },
    { what: 'a lone surrogate in the idempotency key', options: { idempotencyKey: `k${lone}` }, message: /idempotencyKey: .*surrogate/ },
    { what: 'runAt before 4714 BC', options: { runAt: new Date(Date.UTC(-5000, 0, 1)) }, message: /runAt: must be between 1970-01-01T00:00:00.000Z and/ },
    { what: 'runAt in year 200000', options: { runAt: new Date(Date.UTC(200_000, 0, 1)) }, message: /runAt: must be between/ },
    { what: 'a delay of 9e15 ms (285,000 years)', options: { delayMs: 9e15 }, message: new RegExp(`delayMs: must be at most ${MAX_DELAY_MS}`) },
    { what: 'a delay just over the cap', options: { delayMs: MAX_DELAY_MS + 1 }, message: /delayMs: must be at most/ },
  ]
  for (const c of cases) {
    it(`${c.what}: InvalidOptionsError; the transaction goes on`, async () => {
      const err = await refusedInTransaction((trx) => db.tr.enqueue(trx, note, { text: 'x' }, c.options))
      expect(err).toBeInstanceOf(InvalidOptionsError)
      expect((err as Error).message).toMatch(c.message)
    })
  }

  it('accepts the edges: a delay of exactly MAX_DELAY_MS, a runAt in 1970', async () => {
    const a = await db.tr.enqueue(note, { text: 'x' }, { delayMs: MAX_DELAY_MS })
    const b = await db.tr.enqueue(note, { text: 'x' }, { runAt: new Date(0) })
    expect((await db.tr.getTask(a.id))!.runAt.getTime()).toBeGreaterThan(Date.now() + MAX_DELAY_MS - 3_600_000)
    expect((await db.tr.getTask(b.id))!.runAt.getTime()).toBe(0)
  })
})

describe('SQL API limits', () => {
  const sql = (c: pg.ClientBase, fn: string, args: string, values: unknown[] = []) => c.query(`select "${db.schema}".${fn}(${args}) as id`, values)
  const over = 1024 * 1024 + 1

  it('enqueue() refuses a payload over 1 MiB with a hint, writing nothing', async () => {
    const c = await client()
    const err = (await sql(c, 'enqueue', `'note.save', jsonb_build_object('text', repeat('x', $1::int))`, [over]).catch((e: unknown) => e)) as {
      code?: string
      message: string
      hint?: string
    }
    expect(err.message).toMatch(/payload is \d+ bytes, over the limit of 1048576 bytes/)
    expect(err.code).toBe('22023')
    expect(err.hint).toMatch(/store large data elsewhere/i)
    expect(await names()).toEqual([])
  })

  it('enqueue_after() refuses it too', async () => {
    const parent = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1 })
    const c = await client()
    await expect(
      sql(c, 'enqueue_after', `$1::bigint[], 'note.save', jsonb_build_object('text', repeat('x', $2::int))`, [`{${parent}}`, over]),
    ).rejects.toThrow(/over the limit of 1048576 bytes/)
  })

  it('enqueue() accepts a payload just under the limit', async () => {
    const c = await client()
    await sql(c, 'enqueue', `'note.save', jsonb_build_object('text', repeat('x', $1::int))`, [1024 * 1024 - 100])
    expect(await names()).toEqual(['note.save'])
  })

  it('enqueue() refuses a delay or run_at beyond 10 years, or run_at before 1970, with 22023', async () => {
    const c = await client()
    for (const args of [`'note.save', delay => interval '11 years'`, `'note.save', delay => interval '100000000 years'`, `'note.save', run_at => now() + interval '11 years'`, `'note.save', run_at => '4000-01-01 BC'`]) {
      const err = (await sql(c, 'enqueue', args).catch((e: unknown) => e)) as { code?: string; message: string }
      expect(err.message, args).toMatch(/(delay|run_at) must be/)
      expect(err.code, args).toBe('22023')
    }
    expect(await names()).toEqual([])
  })
})
