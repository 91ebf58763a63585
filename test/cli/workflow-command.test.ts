import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { chain, chord, defineTask, group, step } from '../../src/index.ts'
import { createTestDb, databaseUrl, type TestDb } from '../support/db.ts'
import { runCli } from './cli-process.ts'

/**
 * Issue 15, item 6: `taskrelay workflow <id>` prints a workflow's state,
 * counts and steps as a tree; `taskrelay list --workflow <id>` lists its
 * tasks. No worker runs: the tree is read from the rows as enqueued.
 */
let db: TestDb
let env: Record<string, string>
let workflowId: string
let taskIds: string[]

const fetchPage = defineTask({ name: 'wcmd.fetch', queue: 'wcmd', payload: z.object({ url: z.string() }), run: ({ url }) => url.length })
const total = defineTask({ name: 'wcmd.total', queue: 'wcmd', payload: z.array(z.number()), run: (ns) => ns.reduce((a, b) => a + b, 0) })
const report = defineTask({ name: 'wcmd.report', queue: 'wcmd', payload: z.number(), run: (n) => `total ${n}` })

beforeAll(async () => {
  db = await createTestDb()
  env = { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema }
  const flow = chain(chord(group(step(fetchPage, { url: 'a' }), step(fetchPage, { url: 'bb' })), step(total)), step(report))
  ;({ id: workflowId, taskIds } = await db.tr.enqueueWorkflow(flow, { name: 'crawl' }))
  await db.tr.enqueue(fetchPage, { url: 'not in the workflow' })
})
afterAll(async () => {
  await db?.cleanup()
})

describe('taskrelay workflow', () => {
  it('prints the state, the counts and the steps as a tree, each after what it waits for', async () => {
    const res = await runCli(['workflow', workflowId], env)
    expect(res.code, res.stderr).toBe(0)
    expect(res.stdout).toContain(`workflow   ${workflowId} "crawl"`)
    expect(res.stdout).toMatch(/state\s+running/)
    expect(res.stdout).toMatch(/tasks\s+4: 2 waiting, 2 pending/)
    const rows = res.stdout.split('\n').filter((l) => /wcmd\./.test(l))
    expect(rows.map((l) => l.split(/ {2,}/)[0]!.replace(/ +$/, ''))).toEqual(['wcmd.fetch', 'wcmd.fetch', '└─ wcmd.total', '│ └─ wcmd.report'])
    expect(rows[2]).toMatch(new RegExp(`\\b${taskIds[0]},${taskIds[1]}\\b`)) // the callback waits for both members, in order
    const json = JSON.parse((await runCli(['workflow', workflowId, '--json'], env)).stdout) as { tasks: Array<{ id: string }>; counts: { total: number } }
    expect(json.tasks.map((t) => t.id)).toEqual(taskIds)
    expect(json.counts.total).toBe(4)
  })

  it('the SQL view, the CLI and getWorkflow agree', async () => {
    // Move one member on, so the counts are not all at their start.
    await db.pool.query(`update "${db.schema}".tasks set state = 'succeeded', finished_at = now(), result = '1' where id = $1`, [taskIds[0]])
    const view = (
      await db.pool.query(
        `select id::text, name, state, total, waiting, pending, dispatched, running, succeeded, failed, cancelled, failed_task_id::text
           from "${db.schema}".workflow_status where id = $1`,
        [workflowId],
      )
    ).rows[0]
    const cli = JSON.parse((await runCli(['workflow', workflowId, '--json'], env)).stdout) as Record<string, unknown>
    const code = (await db.tr.getWorkflow(workflowId))!
    const fromView = { id: view.id, name: view.name, state: view.state, failedTaskId: view.failed_task_id }
    const countsFromView = { total: view.total, waiting: view.waiting, pending: view.pending, dispatched: view.dispatched, running: view.running, succeeded: view.succeeded, failed: view.failed, cancelled: view.cancelled }
    expect({ id: code.id, name: code.name, state: code.state, failedTaskId: code.failedTaskId }).toEqual(fromView)
    expect({ id: cli.id, name: cli.name, state: cli.state, failedTaskId: cli.failedTaskId }).toEqual(fromView)
    expect(code.counts).toEqual(countsFromView)
    expect(cli.counts).toEqual(countsFromView)
    expect(countsFromView).toMatchObject({ total: 4, succeeded: 1, pending: 1, waiting: 2 })
    expect((cli.tasks as Array<{ id: string; state: string }>).map((t) => [t.id, t.state])).toEqual(code.tasks.map((t) => [t.id, t.state]))
  })

  it('list --workflow lists only its tasks', async () => {
    const res = await runCli(['list', '--workflow', workflowId, '--json'], env)
    expect(res.code, res.stderr).toBe(0)
    const ids = (JSON.parse(res.stdout) as { tasks: Array<{ id: string }> }).tasks.map((t) => t.id)
    expect(ids.sort()).toEqual([...taskIds].sort())
  })

  it('a malformed id is a usage error (exit 2); an unknown one exits 1 naming the view to look in', async () => {
    const [bad, unknown, badList] = await Promise.all([
      runCli(['workflow', '42'], env),
      runCli(['workflow', '00000000-0000-4000-8000-000000000000'], env),
      runCli(['list', '--workflow', 'nope'], env),
    ])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('expected a workflow id (a UUID')
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('workflow_status')
    expect(badList.code).toBe(2)
    expect(badList.stderr).toContain('--workflow')
  })
})
