import { createServer, type Server } from 'node:http'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { z } from 'zod'
import { Relay, Worker, defineTask } from '../../src/index.ts'
import { createDashboardHandler } from '../../src/dashboard/handler.ts'
import { prefix } from '../support/pipeline.ts'
import { createTestDb, redisUrl, waitUntil, type TestDb } from '../support/db.ts'

/**
 * The dashboard in a real browser (Debian's chromium, driven by
 * playwright-core; no browser download), against a real TaskRelay with a
 * worker running in this process, mounted under a path prefix in a plain
 * node:http server. It screenshots each view: into docs/screenshots/ (the
 * README's pictures) with `npm run screenshots`, into a temporary directory
 * otherwise, so a test run leaves the working tree as it found it.
 *
 * Chromium missing is a failure, not a skip: CI installs it (.ci/run).
 */
const CHROMIUM = '/usr/bin/chromium'
const TOKEN = 'browser-test-token-0123456789'
const SHOTS = process.env.TASKRELAY_CAPTURE_SCREENSHOTS
  ? join(import.meta.dirname, '../../docs/screenshots')
  : mkdtempSync(join(tmpdir(), 'taskrelay-shots-'))
const PREFIX = '/admin/tasks'

let runs = 0
const flaky = defineTask({
  name: 'report.build',
  queue: 'reports',
  maxAttempts: 1,
  payload: z.object({ day: z.string() }),
  // Fails the first time it runs, succeeds when retried.
  run: async (_p, ctx) => {
    runs++
    if (runs === 1) throw new Error('report source not ready')
    ctx.progress(100, { step: 'written' })
    return { rows: 42 }
  },
})
const send = defineTask({
  name: 'email.send',
  queue: 'mail',
  payload: z.object({ to: z.string(), subject: z.string() }),
  run: async (p) => {
    await new Promise((r) => setTimeout(r, 5 + Math.random() * 30))
    return { delivered: p.to }
  },
})

let db: TestDb
let relay: Relay
let worker: Worker// Runs until the workers scenario has seen it: something for the Workers view to show.
const slow = defineTask({
  name: 'archive.compact',
  queue: 'maintenance',
  payload: z.object({}),
  run: (_p, ctx) => new Promise<void>((resolve) => {
    releaseSlow = resolve
    ctx.signal.addEventListener('abort', () => resolve())
  }),
})

let browser: BrowserContext
let releaseSlow: () => void = () => {}
let page: Page
let server: Server
let base: string
let userDataDir: string
const ids: Record<string, string> = {}

beforeAll(async () => {
  expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`).toBe(true)
  mkdirSync(SHOTS, { recursive: true })
  db = await createTestDb()
  // One relay and worker for the whole file: the scenarios follow each other like an operator's session.
  const keyPrefix = prefix()
  relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 })
  worker = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks: [flaky, send, slow], concurrency: 4, leaseMs: 1000, heartbeatMs: 200, blockMs: 200 })
  await relay.start()
  await worker.start()
  for (let i = 0; i < 12; i++) await db.tr.enqueue(send, { to: `user${i}@example.com`, subject: 'Welcome' })
  ids.xss = (await db.tr.enqueue(send, { to: 'eve@example.com', subject: '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">' })).id
  ids.flaky = (await db.tr.enqueue(flaky, { day: '2026-12-05' })).id
  await db.tr.schedules.upsert({ name: 'nightly-report', task: flaky, cron: '0 3 * * *', timezone: 'Europe/Berlin', payload: { day: 'yesterday' } })
  await waitUntil(async () => (await db.tr.getTask(ids.flaky!))?.state === 'failed' && (await db.tr.getTask(ids.xss!))?.state === 'succeeded', { what: 'the first run' })

  const handler = createDashboardHandler(db.tr, { basePath: PREFIX, auth: { token: TOKEN }, tasks: [flaky, send] })
  server = createServer((req, res) => (req.url?.startsWith(PREFIX) ? handler(req, res) : res.writeHead(404).end('the app')))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}${PREFIX}/`

  userDataDir = mkdtempSync(join(tmpdir(), 'taskrelay-chromium-'))
  // A fresh profile per run (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
  })
  page = browser.pages()[0] ?? (await browser.newPage())
  page.on('dialog', (d) => void d.dismiss())
})

