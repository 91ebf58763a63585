import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { z } from 'zod'
import { createTestDb, databaseUrl, type TestDb } from '../support/db.ts'
import { makeTask } from '../support/factory.ts'
import { defineTask, TaskRelay } from '../../src/index.ts'
import { pgExecutor } from '../../src/db/executor.ts'

/**
 * A user's migration adds a column to taskrelay's tables while the services
 * run (issue 12, defect 11): statements prepared on pooled connections before
 * the change must keep working on their first call after it, not fail once
 * per connection with "cached plan must not change result type".
 */
let db: TestDb
let pool: pg.Pool
let tr: TaskRelay

const report = defineTask({ name: 'schema.report', queue: 'schema', payload: z.object({}), run: async () => {} })

/** Run `call` on each of the pool's `n` connections: n calls at once take one connection each. */
async function onEveryConnection<T>(n: number, call: () => Promise<T>): Promise<T[]> {
  const results = await Promise.allSettled(Array.from({ length: n }, () => call()))
  const failed = results.find((r) => r.status === 'rejected')
  if (failed) throw failed.reason
  expect(pool.totalCount).toBe(n)
  return results.map((r) => (r as PromiseFulfilledResult<T>).value)
}

beforeAll(async () => {
  db = await createTestDb()
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 3 })
  pool.on('error', () => {})
  tr = new TaskRelay({ db: pool, schema: db.schema })
})

afterAll(async () => {
  await tr?.close()
  await pool?.end()
  await db?.cleanup()
})

describe('after ALTER TABLE ... ADD COLUMN on a warm pool', () => {
  it('getTask, cancel and retry succeed on their first call on every connection', async () => {
    const ids = await Promise.all(Array.from({ length: 8 }, () => makeTask(db.pool, db.schema, { state: 'pending', name: 'schema.report' })))
    await onEveryConnection(3, () => tr.getTask(ids[0]!))
    await db.pool.query(`alter table "${db.schema}".tasks add column tenant_note text`)
    const seen = await onEveryConnection(3, () => tr.getTask(ids[0]!))
    expect(seen.every((t) => t?.id === ids[0])).toBe(true)
    // cancel() and retry() read the row with getTask when they change nothing.
    expect(await tr.cancel(ids[1]!)).toBe(true)
    expect(await tr.cancel(ids[1]!)).toBe(false)
    expect(await tr.retry(ids[1]!)).toBe(true)
  })

  it('schedules read and written before the change still work after it', async () => {
    await tr.schedules.upsert({ name: 'schema-nightly', task: report, cron: '0 3 * * *', payload: {} })
    await onEveryConnection(3, () => tr.schedules.list())
    await db.pool.query(`alter table "${db.schema}".schedules add column owner text`)
    const lists = await onEveryConnection(3, () => tr.schedules.list())
    expect(lists.every((l) => l.length === 1 && l[0]!.name === 'schema-nightly')).toBe(true)
    const updated = await tr.schedules.upsert({ name: 'schema-nightly', task: report, cron: '0 4 * * *', payload: {} })
    expect(updated.status).toBe('updated')
  })
})

describe('a prepared statement whose result type changed', () => {
  it('is prepared again under a new name: one failed execution, not one per call', async () => {
    const client = new pg.Client({ connectionString: databaseUrl() })
    await client.connect()
    try {
      await client.query(`create table "${db.schema}".stale_plan (a int)`)
      await client.query(`insert into "${db.schema}".stale_plan values (1)`)
      let sent = 0
      const counting = {
        query: (config: pg.QueryConfig) => (sent++, client.query(config)),
        getTransactionStatus: () => (client as unknown as { getTransactionStatus(): string }).getTransactionStatus(),
      } as unknown as pg.ClientBase
      const exec = pgExecutor(counting, { prepare: true })
      const text = `select * from "${db.schema}".stale_plan`
      await exec.query(text)
      await client.query(`alter table "${db.schema}".stale_plan add column b int`)
      sent = 0
      expect((await exec.query(text)).rows).toEqual([{ a: 1, b: null }])
      expect(sent).toBe(2) // the refused execution, then the statement under its new name
      sent = 0
      expect((await exec.query(text)).rows).toEqual([{ a: 1, b: null }])
      expect(sent).toBe(1) // prepared again: no refusal any more
    } finally {
      await client.end()
    }
  })
})

