import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { createTestDb, databaseUrl, redisUrl, uniqueSchema, type TestDb } from '../support/db.ts'
import { HOUR, MIN, dbNow, makeTask, taskRow } from '../support/factory.ts'
import { currentMigration, latestMigrationId } from '../../src/db/migrate.ts'
import { runCli, type CliResult } from './cli-process.ts'

/**
 * The one-shot commands, run as real child processes against a schema of
 * this file's own: exit codes, output, and what changed in the database.
 */
let db: TestDb
let env: Record<string, string>

beforeAll(async () => {
  db = await createTestDb()
  env = { DATABASE_URL: databaseUrl(), REDIS_URL: redisUrl(), TASKRELAY_SCHEMA: db.schema, TASKRELAY_KEY_PREFIX: `cli-${db.schema}` }
})
afterAll(async () => {
  await db?.cleanup()
})

const cli = (...args: string[]) => runCli(args, env)
const count = async () => Number((await db.pool.query(`select count(*) from "${db.schema}".tasks`)).rows[0].count)
const lastId = (res: CliResult) => /enqueued task (\d+)/.exec(res.stdout)?.[1]

describe('enqueue', () => {
  it('uses the SQL function without --tasks, and validates against the schema with --tasks', async () => {
    const bySql = await cli('enqueue', 'test.echo', '{"text":"hi"}', '--priority', '5')
    expect(bySql.code, bySql.stderr).toBe(0)
    const row = await taskRow(db.pool, db.schema, lastId(bySql)!)
    expect(row).toMatchObject({ name: 'test.echo', state: 'pending', priority: 5, queue: 'default', payload: { text: 'hi' } })
    expect(bySql.stderr).toContain('no worker has registered a task named "test.echo" yet')

    const byTs = await cli('enqueue', 'test.echo', '{"text":"typed"}', '--tasks', 'test/cli/fixtures/tasks.ts', '--delay', '1h', '--json')
    expect(byTs.code, byTs.stderr).toBe(0)
    const { id } = JSON.parse(byTs.stdout) as { id: string }
    const typed = await taskRow(db.pool, db.schema, id)
    // The task's own policy applies: queue "cli", two attempts; --delay moves run_at.
    expect(typed).toMatchObject({ queue: 'cli', max_attempts: 2, payload: { text: 'typed' } })
    expect(typed!.run_at.getTime()).toBeGreaterThan(Date.now() + 50 * MIN)
  })

  it('returns the first task again for a repeated idempotency key', async () => {
    const a = await cli('enqueue', 'test.echo', '{"text":"once"}', '--idempotency-key', 'cli-once', '--json')
    const b = await cli('enqueue', 'test.echo', '{"text":"once"}', '--idempotency-key', 'cli-once', '--json')
    expect([a.code, b.code]).toEqual([0, 0])
    expect(JSON.parse(b.stdout).id).toBe(JSON.parse(a.stdout).id)
  })

  it('--depends-on: the task waits for those ids, by SQL and with --tasks; unknown ids write nothing', async () => {
    const parent = await makeTask(db.pool, db.schema, { state: 'running', attempt: 1 })
    const done = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1 })
    const bySql = await cli('enqueue', 'test.echo', '{"text":"after"}', '--depends-on', `${parent},${done}`, '--json')
    const byTs = await cli('enqueue', 'test.echo', '{"text":"after"}', '--depends-on', parent, '--tasks', 'test/cli/fixtures/tasks.ts', '--json')
    const ready = await cli('enqueue', 'test.echo', '{"text":"after"}', '--depends-on', done, '--json')
    for (const c of [bySql, byTs, ready]) expect(c.code, c.stderr).toBe(0)
    const [sqlId, tsId, readyId] = [bySql, byTs, ready].map((c) => (JSON.parse(c.stdout) as { id: string }).id)
    expect((await taskRow(db.pool, db.schema, sqlId!))!.state).toBe('waiting')
    expect((await taskRow(db.pool, db.schema, tsId!))!.state).toBe('waiting')
    expect((await taskRow(db.pool, db.schema, readyId!))!.state).toBe('pending')
    const status = await cli('status', sqlId!)
    expect(status.stdout).toMatch(/state\s+waiting/)
    expect(status.stdout).toContain(`${parent} test.task (running)`)
    expect(status.stdout).toContain('waits until every task it depends on has succeeded')
    const edges = await db.pool.query(`select task_id::text, depends_on::text from "${db.schema}".task_dependencies where task_id = any($1::bigint[]) order by 1, 2`, [[sqlId, tsId]])
    expect(edges.rows).toEqual(
      [
        { task_id: sqlId, depends_on: parent },
        { task_id: sqlId, depends_on: done },
        { task_id: tsId, depends_on: parent },
      ].sort((a, b) => Number(a.task_id) - Number(b.task_id) || Number(a.depends_on) - Number(b.depends_on)),
    )

    const before = await count()
    const bad = await Promise.all([
      cli('enqueue', 'test.echo', '{}', '--depends-on', '999999999998'),
      cli('enqueue', 'test.echo', '{"text":"x"}', '--depends-on', '999999999998', '--tasks', 'test/cli/fixtures/tasks.ts'),
      cli('enqueue', 'test.echo', '{}', '--depends-on', '1,x'),
    ])
    for (const c of bad) expect(c.code, c.stderr).toBe(2)
    expect(bad[0]!.stderr).toContain('depends_on names no task: 999999999998')
    expect(bad[1]!.stderr).toContain('does not exist: 999999999998')
    expect(bad[2]!.stderr).toContain('--depends-on: expected 1-1000 comma-separated task ids')
    expect(await count()).toBe(before)
  })

  it('writes nothing for bad JSON, a payload failing the schema, unknown tasks or missing modules', async () => {
    const before = await count()
    const cases = await Promise.all([
      cli('enqueue', 'test.echo', '{"text": '),
      cli('enqueue', 'test.echo', '{"text": ""}', '--tasks', 'test/cli/fixtures/tasks.ts'),
      cli('enqueue', 'test.nope', '{}', '--tasks', 'test/cli/fixtures/tasks.ts'),
      cli('enqueue', 'test.echo', '{}', '--tasks', 'test/cli/fixtures/missing.ts'),
      cli('enqueue', 'test.echo', '{}', '--tasks', 'test/cli/fixtures/no-tasks.ts'),
      cli('enqueue', 'test.echo', '{}', '--tasks', 'test/cli/fixtures/broken.ts'),
      cli('enqueue', 'bad name!', '{}'),
      cli('enqueue', 'test.echo', '[1, 2]'),
      cli('enqueue', 'test.echo', '{}', '--delay', 'soon'),
    ])
    const [json, schema, unknown, missing, empty, broken, badName, notObject, badDelay] = cases.map((c) => ({ ...c, stderr: c.stderr.replace(/\s+/g, ' ') }))
    for (const c of cases) expect(c.code, c.stderr).toBe(2)
    expect(json!.stderr).toContain('the payload is not valid JSON')
    expect(schema!.stderr).toContain('payload for task "test.echo" is invalid')
    expect(schema!.stderr).toContain('text:')
    expect(unknown!.stderr).toContain('has no task named "test.nope" (it has: test.echo, test.fails)')
    expect(missing!.stderr).toContain('there is no file at')
    expect(empty!.stderr).toContain('exports no tasks')
    expect(broken!.stderr).toContain('MAILER_API_KEY is not set')
    expect(badName!.stderr).toContain('invalid task_name')
    expect(notObject!.stderr).toContain('must be a JSON object')
    expect(badDelay!.stderr).toContain('--delay: expected a duration')
    for (const c of cases) expect(c.stderr).not.toMatch(/\n\s+at /)
    expect(await count()).toBe(before)
  })
})

