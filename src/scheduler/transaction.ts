import type pg from 'pg'
import { pgExecutor, type Executor } from '../db/executor.ts'

/**
 * Run `fn` in one transaction on a connection of `pool`. A connection whose
 * ROLLBACK failed is destroyed rather than returned to the pool mid-transaction.
 */
export async function inTransaction<R>(pool: pg.Pool, fn: (db: Executor) => Promise<R>): Promise<R> {
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query('begin')
    const result = await fn(pgExecutor(client, { prepare: true }))
    await client.query('commit')
    return result
  } catch (err) {
    await client.query('rollback').catch((e: Error) => {
      broken = e
    })
    throw err
  } finally {
    client.release(broken)
  }
}
