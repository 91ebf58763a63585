import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { LeaseLostError, TransactionRequiredError, Worker, defineTask } from '../../src/index.ts'
import { Kysely, PostgresDialect, sql } from 'kysely'
import { createTestDb, waitUntil, type TestDb } from '../support/db.ts'

/**
 * Issue 15, item 1: ctx.complete(trx, result) finishes the attempt inside
 * the application's own transaction, fenced by (id, attempt) and the lease.
 * Real Postgres, a real worker on the Postgres lane (no Redis needed).
 */
let db: TestDb
const started: Array<{ stop(): Promise<void> }> = []

beforeAll(async () => {
  db = await createTestDb()
  await db.pool.query(`create table "${db.schema}".ledger (task_id bigint, note text)`)
})
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()))
})
afterAll(async () => {
  await db?.cleanup()
})

const ledger = () => `"${db.schema}".ledger`
const row = async (id: string) =>
  (await db.pool.query<{ state: string; attempt: number; result: unknown; last_error: { message?: string } | null }>(
    `select state, attempt, result, last_error from "${db.schema}".tasks where id = $1`,
    [id],
  )).rows[0]!
const ledgerOf = async (id: string) => (await db.pool.query<{ note: string }>(`select note from ${ledger()} where task_id = $1 order by note`, [id])).rows.map((r) => r.note)

const followUp = defineTask({ name: 'cit.follow-up', queue: 'cit', payload: z.object({ of: z.string() }), run: () => 'followed' })
/** What the handler should do, by task payload. */
type Mode = 'commit' | 'throw-after-complete' | 'superseded' | 'cancelled' | 'no-transaction'
const seen: Array<{ mode: Mode; error?: unknown }> = []

const step = defineTask({
  name: 'cit.step',
  queue: 'cit',
  payload: z.object({ mode: z.enum(['commit', 'throw-after-complete', 'superseded', 'cancelled', 'no-transaction']) }),
  async run({ mode }, ctx) {
    const id = ctx.task.id
    if (mode === 'no-transaction') {
      try {
        await ctx.complete(db.pool, { never: true })
      } catch (error) {
        seen.push({ mode, error })
      }
      return { plain: true }
    }
    const client = await db.pool.connect()
    try {
      await client.query('begin')
      await client.query(`insert into ${ledger()} values ($1, $2)`, [id, `attempt ${ctx.attempt}`])
      await db.tr.enqueue(client, followUp, { of: id })
      if (mode === 'superseded' && ctx.attempt === 1) {
        // What a lease expiry and another worker's claim leave: the row at the next attempt.
        await db.pool.query(`update "${db.schema}".tasks set attempt = attempt + 1, worker_id = 'someone-else' where id = $1`, [id])
      }
      if (mode === 'cancelled') await db.tr.cancel(id)
      try {
        await ctx.complete(client, { done: id, attempt: ctx.attempt })
      } catch (error) {
        seen.push({ mode, error })
        throw error
      }
      if (mode === 'throw-after-complete' && ctx.attempt === 1) throw new Error('boom after complete')
      await client.query('commit')
    } catch (error) {
      await client.query('rollback')
      throw error
    } finally {
      client.release()
    }
    return 'ignored: ctx.complete() gave the result'
  },
})

/** The same through a Kysely transaction, as the README shows. */
const kyselyStep = defineTask({
  name: 'cit.kysely',
  queue: 'cit',
  payload: z.object({}),
  async run(_p, ctx) {
    const kdb = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool: db.pool }) })
    await kdb.transaction().execute(async (trx) => {
      await sql`insert into ${sql.table(`${db.schema}.ledger`)} values (${ctx.task.id}, 'kysely')`.execute(trx)
      await db.tr.enqueue(trx, followUp, { of: ctx.task.id })
      await ctx.complete(trx, { via: 'kysely' })
    })
  },
})

async function startWorker(): Promise<void> {
  const worker = new Worker(db.tr, { tasks: [step, followUp, kyselyStep], lane: 'postgres', leaseMs: 2000, heartbeatMs: 300 })
  started.push(worker)
  await worker.start()
}

