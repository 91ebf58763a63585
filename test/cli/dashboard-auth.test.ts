import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDb, databaseUrl, type TestDb } from '../support/db.ts'
import { makeTask } from '../support/factory.ts'
import { createDashboardHandler, type DashboardHandlerOptions } from '../../src/dashboard/handler.ts'
import { runCli } from './cli-process.ts'

/**
 * The dashboard handler's auth, CSRF and mounting, through real HTTP: logins
 * (401, then 429), sessions, CSRF and Origin on every write, Bearer tokens,
 * 'none-trust-upstream', prefixes in node:http and Express-style mounts, and
 * the CLI refusing a network bind without credentials.
 */
const TOKEN = 'auth-test-token-abcdefghijklmnop'
let db: TestDb
const servers: Server[] = []
let failedId: string

beforeAll(async () => {
  db = await createTestDb()
  failedId = await makeTask(db.pool, db.schema, { name: 'auth.job', queue: 'jobs', state: 'failed', attempt: 1 })
})

afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  await db?.cleanup()
})

async function serve(options: DashboardHandlerOptions, mount?: (req: IncomingMessage, res: ServerResponse, h: ReturnType<typeof createDashboardHandler>) => void): Promise<number> {
  const handler = createDashboardHandler(db.tr, options)
  const server = createServer((req, res) => (mount ? mount(req, res, handler) : handler(req, res, () => res.writeHead(404).end('app'))))
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; body: string; json: any }

function call(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body)
    const req = request({ host: '127.0.0.1', port, method, path, headers: { ...(text ? { 'content-type': 'application/json' } : {}), ...headers } }, (res) => {
      let data = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (data += d))
      res.on('end', () => {
        let json: unknown = null
        try { json = JSON.parse(data) } catch { /* not JSON */ }
        resolve({ status: res.statusCode!, headers: res.headers, body: data, json })
      })
    })
    req.on('error', reject)
    req.end(text)
  })
}

async function login(port: number, base: string): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const res = await call(port, 'POST', `${base}/api/login`, {}, { token: TOKEN })
  expect(res.status).toBe(200)
  const setCookie = String((res.headers['set-cookie'] as string[])[0])
  return { cookie: setCookie.split(';')[0]!, csrf: res.json.csrf, setCookie }
}

