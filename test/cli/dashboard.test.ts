import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDb, databaseUrl, waitUntil, type TestDb } from '../support/db.ts'
import { makeTask } from '../support/factory.ts'
import { runCli, startCli, type CliProcess } from './cli-process.ts'

/**
 * `taskrelay dashboard`, run as a real process against a schema of its own:
 * what its JSON API and page serve, what it refuses, and a clean stop.
 */
let db: TestDb
let dashboard: CliProcess
let base: string
const ids: Record<string, string> = {}

beforeAll(async () => {
  db = await createTestDb()
  ids.pending1 = await makeTask(db.pool, db.schema, { name: 'dash.send', queue: 'mail', payload: { to: 'a@example.com' } })
  ids.pending2 = await makeTask(db.pool, db.schema, { name: 'dash.send', queue: 'mail' })
  ids.failed = await makeTask(db.pool, db.schema, {
    name: 'dash.report',
    queue: 'reports',
    state: 'failed',
    attempt: 3,
    lastError: { message: 'boom <script>', name: 'Error', attempt: 3, at: new Date().toISOString(), kind: 'error' },
  })
  dashboard = startCli(['dashboard', '--port', '0'], { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema })
  base = await waitUntil(() => /http:\/\/127\.0\.0\.1:\d+\//.exec(dashboard.stdout())?.[0], { what: 'the dashboard URL' })
})

afterAll(async () => {
  await dashboard?.stop()
  await db?.cleanup()
})

async function get(path: string, init?: RequestInit) {
  const res = await fetch(base + path.replace(/^\//, ''), init)
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() }
}

describe('taskrelay dashboard', () => {
  it('serves the counts per queue and state', async () => {
    const res = await get('/api/stats')
    expect(res.status).toBe(200)
    const snap = JSON.parse(res.body) as { queues: Array<{ queue: string; pending: number; failedLastHour: number }> }
    const byQueue = Object.fromEntries(snap.queues.map((q) => [q.queue, q]))
    expect(byQueue.mail).toMatchObject({ pending: 2, failedLastHour: 0 })
    expect(byQueue.reports).toMatchObject({ pending: 0, failedLastHour: 1 })
  })

  it('lists tasks newest first, with the filters of taskrelay list', async () => {
    const all = JSON.parse((await get('/api/tasks')).body) as { tasks: Array<{ id: string }> }
    expect(all.tasks.map((t) => t.id)).toEqual([ids.failed, ids.pending2, ids.pending1])
    const failed = JSON.parse((await get('/api/tasks?state=failed')).body) as { tasks: Array<{ id: string; error: string }> }
    expect(failed.tasks.map((t) => t.id)).toEqual([ids.failed])
    expect(failed.tasks[0]!.error).toBe('boom <script>')
    const page = JSON.parse((await get(`/api/tasks?queue=mail&limit=1`)).body) as { tasks: Array<{ id: string }>; nextAfter: string }
    expect(page.tasks.map((t) => t.id)).toEqual([ids.pending2])
    const next = JSON.parse((await get(`/api/tasks?queue=mail&limit=1&after=${page.nextAfter}`)).body) as { tasks: Array<{ id: string }> }
    expect(next.tasks.map((t) => t.id)).toEqual([ids.pending1])
  })

  it('shows one task with its payload', async () => {
    const res = await get(`/api/tasks/${ids.pending1}`)
    expect(res.status).toBe(200)
    expect(JSON.parse(res.body)).toMatchObject({ id: ids.pending1, name: 'dash.send', payload: { to: 'a@example.com' }, dependsOn: [] })
  })

  it('answers bad requests with a status and a reason, and changes nothing', async () => {
    expect(await get('/api/tasks/999999999')).toMatchObject({ status: 404 })
    const badId = await get('/api/tasks/abc')
    expect(badId.status).toBe(400)
    expect(JSON.parse(badId.body).error).toContain('not a task id')
    const badState = await get('/api/tasks?state=bogus')
    expect(badState.status).toBe(400)
    expect(JSON.parse(badState.body).error).toContain('unknown state "bogus"')
    // Started without credentials: read-only, so every action is refused.
    const post = await get('/api/tasks/1/retry', { method: 'POST' })
    expect(post.status).toBe(403)
    expect(JSON.parse(post.body).error).toContain('read-only')
    expect(await get('/api/stats', { method: 'PUT' })).toMatchObject({ status: 405 })
    expect(await get('/nowhere')).toMatchObject({ status: 404 })
    const rows = await db.pool.query(`select count(*)::int as n from "${db.schema}".tasks`)
    expect(rows.rows[0].n).toBe(3)
  })

  it('serves the page, which reads the API and writes data only as text', async () => {
    const res = await get('/')
    expect(res.status).toBe(200)
    expect(res.type).toContain('text/html')
    expect(res.body).toContain('src="app.js"')
    const script = await get('/app.js')
    expect(script.type).toContain('text/javascript')
    expect(script.body).toContain("'api/stats'")
    expect(script.body).toContain("'api/tasks?'")
    expect(script.body).not.toContain('innerHTML')
  })

  it('stops with exit 0 on SIGTERM', async () => {
    const other = startCli(['dashboard', '--port', '0'], { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema })
    await waitUntil(() => other.stdout().includes('http://'), { what: 'the second dashboard to listen' })
    expect(await other.stop('SIGTERM')).toBe(0)
  })

  it('refuses a bad port with exit 2', async () => {
    const res = await runCli(['dashboard', '--port', 'eighty'], { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema })
    expect(res.code).toBe(2)
    expect(res.stderr).toContain('--port: expected a whole number from 0 to 65535, got "eighty"')
  })
})
