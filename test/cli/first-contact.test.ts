import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createTestDb, databaseUrl, redisUrl, uniqueSchema, type TestDb } from '../support/db.ts'
import { MIN, dbNow, makeTask, taskRow } from '../support/factory.ts'
import { latestMigrationId } from '../../src/db/migrate.ts'
import { ROOT, baseEnv, runCli, startCli, type CliProcess, type CliResult } from './cli-process.ts'

/**
 * Issue 13 ("First contact"), the CLI's first-hour papercuts: each test here
 * failed before its fix. Real `taskrelay` child processes against a schema of
 * this file's own.
 */
let db: TestDb
let env: Record<string, string>
let dir: string
const running: CliProcess[] = []

beforeAll(async () => {
  db = await createTestDb()
  env = { DATABASE_URL: databaseUrl(), REDIS_URL: redisUrl(), TASKRELAY_SCHEMA: db.schema, TASKRELAY_KEY_PREFIX: `fc-${db.schema}` }
  dir = mkdtempSync(join(tmpdir(), 'taskrelay-first-contact-'))
})
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop('SIGKILL')))
})
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  await db?.cleanup()
})

const cli = (...args: string[]) => runCli(args, env)
const count = async () => Number((await db.pool.query(`select count(*) from "${db.schema}".tasks`)).rows[0].count)
const TASKS = ['--tasks', 'test/cli/fixtures/tasks.ts']

/** `taskrelay ...` with `input` on its stdin (runCli gives none). */
function runWithStdin(args: string[], input: string | Buffer): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/taskrelay.js'), ...args], { cwd: ROOT, env: baseEnv(env), stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdin.on('error', () => {}) // the CLI may stop reading early (too large)
    child.stdin.end(input)
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** A worker row as a running worker keeps it (worker-register.sql); expired: a worker that died. */
async function workerRow(schema: string, o: { id: string; queues: string[]; tasks: string[]; expired?: boolean }): Promise<void> {
  await db.pool.query(
    `insert into "${schema}".workers (id, queues, tasks, expires_at) values ($1, $2, $3, now() + $4 * interval '1 minute')`,
    [o.id, o.queues, o.tasks, o.expired ? -1 : 5],
  )
}

describe('tasks on a queue no running worker serves are visible', () => {
  let schema: string
  let own: TestDb
  let ids: Record<string, string>

  beforeAll(async () => {
    schema = uniqueSchema('fc_queues')
    own = await createTestDb({ schema })
    ids = {
      emails: await makeTask(own.pool, schema, { state: 'dispatched', name: 'email.welcome', queue: 'emails' }),
      waiting: await makeTask(own.pool, schema, { state: 'waiting', name: 'email.digest', queue: 'emails' }),
      noHandler: await makeTask(own.pool, schema, { state: 'pending', name: 'report.mail', queue: 'reports', runAt: dbNow(-MIN) }),
      served: await makeTask(own.pool, schema, { state: 'dispatched', name: 'report.build', queue: 'reports' }),
    }
    await workerRow(schema, { id: 'w-reports', queues: ['reports'], tasks: ['report.build'] })
    await workerRow(schema, { id: 'w-dead', queues: ['emails'], tasks: ['email.welcome'], expired: true })
  })
  afterAll(() => own?.cleanup())

  const inSchema = (...args: string[]) => runCli(args, { ...env, TASKRELAY_SCHEMA: schema })

  it('status says no worker serves the queue, or that none of its workers has the task', async () => {
    const [emails, noHandler, served, json] = await Promise.all([
      inSchema('status', ids.emails!),
      inSchema('status', ids.noHandler!),
      inSchema('status', ids.served!),
      inSchema('status', ids.emails!, '--json'),
    ])
    for (const r of [emails, noHandler, served, json]) expect(r.code, r.stderr).toBe(0)
    expect(emails.stdout).toContain('no worker serves queue "emails"')
    expect(noHandler.stdout).toContain('1 running worker(s) serve queue "reports", but none has task "report.mail"')
    expect(served.stdout).not.toContain('no worker serves')
    expect(served.stdout).toContain('waiting for one of the 1 running worker(s) with this task on queue "reports"')
    expect(JSON.parse(json.stdout)).toMatchObject({ id: ids.emails, workers: { serving: 0, withTask: 0 } })
  })

  it('stats shows workers per queue, the unserved queues, and a waiting column', async () => {
    const [json, text] = await Promise.all([inSchema('stats', '--json'), inSchema('stats')])
    expect(json.code, json.stderr).toBe(0)
    const stats = JSON.parse(json.stdout)
    expect(stats.queues).toEqual([
      expect.objectContaining({ queue: 'emails', waiting: 1, dispatched: 1, workers: 0 }),
      expect.objectContaining({ queue: 'reports', pending: 1, dispatched: 1, workers: 1 }),
    ])
    expect(stats.totals).toMatchObject({ waiting: 1, workers: 1 })
    expect(stats.unservedQueues).toEqual(['emails'])
    expect(text.stdout).toMatch(/QUEUE\s+WAITING\s+PENDING/)
    expect(text.stdout).toMatch(/emails\s+1\s+0\s+0\s+1\s+0/)
    expect(text.stdout).toContain('queue "emails": no worker serves this queue')
    expect(text.stdout).not.toContain('queue "reports": no worker')
  })
})