describe('status', () => {
  it('shows a task as text with a next step, and as JSON', async () => {
    const id = await makeTask(db.pool, db.schema, { state: 'failed', name: 'report.build', queue: 'reports' })
    const [text, json] = await Promise.all([cli('status', id), cli('status', id, '--json')])
    expect(text.code).toBe(0)
    expect(text.stdout).toContain(`task ${id}  report.build`)
    expect(text.stdout).toMatch(/state\s+failed/)
    expect(text.stdout).toMatch(/attempt\s+3 of 3/)
    expect(text.stdout).toContain('test failure')
    expect(text.stdout).toContain(`taskrelay retry ${id}`)
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toMatchObject({ id, name: 'report.build', state: 'failed', queue: 'reports', lastError: { message: 'test failure' } })
  })

  it('exits 1 for an id that does not exist and 2 for something that is not an id', async () => {
    const [missing, bad] = await Promise.all([cli('status', '987654321'), cli('status', 'abc')])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain('task 987654321 does not exist')
    expect(missing.stderr).toContain('taskrelay list')
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('is not a task id')
  })
})

describe('list and stats', () => {
  let ids: Record<string, string>
  let schema: string
  let listEnv: Record<string, string>
  let pool: pg.Pool

  beforeAll(async () => {
    // A schema of their own: exact counts, unaffected by the other tests here.
    schema = uniqueSchema('cli_list')
    const own = await createTestDb({ schema })
    pool = own.pool
    listEnv = { ...env, TASKRELAY_SCHEMA: schema }
    ids = {
      old: await makeTask(pool, schema, { name: 'email.welcome', queue: 'emails', createdAt: dbNow(-3 * HOUR), runAt: dbNow(-3 * HOUR) }),
      due: await makeTask(pool, schema, { name: 'email.welcome', queue: 'emails', createdAt: dbNow(-10 * MIN), runAt: dbNow(-10 * MIN) }),
      later: await makeTask(pool, schema, { name: 'email.digest', queue: 'emails', runAt: dbNow(HOUR) }),
      failed: await makeTask(pool, schema, { state: 'failed', name: 'report.build', queue: 'reports' }),
      done: await makeTask(pool, schema, { state: 'succeeded', name: 'report.build', queue: 'reports' }),
      running: await makeTask(pool, schema, { state: 'running', name: 'email.welcome', queue: 'emails' }),
    }
    afterAll(() => own.cleanup())
  })

  const list = async (...args: string[]) => {
    const res = await runCli(['list', '--json', ...args], listEnv)
    expect(res.code, res.stderr).toBe(0)
    return JSON.parse(res.stdout) as { tasks: Array<{ id: string; state: string }>; nextAfter: string | null }
  }

  it('filters by state, task (with *), queue and age, newest first', async () => {
    const [all, failed, email, reports, recent, old] = await Promise.all([
      list(),
      list('--state', 'failed,succeeded'),
      list('--task', 'email.*'),
      list('--queue', 'reports', '--state', 'failed'),
      list('--since', '1h', '--task', 'email.welcome'),
      list('--older-than', '1h'),
    ])
    expect(all.tasks.map((t) => t.id)).toEqual(Object.values(ids).reverse())
    expect(failed.tasks.map((t) => t.id)).toEqual([ids.done, ids.failed])
    expect(email.tasks.map((t) => t.id)).toEqual([ids.running, ids.later, ids.due, ids.old])
    expect(reports.tasks.map((t) => t.id)).toEqual([ids.failed])
    expect(recent.tasks.map((t) => t.id)).toEqual([ids.running, ids.due])
    expect(old.tasks.map((t) => t.id)).toEqual([ids.old])
  })

  it('pages with --limit and the --after cursor, or --offset', async () => {
    const first = await list('--limit', '4')
    expect(first.tasks).toHaveLength(4)
    expect(first.nextAfter).toBe(first.tasks[3]!.id)
    const second = await list('--limit', '4', '--after', first.nextAfter!)
    expect(second.tasks.map((t) => t.id)).toEqual([ids.due, ids.old])
    expect(second.nextAfter).toBeNull()
    const byOffset = await list('--limit', '4', '--offset', '4')
    expect(byOffset.tasks).toEqual(second.tasks)
  })

  it('prints a table, and rejects bad filters with exit 2', async () => {
    const [table, bad] = await Promise.all([
      runCli(['list', '--state', 'failed'], listEnv),
      runCli(['list', '--state', 'broken', '--since', 'yesterday', '--after', '1', '--offset', '2'], listEnv),
    ])
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(/ID\s+TASK\s+QUEUE\s+STATE/)
    expect(table.stdout).toMatch(new RegExp(`${ids.failed}\\s+report\\.build\\s+reports\\s+failed\\s+3/3`))
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('unknown state "broken"')
    expect(bad.stderr).toContain('--since: expected an age')
    expect(bad.stderr).toContain('use one way of paging')
  })

  it('stats: depth per queue and state, throughput, oldest due pending task, failures in the last hour', async () => {
    const res = await runCli(['stats', '--json'], listEnv)
    expect(res.code, res.stderr).toBe(0)
    const stats = JSON.parse(res.stdout)
    expect(stats.queues.map((q: { queue: string }) => q.queue)).toEqual(['emails', 'reports'])
    expect(stats.queues[0]).toMatchObject({ queue: 'emails', pending: 2, scheduled: 1, running: 1, failedLastHour: 0 })
    expect(stats.queues[1]).toMatchObject({ queue: 'reports', pending: 0, succeededLastHour: 1, failedLastHour: 1, throughputLastMinute: 2 })
    expect(stats.totals.oldestPendingMs).toBeGreaterThanOrEqual(3 * HOUR - MIN)
    expect(stats.totals.failedLastHour).toBe(1)
    // Rates (issue 18): succeeded and failed per minute, and the held-back count.
    expect(stats.queues[1]).toMatchObject({ succeededLastMinute: 1, failedLastMinute: 1, heldBack: 0 })
    expect(stats.totals).toMatchObject({ succeededLastMinute: 1, failedLastMinute: 1 })
    expect(stats.rollupLagMs).toBeGreaterThanOrEqual(0)
    const table = await runCli(['stats'], listEnv)
    expect(table.stdout).toMatch(/QUEUE\s+WAITING\s+PENDING\s+SCHEDULED\s+DISPATCHED\s+RUNNING\s+HELD BACK/)
    expect(table.stdout).toMatch(/OK\/MIN\s+FAILED\/MIN/)
    expect(table.stdout).toMatch(/reports(\s+\d+){6}\s+1\s+1\s+0\s+1\s+1\s/)
    expect(table.stdout).toContain('(succeeded 1, ')
    expect(table.stdout).toMatch(/emails\s+0\s+2\s+1\s+0\s+1/)
    expect(table.stdout).toContain('failed in the last hour: 1')
  })
})

