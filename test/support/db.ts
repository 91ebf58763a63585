import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { inject } from 'vitest'
import { TaskRelay, type TaskRelayOptions } from '../../src/index.ts'

export function databaseUrl(): string {
  return inject('databaseUrl')
}

export function redisUrl(): string {
  return inject('redisUrl')
}

/** A fresh schema name per test file (or per call), so files run in parallel. */
export function uniqueSchema(prefix = 't'): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`
}

export interface TestDb {
  schema: string
  pool: pg.Pool
  tr: TaskRelay
  /** Drop the schema and close every connection. */
  cleanup(): Promise<void>
}

/** A migrated schema of its own, with a TaskRelay bound to it. */
export async function createTestDb(options: Partial<TaskRelayOptions> = {}): Promise<TestDb> {
  const schema = options.schema ?? uniqueSchema()
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 10 })
  pool.on('error', () => {})
  const tr = new TaskRelay({ db: pool, schema, ...options })
  await tr.migrate()
  return {
    schema,
    pool,
    tr,
    async cleanup() {
      await tr.close()
      await pool.query(`drop schema if exists "${schema}" cascade`)
      await pool.end()
    },
  }
}

/** Poll a condition (against real servers) until it holds; never a fixed sleep. */
export async function waitUntil<T>(
  check: () => Promise<T | false | null | undefined> | T | false | null | undefined,
  { timeoutMs = 20_000, intervalMs = 25, what = 'condition' } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value) return value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    }
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}