describe('taskrelay worker', () => {
  it("logs the queues it really serves at start-up, and which loaded tasks it will not run", async () => {
    const byDefault = startCli(['worker', ...TASKS], env)
    const explicit = startCli(['worker', ...TASKS, '--queues', 'default'], env)
    running.push(byDefault, explicit)
    await Promise.all([byDefault, explicit].map((p) => p.waitForLog((l) => l.msg === 'taskrelay ready', 'worker ready')))
    const config = (p: CliProcess) => p.logs.find((l) => l.msg === 'taskrelay starting')!.config as { worker: { queues: string[] } }
    expect(config(byDefault).worker.queues).toEqual(['cli'])
    expect(config(explicit).worker.queues).toEqual(['default'])
    const notRun = explicit.logs.find((l) => l.msg === 'some loaded tasks are on queues this worker does not serve; it will not run them')
    expect(notRun).toMatchObject({ queues: ['default'] })
    expect(notRun!.notRun).toHaveLength(2)
    expect(notRun!.notRun).toEqual(expect.arrayContaining([{ task: 'test.echo', queue: 'cli' }, { task: 'test.fails', queue: 'cli' }]))
    expect(byDefault.logs.some((l) => String(l.msg).includes('will not run'))).toBe(false)
  })
})

describe('taskrelay enqueue: payloads from stdin (-) and files (@file), up to 1 MiB', () => {
  // Larger than one shell argument may be (128 KiB on Linux), well under the limit.
  const big = JSON.stringify({ text: 'x'.repeat(600 * 1024) })

  it('reads the payload from stdin and from a file, by SQL and with --tasks', async () => {
    const file = join(dir, 'payload.json')
    writeFileSync(file, big)
    const [stdin, fromFile, typed] = await Promise.all([
      runWithStdin(['enqueue', 'test.echo', '-', '--json'], big),
      cli('enqueue', 'test.echo', `@${file}`, '--json'),
      runWithStdin(['enqueue', 'test.echo', '-', ...TASKS, '--json'], '{"text": "typed"}\n'),
    ])
    for (const r of [stdin, fromFile, typed]) expect(r.code, r.stderr).toBe(0)
    const payloadOf = async (r: CliResult) => (await taskRow(db.pool, db.schema, JSON.parse(r.stdout).id))!.payload as { text: string }
    expect((await payloadOf(stdin)).text).toHaveLength(600 * 1024)
    expect((await payloadOf(fromFile)).text).toHaveLength(600 * 1024)
    expect(await payloadOf(typed)).toEqual({ text: 'typed' })
  })

  it('refuses more than 1 MiB, a missing file and empty stdin with exit 2, writing nothing', async () => {
    const before = await count()
    const tooBig = JSON.stringify({ text: 'x'.repeat(1024 * 1024) })
    const [overSql, overTyped, hugeInput, missing, empty] = await Promise.all([
      runWithStdin(['enqueue', 'test.echo', '-'], tooBig),
      runWithStdin(['enqueue', 'test.echo', '-', ...TASKS], tooBig),
      runWithStdin(['enqueue', 'test.echo', '-'], Buffer.alloc(5 * 1024 * 1024, 0x20)),
      cli('enqueue', 'test.echo', `@${join(dir, 'nope.json')}`),
      runWithStdin(['enqueue', 'test.echo', '-'], ''),
    ])
    for (const r of [overSql, overTyped, hugeInput, missing, empty]) {
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).not.toContain('unexpected error')
    }
    expect(overSql.stderr).toContain('the limit is 1 MiB')
    expect(overTyped.stderr).toContain('the limit is 1 MiB')
    expect(hugeInput.stderr).toContain('stdin holds more than')
    expect(missing.stderr).toContain('cannot read the payload from')
    expect(missing.stderr).toContain('ENOENT')
    expect(empty.stderr).toContain('the payload is not valid JSON')
    expect(await count()).toBe(before)
  })

  it('an unknown task: says which queue it went to and that workers there without it hand it back', async () => {
    const res = await cli('enqueue', 'nobody.has.this', '{}')
    expect(res.code, res.stderr).toBe(0)
    const text = res.stderr.replace(/\s+/g, ' ')
    expect(text).toContain('no worker has registered a task named "nobody.has.this" yet')
    expect(text).toContain('it was put on queue "default"')
    expect(text).toContain('workers on that queue without it hand it back')
  })
})