describe('retry and cancel', () => {
  it('retries one failed task, and refuses a succeeded or missing one', async () => {
    const failed = await makeTask(db.pool, db.schema, { state: 'failed' })
    const done = await makeTask(db.pool, db.schema, { state: 'succeeded' })
    const [ok, refused, missing] = await Promise.all([cli('retry', failed), cli('retry', done), cli('retry', '987654321')])
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toContain(`task ${failed} (test.task) is pending again; attempt 4 of 4 is next`)
    expect(await taskRow(db.pool, db.schema, failed)).toMatchObject({ state: 'pending', max_attempts: 4 })
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('is succeeded; only failed or cancelled tasks can be retried')
    expect((await taskRow(db.pool, db.schema, done))!.state).toBe('succeeded')
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain('does not exist')
  })

  it('retries every failed task matching --task and --since; --dry-run changes nothing', async () => {
    const recent = await makeTask(db.pool, db.schema, { state: 'failed', name: 'bulk.a', finishedAt: dbNow(-5 * MIN) })
    const old = await makeTask(db.pool, db.schema, { state: 'failed', name: 'bulk.a', finishedAt: dbNow(-2 * HOUR) })
    const other = await makeTask(db.pool, db.schema, { state: 'failed', name: 'bulk.b', finishedAt: dbNow(-5 * MIN) })
    const dry = await cli('retry', '--failed', '--task', 'bulk.a', '--since', '1h', '--dry-run')
    expect(dry.code).toBe(0)
    expect(dry.stdout).toContain('1 failed task(s) would be retried')
    expect((await taskRow(db.pool, db.schema, recent))!.state).toBe('failed')

    const run = await cli('retry', '--failed', '--task', 'bulk.*', '--since', '1h')
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toContain('retried 2 failed task(s)')
    const states = await Promise.all([recent, old, other].map(async (id) => (await taskRow(db.pool, db.schema, id))!.state))
    expect(states).toEqual(['pending', 'failed', 'pending'])
  })

  it('insists on an id or --failed, not both', async () => {
    const [neither, both, stray] = await Promise.all([cli('retry'), cli('retry', '1', '--failed'), cli('retry', '1', '--task', 'x')])
    expect([neither.code, both.code, stray.code]).toEqual([2, 2, 2])
    expect(stray.stderr).toContain('--task only applies with --failed')
  })

  it('cancels an unfinished task, and refuses a finished or missing one', async () => {
    const pending = await makeTask(db.pool, db.schema, { state: 'pending' })
    const done = await makeTask(db.pool, db.schema, { state: 'succeeded' })
    const [ok, refused, missing] = await Promise.all([cli('cancel', pending), cli('cancel', done), cli('cancel', '987654321')])
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toContain(`task ${pending} (test.task) cancelled`)
    expect((await taskRow(db.pool, db.schema, pending))!.state).toBe('cancelled')
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('already succeeded')
    expect((await taskRow(db.pool, db.schema, done))!.state).toBe('succeeded')
    expect(missing.code).toBe(1)
  })
})