describe('ctx.complete(trx, result)', () => {
  it("commits the step's success with the caller's writes and the tasks it enqueued; the worker writes nothing after", async () => {
    await startWorker()
    const { id } = await db.tr.enqueue(step, { mode: 'commit' })
    await waitUntil(async () => (await row(id)).state === 'succeeded', { what: 'the step succeeded' })
    const r = await row(id)
    expect(r.attempt).toBe(1)
    expect(r.result).toEqual({ done: id, attempt: 1 }) // not the handler's return value
    expect(await ledgerOf(id)).toEqual(['attempt 1'])
    const followUps = await db.pool.query(`select state from "${db.schema}".tasks where name = 'cit.follow-up' and payload ->> 'of' = $1`, [id])
    expect(followUps.rows.length).toBe(1)
  })

  it('works in a Kysely transaction too', async () => {
    await startWorker()
    const { id } = await db.tr.enqueue(kyselyStep, {})
    await waitUntil(async () => (await row(id)).state === 'succeeded', { what: 'the Kysely step succeeded' })
    expect((await row(id)).result).toEqual({ via: 'kysely' })
    expect(await ledgerOf(id)).toEqual(['kysely'])
  })

  it('a transaction rolled back after ctx.complete() leaves nothing of the step, and the task runs again', async () => {
    await startWorker()
    const { id } = await db.tr.enqueue(step, { mode: 'throw-after-complete' })
    await waitUntil(async () => (await row(id)).state === 'succeeded', { what: 'the second attempt succeeded', timeoutMs: 20_000 })
    expect((await row(id)).attempt).toBe(2)
    // Attempt 1's write and follow-up rolled back with its completion.
    expect(await ledgerOf(id)).toEqual(['attempt 2'])
    const followUps = await db.pool.query(`select 1 from "${db.schema}".tasks where name = 'cit.follow-up' and payload ->> 'of' = $1`, [id])
    expect(followUps.rows.length).toBe(1)
  })

  it('a superseded attempt gets LeaseLostError and its writes and enqueues roll back', async () => {
    await startWorker()
    const { id } = await db.tr.enqueue(step, { mode: 'superseded' })
    await waitUntil(async () => seen.some((s) => s.mode === 'superseded'), { what: 'the stale completion refused' })
    const error = seen.find((s) => s.mode === 'superseded')!.error
    expect(error).toBeInstanceOf(LeaseLostError)
    expect(String((error as Error).message)).toMatch(/attempt 2 claimed it/)
    expect(await ledgerOf(id)).toEqual([])
    const followUps = await db.pool.query(`select 1 from "${db.schema}".tasks where name = 'cit.follow-up' and payload ->> 'of' = $1`, [id])
    expect(followUps.rows.length).toBe(0)
    expect((await row(id)).state).toBe('running') // attempt 2's, untouched by attempt 1
  })

  it('a cancelled task refuses the completion: LeaseLostError says it is cancelled', async () => {
    await startWorker()
    const { id } = await db.tr.enqueue(step, { mode: 'cancelled' })
    await waitUntil(async () => seen.some((s) => s.mode === 'cancelled'), { what: 'the completion of a cancelled task refused' })
    const error = seen.find((s) => s.mode === 'cancelled')!.error as Error
    expect(error).toBeInstanceOf(LeaseLostError)
    expect(error.message).toMatch(/cancelled/)
    expect((await row(id)).state).toBe('cancelled')
    expect(await ledgerOf(id)).toEqual([])
  })

  it('outside a transaction it is a TransactionRequiredError, and the handler carries on normally', async () => {
    await startWorker()
    const { id } = await db.tr.enqueue(step, { mode: 'no-transaction' })
    await waitUntil(async () => (await row(id)).state === 'succeeded', { what: 'the step succeeded by its return value' })
    expect(seen.find((s) => s.mode === 'no-transaction')!.error).toBeInstanceOf(TransactionRequiredError)
    expect((await row(id)).result).toEqual({ plain: true })
  })
})
