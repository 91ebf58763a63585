import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDb, databaseUrl, waitUntil, type TestDb } from '../support/db.ts'
import { makeTask } from '../support/factory.ts'
import { refuseRequest } from '../../src/dashboard/guard.ts'
import { runCli, startCli, type CliProcess } from './cli-process.ts'

/**
 * `taskrelay dashboard` against DNS rebinding and embedding: a request must
 * name the dashboard by a loopback name, an IP address or an --allowed-host
 * (in Host, and in Origin when a browser sends one), and every answer carries
 * the headers that keep other sites from framing or sniffing it.
 */
let db: TestDb
let dashboard: CliProcess
let port: number

beforeAll(async () => {
  db = await createTestDb()
  await makeTask(db.pool, db.schema, { name: 'guard.secret', payload: { card: '4111-SECRET' } })
  dashboard = startCli(['dashboard', '--port', '0', '--allowed-host', 'dash.internal', '--allowed-host', '.corp.example'], {
    DATABASE_URL: databaseUrl(),
    TASKRELAY_SCHEMA: db.schema,
  })
  const url = await waitUntil(() => /http:\/\/127\.0\.0\.1:(\d+)\//.exec(dashboard.stdout()), { what: 'the dashboard URL' })
  port = Number(url[1])
})

afterAll(async () => {
  await dashboard?.stop()
  await db?.cleanup()
})

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** A real request with the Host (and Origin) a browser under DNS rebinding would send; fetch cannot set Host. */
function get(path: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('dashboard Host and Origin checks', () => {
  it('refuses a Host that is not the dashboard (DNS rebinding) with 403 and no task data', async () => {
    const res = await get('/api/tasks', { host: `evil.example:${port}` })
    expect(res.status).toBe(403)
    expect(res.body).not.toContain('guard.secret')
    expect(JSON.parse(res.body).error).toContain('Host "evil.example" is not allowed')
    expect(JSON.parse(res.body).error).toContain('--allowed-host')
  })

  it('refuses the page itself for a foreign Host', async () => {
    const res = await get('/', { host: 'evil.example' })
    expect(res.status).toBe(403)
    expect(res.body).not.toContain('<script')
  })

  it('serves loopback names, IP addresses and allowed hosts', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LocalHost:${port}`, `[::1]:${port}`, `dash.internal:${port}`, `grafana.corp.example`, 'dash.internal.']) {
      const res = await get('/api/tasks', { host })
      expect({ host, status: res.status }).toEqual({ host, status: 200 })
      expect(res.body).toContain('guard.secret')
    }
  })

  it('does not treat a suffix or a look-alike as allowed', async () => {
    for (const host of ['evil-dash.internal', 'dash.internal.evil.example', 'corp.example.evil.example', 'localhost.evil.example', '127.0.0.1.nip.io']) {
      const res = await get('/api/tasks', { host })
      expect({ host, status: res.status }).toEqual({ host, status: 403 })
    }
  })

  it('refuses a cross-site Origin even when Host is right', async () => {
    const res = await get('/api/tasks', { host: `127.0.0.1:${port}`, origin: 'http://evil.example' })
    expect(res.status).toBe(403)
    expect(JSON.parse(res.body).error).toContain('Origin "http://evil.example" is not allowed')
    expect((await get('/api/tasks', { host: `127.0.0.1:${port}`, origin: 'null' })).status).toBe(403)
    expect((await get('/api/tasks', { host: `127.0.0.1:${port}`, origin: `http://localhost:${port}` })).status).toBe(200)
  })
})

describe('dashboard security headers', () => {
  const host = () => `127.0.0.1:${port}`

  it('sends nosniff, no framing, no referrer and no caching on every answer', async () => {
    for (const [path, status] of [['/', 200], ['/api/tasks', 200], ['/api/stats', 200], ['/api/tasks/abc', 400], ['/nowhere', 404]] as const) {
      const res = await get(path, { host: host() })
      expect({ path, status: res.status }).toEqual({ path, status })
      expect(res.headers['x-content-type-options']).toBe('nosniff')
      expect(res.headers['x-frame-options']).toBe('DENY')
      expect(res.headers['referrer-policy']).toBe('no-referrer')
      expect(res.headers['cache-control']).toBe('no-store')
      expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'")
      expect(res.headers['content-security-policy']).toContain("default-src 'none'")
    }
    const refused = await get('/api/tasks', { host: 'evil.example' })
    expect(refused.headers['x-content-type-options']).toBe('nosniff')
    expect(refused.headers['content-security-policy']).toContain("frame-ancestors 'none'")
  })

  it('lets the page run only its own script and style, and fetch only its own API', async () => {
    const res = await get('/', { host: host() })
    const csp = String(res.headers['content-security-policy'])
    // Script and style come only from the dashboard's own paths: an injected tag or attribute cannot run.
    expect(csp).toContain("script-src 'self'")
    expect(csp).toContain("style-src 'self'")
    expect(csp).toContain("connect-src 'self'")
    expect(csp).not.toContain('unsafe-inline')
    expect(res.body).not.toMatch(/<script>|<style>| on[a-z]+=/)
  })
})

describe('dashboard allow-list', () => {
  it('tells someone who bound 0.0.0.0 to name the hosts it is reached by', () => {
    const refusal = refuseRequest({ host: 'tasks.example.com:8090' }, { bind: '0.0.0.0', allowed: [] })
    expect(refusal?.status).toBe(403)
    expect(refusal?.code).toBe('DASHBOARD_FORBIDDEN')
    expect(refusal?.message).toContain('start it with --allowed-host tasks.example.com (it listens on all interfaces, 0.0.0.0')
    expect(refuseRequest({ host: '10.1.2.3:8090' }, { bind: '0.0.0.0', allowed: [] })).toBeNull()
    expect(refuseRequest({}, { bind: '127.0.0.1', allowed: [] })?.message).toContain('no Host header')
  })

  it('refuses an --allowed-host that is not a host name with exit 2', async () => {
    const res = await runCli(['dashboard', '--port', '0', '--allowed-host', 'http://x.example/'], { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema })
    expect(res.code).toBe(2)
    expect(res.stderr).toContain('--allowed-host: "http://x.example/" is not a host name')
  })
})