describe('migrate', () => {
  it('creates a schema, then reports it up to date', async () => {
    const schema = uniqueSchema('cli_mig')
    try {
      const first = await runCli(['migrate'], { ...env, TASKRELAY_SCHEMA: schema })
      expect(first.code, first.stderr).toBe(0)
      expect(first.stdout).toContain(`applied 0001_init`)
      expect(await currentMigration(db.pool, schema)).toBe(latestMigrationId())
      const again = await runCli(['migrate', '--schema', schema], { ...env, TASKRELAY_SCHEMA: 'ignored_by_the_flag' })
      expect(again.stdout).toContain(`schema "${schema}" is up to date (migration ${latestMigrationId()})`)
    } finally {
      await db.pool.query(`drop schema if exists "${schema}" cascade`)
    }
  })

  it('--print-sql gives SQL that another tool can apply, after which the schema counts as migrated', async () => {
    const schema = uniqueSchema('cli_sql')
    try {
      const printed = await runCli(['migrate', '--print-sql', '--schema', schema], { DATABASE_URL: undefined })
      expect(printed.code, printed.stderr).toBe(0)
      expect(printed.stdout).toContain(`insert into "${schema}".migrations`)
      await db.pool.query(printed.stdout)
      expect(await currentMigration(db.pool, schema)).toBe(latestMigrationId())
      const status = await runCli(['list'], { ...env, TASKRELAY_SCHEMA: schema })
      expect(status.code, status.stderr).toBe(0)
      const upgrade = await runCli(['migrate', '--print-sql', '--from', String(latestMigrationId())], {})
      expect(upgrade.stdout).not.toContain('-- 0001_init')
    } finally {
      await db.pool.query(`drop schema if exists "${schema}" cascade`)
    }
  })
})

