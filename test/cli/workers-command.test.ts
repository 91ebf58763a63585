import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { Worker, defineTask } from '../../src/index.ts'
import { createTestDb, databaseUrl, type TestDb } from '../support/db.ts'
import { runCli } from './cli-process.ts'

/**
 * Issue 17, item 3: `taskrelay workers` lists live worker processes, what
 * they serve and how many tasks each holds; --all adds the silent ones (dead
 * or cut off), whose tasks the sweeper retries.
 */
let db: TestDb
let worker: Worker
let env: Record<string, string>

const hold = defineTask({ name: 'wc.hold', queue: 'wc', payload: z.object({}), run: (_p, ctx) => new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r())) })

beforeAll(async () => {
  db = await createTestDb()
  env = { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema }
  worker = new Worker(db.tr, { tasks: [hold], lane: 'postgres', workerId: 'wc-live', shutdownGraceMs: 0 })
  await worker.start()
  await db.tr.enqueue(hold, {})
  await db.pool.query(`insert into "${db.schema}".workers (id, queues, tasks, started_at, last_seen_at, expires_at)
                       values ('wc-dead:1', '{wc}', '{wc.hold}', now() - interval '1 hour', now() - interval '10 minutes', now() - interval '9 minutes')`)
})
afterAll(async () => {
  await worker?.stop()
  await db?.cleanup()
})

describe('taskrelay workers', () => {
  it('lists the live workers with their queues and the tasks they hold', async () => {
    await expect.poll(async () => (await db.pool.query(`select count(*)::int as n from "${db.schema}".tasks where state = 'running'`)).rows[0].n).toBe(1)
    const res = await runCli(['workers'], env)
    expect(res.code, res.stderr).toBe(0)
    const lines = res.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^worker\s+state\s+holds\s+queues\s+started\s+last seen$/)
    expect(lines).toHaveLength(2)
    expect(lines[1]).toMatch(new RegExp(`^${worker.workerId}\\s+alive\\s+1\\s+wc\\s`))
  })

  it('--all --json adds the silent ones', async () => {
    const res = await runCli(['workers', '--all', '--json'], env)
    expect(res.code, res.stderr).toBe(0)
    const list = JSON.parse(res.stdout) as Array<{ id: string; alive: boolean; running: number; queues: string[] }>
    expect(list.map((w) => [w.id, w.alive, w.running])).toEqual([
      [worker.workerId, true, 1],
      ['wc-dead:1', false, 0],
    ])
    const text = await runCli(['workers', '--all'], env)
    expect(text.stdout).toMatch(/wc-dead:1\s+silent\s+0\s+wc\s+1h\S* ago\s+10m\S* ago/)
  })
})
