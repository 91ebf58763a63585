import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDb, databaseUrl, type TestDb } from '../support/db.ts'
import { runCli, startCli } from './cli-process.ts'

/** `taskrelay schedules ...` and `stats --watch`, as child processes against this file's schema. */
let db: TestDb
let env: Record<string, string>

beforeAll(async () => {
  db = await createTestDb()
  env = { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema, TASKRELAY_TASKS: 'test/cli/fixtures/tasks.ts' }
})
afterAll(async () => {
  await db?.cleanup()
})

const cli = (...args: string[]) => runCli(args, env)
const schedule = async (name: string) => (await db.pool.query(`select * from "${db.schema}".schedules where name = $1`, [name])).rows[0]

describe('taskrelay schedules', () => {
  it('adds, lists, pauses, resumes, runs now and removes a schedule', async () => {
    const add = await cli('schedules', 'add', 'echo-every-hour', 'test.echo', '--every', '1h', '--payload', '{"text":"tick"}', '--priority', '3', '--no-overlap')
    expect(add.code, add.stderr).toBe(0)
    expect(add.stdout).toContain('schedule "echo-every-hour" created (test.echo, every 1h)')
    expect(await schedule('echo-every-hour')).toMatchObject({ task_name: 'test.echo', every_ms: '3600000', payload: { text: 'tick' }, priority: 3, overlap: false, enabled: true, source: 'manual' })

    const list = await cli('schedules', 'list', '--json')
    expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ name: 'echo-every-hour', task: 'test.echo', everyMs: 3_600_000 })])
    const table = await cli('schedules', 'list')
    expect(table.stdout).toMatch(/echo-every-hour\s+test\.echo\s+every 1h\s+active/)

    expect((await cli('schedules', 'pause', 'echo-every-hour')).code).toBe(0)
    expect((await schedule('echo-every-hour')).enabled).toBe(false)
    expect((await cli('schedules', 'resume', 'echo-every-hour')).code).toBe(0)
    expect((await schedule('echo-every-hour')).enabled).toBe(true)

    const now = await cli('schedules', 'run-now', 'echo-every-hour')
    expect(now.code, now.stderr).toBe(0)
    const taskId = /enqueued task (\d+)/.exec(now.stdout)![1]!
    expect((await db.tr.getTask(taskId))).toMatchObject({ name: 'test.echo', payload: { text: 'tick' }, priority: 3 })

    expect((await cli('schedules', 'remove', 'echo-every-hour')).code).toBe(0)
    expect(await schedule('echo-every-hour')).toBeUndefined()
    const again = await cli('schedules', 'remove', 'echo-every-hour')
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('schedule "echo-every-hour" does not exist')
  })

  it('rejects a bad schedule with every problem listed (exit 2) and writes nothing', async () => {
    const res = await cli('schedules', 'add', 'broken', 'test.echo', '--cron', '0 61 * * *', '--payload', '{"text": ""}')
    expect(res.code).toBe(2)
    expect(res.stderr).toContain('invalid schedule "broken"')
    expect(res.stderr).toContain('cron:')
    expect(res.stderr).toContain('payload.text')
    expect(await schedule('broken')).toBeUndefined()
    const [missing, noTasks] = await Promise.all([cli('schedules', 'pause', 'nope'), runCli(['schedules', 'run-now', 'x'], { ...env, TASKRELAY_TASKS: undefined })])
    expect(missing.code).toBe(1)
    expect(noTasks.code).toBe(2)
    expect(noTasks.stderr).toContain('process.tasks (--tasks / TASKRELAY_TASKS): not set')
  })
})

describe('taskrelay stats --watch', () => {
  it('prints a JSON snapshot per interval when not on a terminal, and exits 0 on SIGINT', async () => {
    const watch = startCli(['stats', '--watch', '--json', '--interval', '200ms'], env)
    // Each snapshot is one JSON line with an "at" field; wait for two, so it really refreshes.
    await watch.waitForLog((l) => typeof l.at === 'string' && watch.logs.filter((x) => typeof x.at === 'string').length >= 2, 'two snapshots')
    expect(watch.logs[0]).toMatchObject({ queues: expect.any(Array), totals: expect.objectContaining({ pending: expect.any(Number) }) })
    expect(await watch.stop('SIGINT')).toBe(0)
  })
})