describe('unreachable or unprepared servers', () => {
  it('says which server is unreachable without showing the password, and exits 1', async () => {
    const [pgDown, redisDown] = await Promise.all([
      runCli(['status', '1'], { ...env, DATABASE_URL: 'postgres://postgres:hunter2@127.0.0.1:1/test' }),
      // Only a worker told to use Redis alone refuses to start without it (relays and lane auto start degraded).
      runCli(['worker', '--lane', 'redis', '--tasks', 'test/cli/fixtures/tasks.ts', '--log-level', 'silent'], { ...env, REDIS_URL: 'redis://:s3cret@127.0.0.1:1' }),
    ])
    expect(pgDown.code).toBe(1)
    expect(pgDown.stderr).toContain('Cannot connect to PostgreSQL at postgres://postgres:***@127.0.0.1:1/test')
    expect(pgDown.stderr).toContain('ECONNREFUSED')
    expect(redisDown.code).toBe(1)
    expect(redisDown.stderr).toContain('Cannot reach Redis at redis://127.0.0.1:1')
    for (const r of [pgDown, redisDown]) {
      expect(r.stderr + r.stdout).not.toMatch(/hunter2|s3cret/)
      expect(r.stderr).not.toMatch(/\n\s+at /)
    }
  })

  it('tells you to migrate when the schema is missing', async () => {
    const res = await runCli(['status', '1'], { ...env, TASKRELAY_SCHEMA: uniqueSchema('cli_none') })
    expect(res.code).toBe(1)
    expect(res.stderr).toContain('is not set up')
    expect(res.stderr).toContain('taskrelay migrate')
  })
})
