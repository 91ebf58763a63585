import { createServer } from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createTestDb, databaseUrl, redisUrl, uniqueSchema, waitUntil, type TestDb } from '../support/db.ts'
import { runCli, startCli, type CliProcess } from './cli-process.ts'

/**
 * The long-running commands as real processes: relay, worker, sweeper and
 * scheduler side by side, and `dev` on its own; each stops on a signal with
 * exit 0.
 */
let db: TestDb
let env: Record<string, string>
const running: CliProcess[] = []

beforeAll(async () => {
  db = await createTestDb()
  env = { DATABASE_URL: databaseUrl(), REDIS_URL: redisUrl(), TASKRELAY_SCHEMA: db.schema, TASKRELAY_KEY_PREFIX: `svc-${db.schema}` }
})
afterEach(async () => {
  // A failed test must not leave processes behind.
  await Promise.all(running.splice(0).map((p) => p.stop('SIGKILL')))
})
afterAll(async () => {
  await db?.cleanup()
})

function start(args: string[], extra: Record<string, string> = {}): CliProcess {
  const p = startCli(args, { ...env, ...extra })
  running.push(p)
  return p
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

const ready = (p: CliProcess, what: string) => p.waitForLog((l) => l.msg === 'taskrelay ready', `${what} ready`)

describe('relay, worker, sweeper and scheduler as separate processes', () => {
  it('run a task to succeeded, log its events, report health, and exit 0 on SIGTERM', async () => {
    const healthPort = await freePort()
    const tasks = { TASKRELAY_TASKS: 'test/cli/fixtures/tasks.ts' }
    // A password the server ignores (trust auth) but the logs must never show.
    const withPassword = new URL(databaseUrl())
    withPassword.password = 'hunter2'
    const relay = start(['relay'], { DATABASE_URL: withPassword.href })
    const worker = start(['worker', '--concurrency', '2', '--health-port', String(healthPort)], tasks)
    const sweeper = start(['sweeper', '--sweep-interval-ms', '1s'])
    const scheduler = start(['scheduler'], tasks)
    await Promise.all([ready(relay, 'relay'), ready(worker, 'worker'), ready(sweeper, 'sweeper'), ready(scheduler, 'scheduler')])

    // The start-up line carries the effective configuration, secrets redacted.
    const config = worker.logs.find((l) => l.msg === 'taskrelay starting')!.config as Record<string, unknown>
    expect(config).toMatchObject({ schema: db.schema, healthPort, worker: { concurrency: 2 }, setFrom: { 'worker.concurrency': '--concurrency' } })

    const enq = await runCli(['enqueue', 'test.echo', '{"text":"hello"}', '--tasks', 'test/cli/fixtures/tasks.ts', '--json'], env)
    expect(enq.code, enq.stderr).toBe(0)
    const id = JSON.parse(enq.stdout).id as string
    const task = await waitUntil(async () => {
      const t = await db.tr.getTask(id)
      return t?.state === 'succeeded' && t
    }, { what: `task ${id} to succeed` })
    expect(task.result).toEqual({ echoed: 'hello' })

    const done = await worker.waitForLog((l) => l.msg === 'task succeeded' && l.taskId === id, 'the success log line')
    expect(done).toMatchObject({ task: 'test.echo', queue: 'cli', attempt: 1, component: 'worker' })
    expect(typeof done.durationMs).toBe('number')

    const health = await fetch(`http://127.0.0.1:${healthPort}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.json()).toMatchObject({ ok: true, services: { worker: { ok: true, running: true } } })

    // The same port serves Prometheus metrics: this worker's counts, and queue depth from Postgres.
    await db.pool.query(`select "${db.schema}".enqueue('test.echo', '{"text":"later"}', delay => interval '1 hour')`)
    const metrics = await fetch(`http://127.0.0.1:${healthPort}/metrics`)
    expect(metrics.status).toBe(200)
    expect(metrics.headers.get('content-type')).toContain('text/plain')
    const text = await metrics.text()
    expect(text).toContain('taskrelay_tasks_started_total{queue="cli",task="test.echo"} 1')
    expect(text).toContain('taskrelay_tasks_finished_total{queue="cli",task="test.echo",outcome="succeeded"} 1')
    expect(text).toMatch(/^taskrelay_tasks\{queue="cli",state="pending"\} 1$/m)
    expect(text).toContain('# TYPE taskrelay_oldest_due_pending_seconds gauge')
    expect(text).toMatch(/^process_cpu_seconds_total \d/m)

    const relayConfig = relay.logs.find((l) => l.msg === 'taskrelay starting')!.config as Record<string, unknown>
    expect(relayConfig.database).toContain(':***@')

    const codes = await Promise.all([relay, worker, sweeper, scheduler].map((p) => p.stop('SIGTERM')))
    expect(codes).toEqual([0, 0, 0, 0])
    for (const p of [relay, worker, sweeper, scheduler]) expect(p.logs.some((l) => l.msg === 'stopped')).toBe(true)
    expect(relay.stdout() + relay.stderr()).not.toContain('hunter2')
  })

  it('refuses to start a worker without tasks, before touching any server', async () => {
    const res = await runCli(['worker', '--tasks', 'test/cli/fixtures/no-tasks.ts', '--log-level', 'silent'], { ...env, DATABASE_URL: 'postgres://127.0.0.1:1/x' })
    expect(res.code).toBe(2)
    expect(res.stderr).toContain('exports no tasks')
  })
})

describe('taskrelay dev', () => {
  it('migrates, runs an enqueued task to succeeded with the example tasks, shows progress, and stops on SIGINT', async () => {
    const schema = uniqueSchema('dev')
    try {
      const dev = start(['dev', '--sweep-interval-ms', '1s'], { TASKRELAY_SCHEMA: schema, TASKRELAY_KEY_PREFIX: schema })
      await ready(dev, 'dev')
      expect(dev.logs.find((l) => l.msg === 'migrations applied')).toMatchObject({ schema, applied: expect.arrayContaining(['0001_init']) })
      // Enqueued through SQL, as another language would: the worker registered the task's defaults (queue "emails").
      const res = await db.pool.query(`select "${schema}".enqueue('email.welcome', '{"userId": 7, "email": "ada@example.com"}') as id`)
      const id = String(res.rows[0].id)
      await waitUntil(async () => {
        const row = (await db.pool.query(`select state, queue from "${schema}".tasks where id = $1`, [id])).rows[0]
        return row?.state === 'succeeded' && row.queue === 'emails'
      }, { what: 'the example task to succeed' })
      await dev.waitForLog((l) => l.msg === 'progress' && (l.counts as { succeeded: number }).succeeded === 1, 'a progress line with the success')
      expect(await dev.stop('SIGINT')).toBe(0)
      expect(dev.logs.at(-1)?.msg).toBe('stopped')
    } finally {
      await db.pool.query(`drop schema if exists "${schema}" cascade`)
    }
  })
})
