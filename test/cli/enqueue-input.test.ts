import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDb, databaseUrl, redisUrl, type TestDb } from '../support/db.ts'
import { runCli } from './cli-process.ts'

/**
 * Issue 12, defect 5 (CLI): input Postgres would refuse, and numbers too
 * large for it, are usage errors (exit 2) that name the flag or field, never
 * "unexpected error" (exit 1). Real `taskrelay` child processes, a schema of
 * this file's own; nothing may be written.
 */
let db: TestDb
let env: Record<string, string>

beforeAll(async () => {
  db = await createTestDb()
  env = { DATABASE_URL: databaseUrl(), REDIS_URL: redisUrl(), TASKRELAY_SCHEMA: db.schema, TASKRELAY_KEY_PREFIX: `cli-in-${db.schema}` }
})
afterAll(async () => {
  await db?.cleanup()
})

const cli = (...args: string[]) => runCli(args, env)
const count = async () => Number((await db.pool.query(`select count(*) from "${db.schema}".tasks`)).rows[0].count)
const TASKS = ['--tasks', 'test/cli/fixtures/tasks.ts']

describe('taskrelay enqueue: usage errors, exit 2, nothing written', () => {
  const cases: Array<{ what: string; args: string[]; message: RegExp }> = [
    { what: 'NUL in the payload (SQL path)', args: ['test.echo', '{"text":"a\\u0000b"}'], message: /text: contains the NUL character/ },
    { what: 'NUL in the payload (--tasks)', args: ['test.echo', '{"text":"a\\u0000b"}', ...TASKS], message: /text: contains the NUL character/ },
    { what: 'a lone surrogate in the payload', args: ['test.echo', '{"text":"\\ud83d"}'], message: /text: contains a lone UTF-16 surrogate/ },
    { what: 'a huge --delay', args: ['test.echo', '{"text":"x"}', '--delay', '99999999999d'], message: /--delay: .*at most/ },
    { what: 'a huge --delay (--tasks)', args: ['test.echo', '{"text":"x"}', '--delay', '99999999999d', ...TASKS], message: /--delay: .*at most/ },
    { what: 'a huge --priority', args: ['test.echo', '{"text":"x"}', '--priority', '99999999999999999999'], message: /--priority: .*-1000\.\.1000/ },
    { what: 'a huge --max-attempts', args: ['test.echo', '{"text":"x"}', '--max-attempts', '99999999999'], message: /--max-attempts: .*1\.\.1000/ },
    { what: 'a --run-at before 4714 BC', args: ['test.echo', '{"text":"x"}', '--run-at', '-005000-01-01T00:00:00Z'], message: /--run-at: must be between 1970/ },
    { what: 'a --run-at in year 100000', args: ['test.echo', '{"text":"x"}', '--run-at', '+100000-01-01T00:00:00Z'], message: /--run-at: must be between 1970/ },
    { what: 'a scheduler idempotency key', args: ['test.echo', '{"text":"x"}', '--idempotency-key', 'schedule:nightly:2030-01-01T00:00:00.000Z'], message: /"schedule:" is reserved/ },
  ]
  for (const c of cases) {
    it(c.what, async () => {
      const res = await cli('enqueue', ...c.args)
      expect(res.stderr).not.toContain('unexpected error')
      expect(res.stderr).toMatch(c.message)
      expect(res.code, res.stderr).toBe(2)
      expect(await count()).toBe(0)
    })
  }
})

describe('taskrelay retry --failed', () => {
  it('a huge --since is a usage error', async () => {
    const res = await cli('retry', '--failed', '--since', '99999999999999d')
    expect(res.stderr).not.toContain('unexpected error')
    expect(res.stderr).toMatch(/--since: .*at most/)
    expect(res.code, res.stderr).toBe(2)
  })
})
