import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { pino } from 'pino'
import { Relay, Worker, defineTask } from '../../src/index.ts'
import { createTestDb, redisUrl, waitUntil, type TestDb } from '../support/db.ts'

/**
 * Issue 13, item 3: a Worker made in code serves its tasks' queues, like the
 * CLI's; one told to serve fewer says which loaded tasks it will not run; and
 * every running worker is listed in <schema>.workers with its queues, which
 * is what status and stats read.
 */
let db: TestDb
const started: Array<{ stop(): Promise<void> }> = []

beforeAll(async () => {
  db = await createTestDb()
})
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()))
})
afterAll(async () => {
  await db?.cleanup()
})

const fast = { leaseMs: 1000, heartbeatMs: 200, blockMs: 200 }
const prefix = () => `wq${randomBytes(4).toString('hex')}`

const welcome = defineTask({
  name: 'wq.welcome',
  queue: 'emails',
  payload: z.object({ to: z.string() }),
  async run({ to }) {
    return { sent: to }
  },
})
const report = defineTask({
  name: 'wq.report',
  queue: 'reports',
  payload: z.object({}),
  async run() {},
})

function capture() {
  const lines: Array<Record<string, unknown>> = []
  return { lines, logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }) }
}

const workerRows = async () =>
  (await db.pool.query<{ id: string; queues: string[]; tasks: string[] }>(`select id, queues, tasks from "${db.schema}".workers order by id`)).rows

describe('new Worker(tr, { tasks }) in code', () => {
  it("serves the tasks' queues when no queues are given, and runs a task on queue \"emails\"", async () => {
    const keyPrefix = prefix()
    const relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 })
    const worker = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks: [welcome, report], ...fast })
    started.push(relay, worker)
    expect(worker.settings.queues).toEqual(['emails', 'reports'])
    await relay.start()
    await worker.start()
    const { id } = await db.tr.enqueue(welcome, { to: 'ada@example.com' })
    const task = await waitUntil(async () => {
      const t = await db.tr.getTask(id)
      return t?.state === 'succeeded' && t
    }, { what: 'the task on queue "emails" to succeed', timeoutMs: 10_000 })
    expect(task.result).toEqual({ sent: 'ada@example.com' })
  })

  it('given explicit queues, logs which loaded tasks it will not run', async () => {
    const { lines, logger } = capture()
    const worker = new Worker(db.tr, { redis: redisUrl(), keyPrefix: prefix(), tasks: [welcome, report], queues: ['emails'], ...fast }, { logger })
    started.push(worker)
    await worker.start()
    const line = lines.find((l) => l.msg === 'some loaded tasks are on queues this worker does not serve; it will not run them')
    expect(line, JSON.stringify(lines)).toMatchObject({ level: 40, queues: ['emails'], notRun: [{ task: 'wq.report', queue: 'reports' }] })
    expect(lines.find((l) => l.msg === 'worker started')).toMatchObject({ queues: ['emails'] })
  })

  it('is listed in <schema>.workers with its queues and tasks while it runs, and removed when it stops', async () => {
    const worker = new Worker(db.tr, { redis: redisUrl(), keyPrefix: prefix(), tasks: [welcome], ...fast })
    started.push(worker)
    await worker.start()
    expect(await workerRows()).toEqual([{ id: worker.workerId, queues: ['emails'], tasks: ['wq.welcome'] }])
    const live = await db.pool.query(`select expires_at > now() as live from "${db.schema}".workers where id = $1`, [worker.workerId])
    expect(live.rows[0]).toEqual({ live: true })
    await worker.stop()
    expect(await workerRows()).toEqual([])
  })
})
