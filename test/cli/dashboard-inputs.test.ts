import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DashboardServer } from '../../src/dashboard/server.ts'
import { TaskRelay } from '../../src/index.ts'
import { createTestDb, databaseUrl, uniqueSchema, waitUntil, type TestDb } from '../support/db.ts'
import { makeTask } from '../support/factory.ts'
import { runCli, startCli, type CliProcess } from './cli-process.ts'

/**
 * What the dashboard answers to input it cannot use (400 with the reason,
 * never a 500 or a Postgres message), to a failure of its own (a 500 that
 * shows no internals), and to rows too large to send whole (capped, marked).
 */
let db: TestDb
let dashboard: CliProcess
let base: string
const ids: Record<string, string> = {}
const MB = 1_000_000

beforeAll(async () => {
  db = await createTestDb()
  ids.small = await makeTask(db.pool, db.schema, { name: 'inputs.small', payload: { n: 1 } })
  ids.huge = await makeTask(db.pool, db.schema, {
    name: 'inputs.huge',
    state: 'failed',
    attempt: 3,
    payload: { blob: 'p'.repeat(MB) },
    result: { blob: 'r'.repeat(MB) },
    lastError: { message: 'e'.repeat(MB), stack: 's'.repeat(MB), name: 'Error', attempt: 3, at: new Date().toISOString(), kind: 'error' },
  })
  dashboard = startCli(['dashboard', '--port', '0'], { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema })
  base = await waitUntil(() => /http:\/\/127\.0\.0\.1:\d+/.exec(dashboard.stdout())?.[0], { what: 'the dashboard URL' })
})

afterAll(async () => {
  await dashboard?.stop()
  await db?.cleanup()
})

async function get(path: string) {
  const res = await fetch(base + path)
  const body = await res.text()
  return { status: res.status, body, json: () => JSON.parse(body) as { error: string } & Record<string, unknown> }
}

describe('dashboard: malformed input answers 400 with the reason', () => {
  it.each([
    ['/api/tasks/%ZZ', 'percent-encoding'],
    ['/api/tasks/%E0%A4%A', 'percent-encoding'],
    ['/api/tasks/0x10', 'not a task id'],
    ['/api/tasks/99999999999999999999', 'not a task id'],
    ['/api/tasks?since=99999999999999999999d', 'since: at most 3650d'],
    ['/api/tasks?since=forever', 'since: expected an age'],
    ['/api/tasks?limit=99999999999999999999', 'limit: expected a whole number from 1 to 1000'],
    ['/api/tasks?limit=-1', 'limit: expected a whole number'],
    ['/api/tasks?after=99999999999999999999', 'after: expected a task id'],
    ['/api/tasks?after=9223372036854775808', 'after: expected a task id'],
    ['/api/tasks?state=done', 'unknown state "done"'],
    ['/api/tasks?queue=a%00b', 'queue: contains the NUL character'],
    ['/api/tasks?task=%00', 'task: contains the NUL character'],
    ['/api/tasks?stat=failed', 'unknown query parameter "stat"'],
  ])('%s', async (path, reason) => {
    const res = await get(path)
    expect(res.status).toBe(400)
    expect(res.json().error).toContain(reason)
    expect(res.body).not.toMatch(/out of range|invalid byte sequence|interval|bigint|DatabaseError|at .*\.ts/)
  })

  it('names query parameters as the API spells them, not as CLI flags', async () => {
    const res = await get('/api/tasks?since=forever')
    expect(res.json().error).not.toContain('--since')
    expect(res.json().error).not.toContain('taskrelay list --help')
  })

  it('words a bad filter in API terms: the query parameter, not the CLI flag or its help', async () => {
    const res = await get('/api/tasks?state=bogus')
    expect(res.status).toBe(400)
    const error = res.json().error
    expect(error).toContain('query parameter')
    expect(error).toContain('state: unknown state "bogus"')
    expect(error).not.toContain('--state')
    expect(error).not.toContain('taskrelay')
  })

  it('still serves good input, and nothing was written', async () => {
    expect((await get('/api/tasks?since=7d&limit=1000')).status).toBe(200)
    expect((await get(`/api/tasks?after=9223372036854775807`)).status).toBe(200)
    const rows = await db.pool.query(`select count(*)::int as n from "${db.schema}".tasks`)
    expect(rows.rows[0].n).toBe(2)
  })
})