describe('smaller first-hour things', () => {
  it('a relay meeting a fresh Redis does not warn about re-dispatching 0 tasks', async () => {
    // A key prefix never used: to the relay this Redis is fresh (no epoch marker).
    const relay = startCli(['relay', '--log-level', 'debug'], { ...env, TASKRELAY_KEY_PREFIX: `fresh-${uniqueSchema('k')}` })
    running.push(relay)
    const seen = await relay.waitForLog(
      (l) => l.msg === 're-dispatching tasks that may be missing from Redis' || l.msg === 'redis holds no taskrelay data (new or emptied); no dispatched task was waiting in it',
      'the check of what Redis may have lost',
    )
    expect(seen).not.toMatchObject({ level: 40, count: 0 })
    expect(seen.level).toBe(30) // info: an operator may still want to know Redis came back empty
  })

  it('dev with Redis down starts on the Postgres lane, warns once per outage, and runs a task', async () => {
    // Issue 17: before, dev refused to start ("Cannot reach Redis at …", exit 1). And once it could,
    // each Redis client logged "redis connection error" at warn on every reconnect, every second.
    const schema = uniqueSchema('fc_dev')
    const devEnv = { ...env, TASKRELAY_SCHEMA: schema, REDIS_URL: 'redis://127.0.0.1:1' }
    try {
      const dev = startCli(['dev'], devEnv)
      running.push(dev)
      await dev.waitForLog((l) => String(l.msg).startsWith('dev ready'), 'dev ready')
      const enqueued = await runCli(['enqueue', 'email.welcome', '{"userId": 1, "email": "ada@example.com"}'], devEnv)
      expect(enqueued.code, enqueued.stderr).toBe(0)
      await dev.waitForLog((l) => l.msg === 'progress' && (l.counts as Record<string, number>).succeeded === 1, 'the task succeeded')
      // Reconnects go on (ioredis retries every second at most): past three of them, no new warning.
      const since = Date.now()
      await new Promise((r) => setTimeout(r, 3500))
      const warnings = dev.logs.filter((l) => l.level === 40)
      expect(warnings.filter((l) => Number(l.time) > since).map((l) => l.msg)).toEqual([])
      expect(warnings.map((l) => `${String(l.component)}: ${String(l.msg)}`).sort()).toEqual([
        'relay: redis connection error; reconnecting until it is back',
        'relay: redis is unreachable: not dispatching until it is back; workers take due tasks straight from Postgres meanwhile',
        'worker: redis connection error; reconnecting until it is back',
        'worker: redis connection error; reconnecting until it is back',
        'worker: redis is unreachable: taking tasks straight from Postgres (the Postgres lane) until it is back',
      ])
    } finally {
      await Promise.all(running.splice(0).map((p) => p.stop('SIGKILL')))
      await db.pool.query(`drop schema if exists "${schema}" cascade`)
    }
  })

  it('a redis+sentinel:// URL without a master name says the name is missing', async () => {
    const [noName, emptyName] = await Promise.all([
      runCli(['relay'], { ...env, REDIS_URL: 'redis+sentinel://127.0.0.1:26379' }),
      runCli(['relay'], { ...env, REDIS_URL: 'redis+sentinel://:s3cret@127.0.0.1:26379,127.0.0.1:26380/' }),
    ])
    for (const r of [noName, emptyName]) {
      expect(r.code).toBe(2)
      expect(r.stderr).toContain('the master group name is missing')
      expect(r.stderr).not.toContain('unsupported scheme')
      expect(r.stderr).not.toContain('s3cret')
    }
  })

  it('nothing to retry exits 1 in both forms; a dry run still exits 0', async () => {
    const done = await makeTask(db.pool, db.schema, { state: 'succeeded' })
    const [one, bulk, dry] = await Promise.all([
      cli('retry', done),
      cli('retry', '--failed', '--task', 'no.such.task'),
      cli('retry', '--failed', '--task', 'no.such.task', '--dry-run'),
    ])
    expect(one.code).toBe(1)
    expect(bulk.code).toBe(1)
    expect(bulk.stderr).toContain('no failed tasks match (task no.such.task); nothing was changed')
    expect(dry.code).toBe(0)
    expect(dry.stdout).toContain('0 failed task(s) would be retried')
  })

  it('migrate --print-sql --from refuses a migration number this version does not have', async () => {
    const latest = latestMigrationId()
    const [unknown, negative, last] = await Promise.all([
      runCli(['migrate', '--print-sql', '--from', '99'], {}),
      runCli(['migrate', '--print-sql', '--from', '-1'], {}),
      runCli(['migrate', '--print-sql', '--from', String(latest)], {}),
    ])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain(`--from: expected the number of a migration this version has, 0 to ${latest}, got "99"`)
    expect(unknown.stdout).toBe('')
    expect(negative.code).toBe(2)
    expect(last.code, last.stderr).toBe(0)
  })

  it('a --tasks module with a syntax error shows file:line', async () => {
    const source = 'export const a = 1\nexport const b = {\n  oops: ,\n}\n'
    const ts = join(dir, 'broken-syntax.ts')
    const js = join(dir, 'broken-syntax.mjs')
    writeFileSync(ts, source)
    writeFileSync(js, source)
    const [fromTs, fromJs] = await Promise.all([cli('enqueue', 'test.echo', '{}', '--tasks', ts), cli('enqueue', 'test.echo', '{}', '--tasks', js)])
    for (const [r, file] of [[fromTs, ts], [fromJs, js]] as const) {
      expect(r.code).toBe(2)
      expect(r.stderr).toContain(`${file}:3`)
      expect(r.stderr).toContain('oops: ,')
    }
  })

  it('a TypeScript --tasks module inside node_modules (an installed dev with the bundled examples) says to use a module of its own', async () => {
    mkdirSync(join(dir, 'node_modules', 'taskrelay', 'examples'), { recursive: true })
    const file = join(dir, 'node_modules', 'taskrelay', 'examples', 'tasks.ts')
    writeFileSync(file, "import type { Task } from 'taskrelay'\nexport const tasks: Task[] = []\n")
    const r = await cli('enqueue', 'test.echo', '{}', '--tasks', file)
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('is TypeScript inside node_modules')
    expect(r.stderr).not.toMatch(/ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING|\n\s+at /)
  })

  it('a task id past bigint is a usage error naming the id, not a database error', async () => {
    const r = await cli('status', '9999999999999999999')
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('"9999999999999999999" is not a task id')
  })

  it('schedules remove refuses a schedule declared in code unless --force', async () => {
    const add = await runCli(['schedules', 'add', 'from-code', 'test.echo', '--every', '1h', '--payload', '{"text":"t"}', ...TASKS], env)
    expect(add.code, add.stderr).toBe(0)
    // As a scheduler's sync of defineTask({ schedules }) leaves it.
    await db.pool.query(`update "${db.schema}".schedules set source = 'code' where name = 'from-code'`)
    const exists = async () => (await db.pool.query(`select 1 from "${db.schema}".schedules where name = 'from-code'`)).rows.length === 1
    const refused = await cli('schedules', 'remove', 'from-code')
    expect(refused.code).toBe(1)
    expect(refused.stderr.replace(/\s+/g, ' ')).toContain('is declared in code (defineTask({ schedules }) of task "test.echo"); the next scheduler start would create it again')
    expect(await exists()).toBe(true)
    const forced = await cli('schedules', 'remove', 'from-code', '--force')
    expect(forced.code, forced.stderr).toBe(0)
    expect(forced.stdout).toContain('schedule "from-code" removed; it comes back when a scheduler starts with code that still declares it')
    expect(await exists()).toBe(false)
  })

  it('examples/status.ts asks about the task it was given and prints intervals as psql does', async () => {
    const id = await makeTask(db.pool, db.schema, { state: 'succeeded', name: 'report.build', createdAt: dbNow(-2000), runAt: dbNow(-2000), startedAt: dbNow(-1500), finishedAt: dbNow() })
    const out = await new Promise<CliResult>((resolve, reject) => {
      const child = spawn(process.execPath, ['examples/status.ts', id], { cwd: ROOT, env: baseEnv({ DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema }), stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
      child.on('error', reject)
      child.on('close', (code) => resolve({ code, stdout, stderr }))
    })
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toContain(`What happened to task ${id}?`)
    if (id !== '42') expect(out.stdout).not.toContain('task 42')
    expect(out.stdout).not.toContain('PostgresInterval')
    expect(out.stdout).toContain('00:00:01.5')
  })
})
