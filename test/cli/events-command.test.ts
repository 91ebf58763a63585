import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { defineTask } from '../../src/index.ts'
import { createTestDb, databaseUrl, waitUntil, type TestDb } from '../support/db.ts'
import { runCli, startCli, type CliProcess } from './cli-process.ts'

/**
 * Issue 18 item 7: `taskrelay events` tails task events live, from every
 * process, until SIGINT/SIGTERM; bad flags exit 2 before connecting. The
 * changes are made here, in the test's process; the CLI is a child process.
 */
let db: TestDb
let env: Record<string, string>

const mail = defineTask({ name: 'evcmd.mail', queue: 'q', payload: z.object({ to: z.string() }), run: () => 'sent' })
const other = defineTask({ name: 'evcmd.other', queue: 'elsewhere', payload: z.object({}), run: () => 1 })

beforeAll(async () => {
  db = await createTestDb()
  env = { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema }
})
afterAll(async () => {
  await db?.cleanup()
})

/** Start `taskrelay events …` and resolve once it listens (its banner on stderr). */
async function tail(args: string[]): Promise<CliProcess> {
  const cli = startCli(['events', ...args], env)
  await waitUntil(() => cli.stderr().includes('listening for task events') || cli.child.exitCode !== null, { what: 'the events banner' })
  expect(cli.child.exitCode, cli.stderr()).toBeNull()
  return cli
}

const lines = (cli: CliProcess) => cli.stdout().split('\n').filter(Boolean)

describe('taskrelay events', () => {
  it('--queue q --json prints one JSON line per event of that queue, with the row, until SIGTERM (exit 0)', async () => {
    const cli = await tail(['--queue', 'q', '--json'])
    const { id } = await db.tr.enqueue(mail, { to: 'ada@example.com' }, { delayMs: 3_600_000 })
    const { id: notMine } = await db.tr.enqueue(other, {}, { delayMs: 3_600_000 })
    await db.tr.cancel(notMine)
    await db.tr.cancel(id)
    await waitUntil(() => lines(cli).length >= 2, { what: 'two event lines' })
    expect(await cli.stop('SIGTERM')).toBe(0)
    const events = lines(cli).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(events).toEqual([
      { type: 'enqueued', taskId: id, queue: 'q', at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), details: expect.objectContaining({ name: 'evcmd.mail', maxAttempts: 3, error: null }) },
      {
        type: 'cancelled', taskId: id, queue: 'q', at: expect.any(String),
        details: expect.objectContaining({ name: 'evcmd.mail', state: 'cancelled', workflowId: null }),
      },
    ])
    expect(new Date(events[0]!.at as string).getTime()).toBeLessThanOrEqual(new Date(events[1]!.at as string).getTime())
  })

  it('--id prints one readable line per event of that task, --no-details leaves the row out; SIGINT exits 0', async () => {
    const { id } = await db.tr.enqueue(mail, { to: 'bob@example.com' }, { delayMs: 3_600_000 })
    const { id: sibling } = await db.tr.enqueue(mail, { to: 'eve@example.com' }, { delayMs: 3_600_000 })
    const [withRows, bare] = await Promise.all([tail(['--id', id]), tail(['--id', id, '--no-details', '--type', 'cancelled'])])
    await db.tr.cancel(sibling)
    await db.tr.cancel(id)
    await waitUntil(() => lines(withRows).length >= 1 && lines(bare).length >= 1, { what: 'a line from each' })
    expect(await withRows.stop('SIGINT')).toBe(0)
    expect(await bare.stop('SIGINT')).toBe(0)
    expect(lines(withRows)).toHaveLength(1)
    // A pending task cancelled has no error of its own: the line ends with the queue.
    expect(lines(withRows)[0]).toMatch(new RegExp(`^\\S+Z  cancelled  task ${id}  evcmd\\.mail  queue q$`))
    expect(lines(bare)).toEqual([expect.stringMatching(new RegExp(`^\\S+Z  cancelled  task ${id}  queue q$`))])
  })

  it('refuses bad flags with exit 2 and a message naming the flag, before connecting', async () => {
    // An address nothing listens on: a usage error must come first.
    const offline = { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', TASKRELAY_SCHEMA: db.schema }
    const cases: Array<[string[], RegExp]> = [
      [['--type', 'failed,finished'], /--type: unknown event type "finished"; use a comma-separated list of enqueued, started, progress, retried, succeeded, failed, cancelled/],
      [['--queue', 'has space'], /--queue: use 1-100 characters/],
      [['--id', 'abc'], /"abc" is not a task id/],
      [['--workflow', 'nope'], /--workflow: expected a workflow id/],
      [['--task', 'bad name!'], /--task: use 1-200 characters/],
      [['--bogus'], /unknown option '--bogus'/],
    ]
    const results = await Promise.all(cases.map(([args]) => runCli(['events', ...args], offline)))
    results.forEach((res, i) => {
      expect(res.code, res.stderr).toBe(2)
      expect(res.stderr).toMatch(cases[i]![1])
      expect(res.stderr).not.toMatch(/Cannot connect/)
      expect(res.stdout).toBe('')
    })
    // With good flags the same address fails to connect: exit 1.
    const unreachable = await runCli(['events', '--queue', 'q'], offline)
    expect(unreachable.code).toBe(1)
    expect(unreachable.stderr).toMatch(/Cannot connect to PostgreSQL/)
  })

  it('is listed in the help', async () => {
    const res = await runCli(['--help'])
    expect(res.stdout).toMatch(/\n\s+events \[options\]\s+tail task events live/)
  })
})