describe('dashboard auth', () => {
  it('logs in with the token, sets a strict HttpOnly cookie on the prefix, and acts with the CSRF header', async () => {
    const port = await serve({ basePath: '/admin/tasks', auth: { token: TOKEN } })
    const anon = await call(port, 'GET', '/admin/tasks/api/session')
    expect(anon.json).toMatchObject({ auth: 'login', methods: ['token'], operator: false, csrf: null })
    const { cookie, csrf, setCookie } = await login(port, '/admin/tasks')
    expect(setCookie).toMatch(/HttpOnly; SameSite=Strict/)
    expect(setCookie).toContain('Path=/admin/tasks/')
    expect(setCookie).not.toContain('Secure')
    const session = await call(port, 'GET', '/admin/tasks/api/session', { cookie })
    expect(session.json).toMatchObject({ operator: true, csrf })
    expect(session.body).not.toContain(TOKEN)
    // Without the CSRF header, or from another site, the cookie alone does nothing.
    expect((await call(port, 'POST', `/admin/tasks/api/tasks/${failedId}/retry`, { cookie }, {})).status).toBe(403)
    expect((await call(port, 'POST', `/admin/tasks/api/tasks/${failedId}/retry`, { cookie, 'x-taskrelay-csrf': csrf, origin: 'https://evil.example' }, {})).status).toBe(403)
    expect((await db.tr.getTask(failedId))?.state).toBe('failed')
    const ok = await call(port, 'POST', `/admin/tasks/api/tasks/${failedId}/retry`, { cookie, 'x-taskrelay-csrf': csrf }, {})
    expect(ok.status).toBe(200)
    expect((await db.tr.getTask(failedId))?.state).toBe('pending')
    // Retrying it again is a conflict; an unknown task is 404.
    expect((await call(port, 'POST', `/admin/tasks/api/tasks/${failedId}/retry`, { cookie, 'x-taskrelay-csrf': csrf }, {})).status).toBe(409)
    expect((await call(port, 'POST', '/admin/tasks/api/tasks/999999/cancel', { cookie, 'x-taskrelay-csrf': csrf }, {})).status).toBe(404)
    expect((await call(port, 'POST', '/admin/tasks/api/queues/nope/pause', { cookie, 'x-taskrelay-csrf': csrf }, {})).status).toBe(404)
    // Logout ends the session on the server.
    expect((await call(port, 'POST', '/admin/tasks/api/logout', { cookie, 'x-taskrelay-csrf': csrf }, {})).status).toBe(200)
    expect((await call(port, 'GET', '/admin/tasks/api/session', { cookie })).json.operator).toBe(false)
    expect((await call(port, 'POST', `/admin/tasks/api/tasks/${failedId}/cancel`, { cookie, 'x-taskrelay-csrf': csrf }, {})).status).toBe(401)
  })

  it('answers wrong credentials with 401, then 429 after 5 a minute from one address', async () => {
    const port = await serve({ auth: { user: 'ops', password: 'correct horse battery' } })
    for (let i = 0; i < 5; i++) {
      const res = await call(port, 'POST', '/api/login', {}, { user: 'ops', password: `wrong ${i}` })
      expect(res.status).toBe(401)
      expect(res.body).not.toContain('correct horse')
    }
    const limited = await call(port, 'POST', '/api/login', {}, { user: 'ops', password: 'correct horse battery' })
    expect(limited.status).toBe(429)
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0)
  })

  it('takes a Bearer token for API clients, without a session or CSRF token', async () => {
    const port = await serve({ auth: { token: TOKEN } })
    const res = await call(port, 'POST', '/api/queues/jobs/pause', { authorization: `Bearer ${TOKEN}` }, {})
    expect(res.status).toBe(200)
    expect((await db.tr.queue('jobs').info())?.paused).toBe(true)
    expect((await call(port, 'POST', '/api/queues/jobs/resume', { authorization: 'Bearer wrong' }, {})).status).toBe(401)
    expect((await call(port, 'POST', '/api/queues/jobs/resume', { authorization: `Bearer ${TOKEN}` }, {})).status).toBe(200)
  })

  it('retries every failed task of a filter in one action', async () => {
    const port = await serve({ auth: { token: TOKEN } })
    const a = await makeTask(db.pool, db.schema, { name: 'bulk.a', queue: 'bulk', state: 'failed', attempt: 1 })
    const b = await makeTask(db.pool, db.schema, { name: 'bulk.b', queue: 'bulk', state: 'failed', attempt: 1 })
    const res = await call(port, 'POST', '/api/tasks/retry-failed', { authorization: `Bearer ${TOKEN}` }, { queue: 'bulk', task: 'bulk.a' })
    expect(res.json).toMatchObject({ retried: 1 })
    expect((await db.tr.getTask(a))?.state).toBe('pending')
    expect((await db.tr.getTask(b))?.state).toBe('failed')
    expect((await call(port, 'POST', '/api/tasks/retry-failed', { authorization: `Bearer ${TOKEN}` }, { queue: 42 })).status).toBe(400)
  })

  it('marks the cookie Secure behind a trusted TLS proxy', async () => {
    const port = await serve({ auth: { token: TOKEN }, trustForwardedProto: true })
    const res = await call(port, 'POST', '/api/login', { 'x-forwarded-proto': 'https' }, { token: TOKEN })
    expect(String((res.headers['set-cookie'] as string[])[0])).toContain('; Secure')
  })

  it('is read-only without credentials, and trusts the host app with none-trust-upstream', async () => {
    const readOnly = await serve({})
    expect((await call(readOnly, 'GET', '/api/tasks')).status).toBe(200)
    expect((await call(readOnly, 'POST', `/api/tasks/${failedId}/cancel`, {}, {})).status).toBe(403)
    const upstream = await serve({ auth: 'none-trust-upstream' })
    const session = await call(upstream, 'GET', '/api/session')
    expect(session.json).toMatchObject({ auth: 'upstream', operator: true })
    expect((await call(upstream, 'POST', '/api/queues/jobs/pause', {}, {})).status).toBe(403)
    expect((await call(upstream, 'POST', '/api/queues/jobs/pause', { 'x-taskrelay-csrf': session.json.csrf }, {})).status).toBe(200)
    await db.tr.queue('jobs').resume()
  })

  it('serves the page and its assets under a prefix, mounted the Express way (req.baseUrl) too', async () => {
    const port = await serve({ basePath: '/ops/queue/' })
    expect((await call(port, 'GET', '/ops/queue')).headers.location).toBe('/ops/queue/')
    const page = await call(port, 'GET', '/ops/queue/')
    expect(page.body).toContain('src="app.js"')
    expect((await call(port, 'GET', '/ops/queue/app.js')).status).toBe(200)
    expect((await call(port, 'GET', '/elsewhere')).body).toBe('app')
    // Express cuts the mount path into req.baseUrl and leaves the rest in req.url.
    const express = await serve({}, (req, res, handler) => {
      if (!req.url!.startsWith('/x/')) return void res.writeHead(404).end()
      Object.assign(req, { baseUrl: '/x', originalUrl: req.url, url: req.url!.slice(2) })
      handler(req, res)
    })
    expect((await call(express, 'GET', '/x/api/tasks?state=failed')).status).toBe(200)
    // With a body parser in front (express.json(), Fastify), the body arrives as req.body.
    const login = await serve({ auth: { token: TOKEN } }, (req, res, handler) => {
      let text = ''
      req.setEncoding('utf8')
      req.on('data', (d: string) => (text += d))
      req.on('end', () => {
        Object.assign(req, { baseUrl: '/x', url: req.url!.slice(2), body: JSON.parse(text) })
        handler(req, res)
      })
    })
    const res = await call(login, 'POST', '/x/api/login', {}, { token: TOKEN })
    expect(String((res.headers['set-cookie'] as string[])[0])).toContain('Path=/x/')
  })

  it('answers bad input in its own words', async () => {
    const port = await serve({ auth: { token: TOKEN } })
    expect((await call(port, 'GET', '/api/charts?range=2h')).json.error).toContain('range: expected 1h or 24h')
    expect((await call(port, 'GET', '/api/tasks/abc')).status).toBe(400)
    expect((await call(port, 'POST', '/api/login', { 'content-type': 'text/plain' }, 'x')).status).toBe(415)
    expect((await call(port, 'POST', '/api/nothing', { authorization: `Bearer ${TOKEN}` }, {})).status).toBe(404)
  })
})

describe('taskrelay dashboard credentials', () => {
  it('refuses to listen beyond loopback without credentials (exit 2)', async () => {
    const res = await runCli(['dashboard', '--port', '0', '--host', '0.0.0.0'], { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema })
    expect(res.code).toBe(2)
    expect(res.stderr).toContain('no credentials are configured')
    expect(res.stderr).toContain('TASKRELAY_DASHBOARD_TOKEN')
  })

  it('refuses a short token without quoting it (exit 2)', async () => {
    const res = await runCli(['dashboard', '--port', '0'], { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema, TASKRELAY_DASHBOARD_TOKEN: 'short-s3cret' })
    expect(res.code).toBe(2)
    expect(res.stderr).toContain('at least 16 characters')
    expect(res.stderr + res.stdout).not.toContain('short-s3cret')
  })
})
