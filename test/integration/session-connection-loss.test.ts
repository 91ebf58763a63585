import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDb, databaseUrl, type TestDb } from '../support/db.ts'

/**
 * A session whose backend is terminated while taskrelay holds it between two
 * statements (a transaction doing work in JavaScript, the sweeper's rounds).
 * pg-pool lends out clients without an error listener, and pg then emits
 * 'error' with no one listening: the whole process died (CI, issue 18 run:
 * "sweeper3 exited unexpectedly" under repeated pg_terminate_backend). It runs
 * in a child process, so a crash is seen as one and not as vitest's own
 * unhandled error.
 */

const connections = fileURLToPath(new URL('../../src/db/connections.ts', import.meta.url))

let db: TestDb
beforeAll(async () => {
  db = await createTestDb()
})
afterAll(async () => {
  await db.cleanup()
})

describe('a pooled session terminated between statements', () => {
  it('fails the transaction with the connection error, destroys the client, and the process lives on', () => {
    const script = `
      import pg from 'pg'
      import { withTransaction } from ${JSON.stringify(connections)}
      const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 })
      pool.on('error', () => {})
      const killer = new pg.Client({ connectionString: process.env.DATABASE_URL })
      await killer.connect()
      let failure = 'none'
      try {
        await withTransaction(pool, async (trx) => {
          const pid = (await trx.query('select pg_backend_pid() as pid')).rows[0].pid
          await killer.query('select pg_terminate_backend($1)', [pid])
          // The server's FATAL arrives while no statement runs on this session.
          await new Promise((resolve) => setTimeout(resolve, 300))
          await trx.query('select 1')
        })
      } catch (err) {
        failure = err.message
      }
      // The pool's one slot is usable again: the broken client was destroyed, not returned.
      const after = (await pool.query('select 2 as n')).rows[0].n
      console.log(JSON.stringify({ failure, after }))
      await killer.end()
      await pool.end()
    `
    const child = spawnSync(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], {
      env: { ...process.env, DATABASE_URL: databaseUrl() },
      encoding: 'utf8',
      timeout: 20_000,
    })
    expect(child.stderr).toBe('')
    expect(child.status).toBe(0)
    const out = JSON.parse(child.stdout.trim()) as { failure: string; after: number }
    expect(out.failure).not.toBe('none')
    expect(out.after).toBe(2)
  })
})

