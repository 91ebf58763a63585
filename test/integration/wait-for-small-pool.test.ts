import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { createTestDb, databaseUrl, type TestDb } from '../support/db.ts'
import { makeTask } from '../support/factory.ts'
import { InvalidOptionsError, TaskRelay, WaitTimeoutError } from '../../src/index.ts'

/**
 * tr.waitFor() on a pool of one connection (issue 12, defect 11): its LISTEN
 * must not take the pool's only client, or every status read waits forever
 * and so does the caller, past its timeoutMs.
 */
let db: TestDb
let pool: pg.Pool
let tr: TaskRelay

/** Settles like `p`, or rejects once `p` has hung far past any timeout the test asked for. */
function unlessHung<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} still pending after 15 s: it hangs`)), 15_000)
  })
  return Promise.race([p, hung]).finally(() => clearTimeout(timer))
}

beforeAll(async () => {
  db = await createTestDb()
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
  pool.on('error', () => {})
  tr = new TaskRelay({ db: pool, schema: db.schema })
})

afterAll(async () => {
  await tr?.close()
  await pool?.end()
  await db?.cleanup()
})

describe('tr.waitFor on pg.Pool({ max: 1 })', () => {
  it('rejects with WaitTimeoutError after timeoutMs for a task that does not finish', async () => {
    const id = await makeTask(db.pool, db.schema, { state: 'pending' })
    await expect(unlessHung(tr.waitFor(id, { timeoutMs: 1000 }), 'waitFor(timeoutMs: 1000)')).rejects.toBeInstanceOf(WaitTimeoutError)
  })

  it("honours timeoutMs while the caller holds the pool's only connection", async () => {
    const id = await makeTask(db.pool, db.schema, { state: 'pending' })
    const held = await pool.connect()
    try {
      await expect(unlessHung(tr.waitFor(id, { timeoutMs: 500 }), 'waitFor(timeoutMs: 500)')).rejects.toBeInstanceOf(WaitTimeoutError)
    } finally {
      held.release()
    }
  })

  it('resolves when the task finishes, and the pool still serves other queries', async () => {
    const id = await makeTask(db.pool, db.schema, { state: 'running' })
    const waiting = tr.waitFor(id, { timeoutMs: 10_000 })
    // Finish it the way a worker does: the row, then the notification waitFor listens for.
    await db.pool.query(
      `with done as (update "${db.schema}".tasks set state = 'succeeded', finished_at = now(), lease_expires_at = null,
                                                 result = '"ok"'::jsonb where id = $1 returning id)
       select pg_notify($2, id::text) from done`,
      [id, tr.channels.taskFinished],
    )
    const task = await unlessHung(waiting, 'waitFor of a finished task')
    expect(task).toMatchObject({ id, state: 'succeeded', result: 'ok' })
    expect((await unlessHung(tr.getTask(id), 'getTask beside the LISTEN'))?.state).toBe('succeeded')
  })
})

describe('tr.waitFor timeoutMs', () => {
  it('refuses a timeout no timer can wait (2^31 ms would reject after 1 ms) with InvalidOptionsError', async () => {
    const id = await makeTask(db.pool, db.schema, { state: 'pending' })
    await expect(tr.waitFor(id, { timeoutMs: 2 ** 31 })).rejects.toThrow(InvalidOptionsError)
    await expect(tr.waitFor(id, { timeoutMs: -1 })).rejects.toThrow(/timeoutMs: expected a whole number of ms/)
  })
})