afterAll(async () => {
  await browser?.close()
  await new Promise((r) => server?.close(r))
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true })
  releaseSlow()
  await worker?.stop()
  await relay?.stop()
  await db?.cleanup()
})

const status = () => page.locator('#status')

describe('dashboard in chromium', () => {
  it('is read-only until an operator logs in; a wrong token is refused', async () => {
    await page.goto(base)
    await expect.poll(() => page.locator('#view h2').first().textContent()).toBe('Queues')
    expect(await page.getByRole('button', { name: 'Pause mail' }).count()).toBe(0)
    await page.getByLabel('Token').fill('wrong-token')
    await page.getByRole('button', { name: 'Log in' }).press('Enter')
    await expect.poll(() => status().textContent()).toContain('wrong credentials')
    await page.getByLabel('Token').fill(TOKEN)
    await page.getByRole('button', { name: 'Log in' }).click()
    await page.getByRole('button', { name: 'Log out' }).waitFor()
    await page.getByRole('button', { name: 'Pause mail' }).waitFor()
    const cookies = await browser.cookies()
    const session = cookies.find((c) => c.name === 'taskrelay_session')!
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: `${PREFIX}/` })
    expect(await page.content()).not.toContain(TOKEN)
  })

  it('draws throughput and latency charts with data', async () => {
    const chart = page.locator('section[aria-label="charts of queue mail"] svg.throughput')
    await chart.waitFor()
    const bars = chart.locator('rect.ok')
    expect(await bars.count()).toBeGreaterThan(0)
    const box = (await bars.first().boundingBox())!
    expect(box.width).toBeGreaterThan(0)
    expect(box.height).toBeGreaterThan(0)
    const line = page.locator('section[aria-label="charts of queue mail"] svg.latency path.line').first()
    expect((await line.getAttribute('d'))!.length).toBeGreaterThan(3)
    const dot = (await page.locator('section[aria-label="charts of queue mail"] svg.latency circle').first().boundingBox())!
    expect(dot.width).toBeGreaterThan(0)
    await page.screenshot({ path: join(SHOTS, 'queues.png'), fullPage: true })
  })

  it('pauses a queue and shows it paused, then resumes it', async () => {
    // By keyboard: the actions are real buttons.
    await page.getByRole('button', { name: 'Pause mail' }).press('Enter')
    await expect.poll(() => status().textContent()).toContain('queue mail paused')
    await expect.poll(() => page.locator('tr[data-queue="mail"] td.state').textContent()).toBe('paused')
    expect((await db.tr.queue('mail').info())?.paused).toBe(true)
    await page.getByRole('button', { name: 'Resume mail' }).click()
    await expect.poll(() => page.locator('tr[data-queue="mail"] td.state').textContent()).not.toBe('paused')
    expect((await db.tr.queue('mail').info())?.paused).toBe(false)
  })

  it('filters tasks, with the filter in a URL that can be shared', async () => {
    await page.getByRole('link', { name: 'Tasks' }).click()
    await page.getByLabel('State').selectOption('failed')
    await page.getByLabel('Queue').fill('reports')
    await page.getByRole('button', { name: 'Show' }).click()
    await expect.poll(() => page.url()).toContain('#/tasks?state=failed&queue=reports')
    await expect.poll(() => page.locator('#view tbody tr').count()).toBe(1)
    expect(await page.locator(`tr[data-id="${ids.flaky}"]`).count()).toBe(1)
    // The same URL in a fresh tab shows the same list.
    const other = await browser.newPage()
    await other.goto(page.url())
    await expect.poll(() => other.locator(`tr[data-id="${ids.flaky}"]`).count()).toBe(1)
    expect(await other.getByLabel('State').inputValue()).toBe('failed')
    await other.close()
    await page.screenshot({ path: join(SHOTS, 'tasks.png'), fullPage: true })
  })

  it('opens the failed task, retries it and sees it succeed', async () => {
    await page.getByRole('link', { name: ids.flaky, exact: true }).click()
    await expect.poll(() => page.locator('#view h2').textContent()).toBe(`Task ${ids.flaky} · report.build`)
    expect(await page.locator('pre.json').first().textContent()).toContain('2026-12-05')
    await page.getByRole('button', { name: `Retry task ${ids.flaky}` }).press('Enter')
    await expect.poll(() => status().textContent()).toContain(`task ${ids.flaky} put back to pending`)
    await expect.poll(() => page.locator('dl.fields dd').first().textContent(), { timeout: 20_000 }).toBe('succeeded')
    expect(await page.locator('#view').textContent()).toContain('"rows": 42')
    // Every attempt, with its outcome and error.
    const attempts = page.locator('section', { has: page.getByRole('heading', { name: 'Attempts' }) }).locator('tbody tr')
    await expect.poll(() => attempts.count()).toBe(2)
    expect(await attempts.first().textContent()).toContain('report source not ready')
    expect(await attempts.last().textContent()).toContain('succeeded')
    await page.screenshot({ path: join(SHOTS, 'task.png'), fullPage: true })
  })

  it('shows a payload with <script> as text and never runs it', async () => {
    await page.goto(`${base}#/task/${ids.xss}`)
    const payload = page.locator('pre.json').first()
    await expect.poll(() => payload.textContent()).toContain('<script>window.__pwned = 1</script>')
    // The page's own globals: a script that ran from the payload would have set __pwned.
    expect(await page.evaluate('typeof window.__pwned')).toBe('undefined')
    expect(await page.locator('#view script, #view img').count()).toBe(0)
  })

  it('lists schedules and pauses one', async () => {
    await page.getByRole('link', { name: 'Schedules' }).click()
    await expect.poll(() => page.locator('#view h2').textContent()).toBe('Schedules')
    const row = page.locator('tr[data-schedule="nightly-report"]')
    await row.waitFor()
    await page.screenshot({ path: join(SHOTS, 'schedules.png'), fullPage: true })
    await page.getByRole('button', { name: 'Pause nightly-report' }).click()
    await expect.poll(() => row.textContent()).toContain('paused')
    expect((await db.tr.schedules.get('nightly-report'))?.enabled).toBe(false)
    await page.getByRole('button', { name: 'Run nightly-report now' }).click()
    await expect.poll(() => status().textContent()).toMatch(/schedule nightly-report ran now: task \d+/)
    expect((await db.tr.schedules.get('nightly-report'))?.lastTaskId).not.toBeNull()
  })

  it('lists the live workers', async () => {
    const { id } = await db.tr.enqueue(slow, {})
    await waitUntil(async () => (await db.tr.getTask(id))?.state === 'running', { what: 'the slow task to run' })
    await page.getByRole('link', { name: 'Workers' }).click()
    await expect.poll(() => page.locator('#view h2').textContent()).toBe('Workers')
    await expect.poll(() => page.locator('#view tbody tr').count()).toBeGreaterThan(0)
    expect(await page.locator('#view tbody').textContent()).toContain('alive')
    // What the worker runs now, linked to the task.
    await page.getByRole('link', { name: `${id} archive.compact` }).waitFor()
    await page.screenshot({ path: join(SHOTS, 'workers.png'), fullPage: true })
    releaseSlow()
  })

  it('refuses cross-site and token-less writes, even with the session cookie', async () => {
    const result = await page.evaluate(async () => {
      const a = await fetch('api/queues/mail/pause', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
      return a.status
    })
    expect(result).toBe(403)
    expect((await db.tr.queue('mail').info())?.paused).toBe(false)
  })
})