describe('dashboard: a failure of its own', () => {
  it('answers a generic 500 without the database message, and logs the cause', async () => {
    const missing = uniqueSchema('gone')
    const tr = new TaskRelay({ db: databaseUrl(), schema: missing })
    const lines: Array<Record<string, unknown>> = []
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
    const server = new DashboardServer(tr, log)
    try {
      const address = await server.start(0, '127.0.0.1')
      const res = await fetch(`http://127.0.0.1:${address.port}/api/stats`)
      const body = await res.text()
      expect(res.status).toBe(500)
      expect(res.headers.get('x-content-type-options')).toBe('nosniff')
      expect(body).not.toContain(missing)
      expect(body).not.toContain('does not exist')
      expect(JSON.parse(body).error).toContain('internal error')
      expect(JSON.stringify(lines)).toContain('does not exist')
    } finally {
      await server.stop()
      await tr.close()
    }
  })
})

describe('dashboard: large rows are capped and marked', () => {
  it('lists a 1 MB error as a few KB, marked truncated', async () => {
    const res = await get('/api/tasks?state=failed')
    expect(res.body.length).toBeLessThan(20_000)
    const { tasks } = res.json() as unknown as { tasks: Array<{ id: string; error: string; truncated: string[] }> }
    expect(tasks[0]!.id).toBe(ids.huge)
    expect(tasks[0]!.error).toMatch(/^e+… \[truncated: 1000000 characters\]$/)
    expect(tasks[0]!.truncated).toEqual(['error'])
  })

  it('shows one huge task capped per field, marked, with its small fields whole', async () => {
    const res = await get(`/api/tasks/${ids.huge}`)
    expect(res.status).toBe(200)
    expect(res.body.length).toBeLessThan(300_000)
    const task = res.json() as unknown as {
      name: string
      payload: string
      result: string
      lastError: { message: string; stack: string; kind: string }
      attempts: Array<{ error: { message: string; stack: string } }>
      truncated: string[]
    }
    expect(task.name).toBe('inputs.huge')
    expect(task.payload).toMatch(/^\{"blob":"p+… \[truncated: 1000011 characters\]$/)
    expect(task.result).toContain('[truncated: ')
    expect(task.lastError.message).toContain('[truncated: 1000000 characters]')
    expect(task.lastError.stack).toContain('[truncated: 1000000 characters]')
    expect(task.lastError.kind).toBe('error')
    // Its failed last attempt is read from the row (0018) and carries the same error, capped the same way.
    expect(task.attempts[0]!.error.message).toContain('[truncated: 1000000 characters]')
    expect(task.attempts[0]!.error.stack).toContain('[truncated: 1000000 characters]')
    expect([...task.truncated].sort()).toEqual([
      'attempts.0.error.message',
      'attempts.0.error.stack',
      'lastError.message',
      'lastError.stack',
      'payload',
      'result',
    ])
  })

  it('leaves a small task as it is', async () => {
    const task = (await get(`/api/tasks/${ids.small}`)).json()
    expect(task).toMatchObject({ payload: { n: 1 }, truncated: [] })
  })
})

describe('taskrelay list shares the bounds', () => {
  it('refuses --since 99999999999999999999d with a usage error (exit 2)', async () => {
    const res = await runCli(['list', '--since', '99999999999999999999d'], { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema })
    expect(res.stderr).toContain('--since: at most 3650d')
    expect(res.code).toBe(2)
  })

  it('refuses an --after beyond the largest task id with exit 2', async () => {
    const res = await runCli(['list', '--after', '9999999999999999999'], { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema })
    expect(res.stderr).toContain('--after: expected a task id')
    expect(res.code).toBe(2)
  })
})
