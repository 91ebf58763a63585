import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { InvalidOptionsError, Worker, defineTask } from '../../src/index.ts'
import { createTestDb, databaseUrl, type TestDb } from '../support/db.ts'
import { runCli } from './cli-process.ts'

/**
 * Issue 16: `taskrelay queues list|set|pause|resume`, settings declared in
 * defineTask({ queueSettings }) and synced when a worker starts, and the
 * `status` line that says why a due task waits.
 */
let db: TestDb
let env: Record<string, string>

const mail = defineTask({ name: 'qc.mail', queue: 'qc-mail', payload: z.object({}), queueSettings: { concurrency: 3 }, run: () => {} })

beforeAll(async () => {
  db = await createTestDb()
  env = { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema }
})
afterAll(async () => {
  await db?.cleanup()
})

const row = async (name: string) => (await db.pool.query(`select concurrency, rate_limit, rate_per_ms, paused, source from "${db.schema}".queues where name = $1`, [name])).rows[0]

describe('taskrelay queues', () => {
  it('refuses an unknown queue with exit 2 and writes nothing; bad values too', async () => {
    for (const args of [['queues', 'set', 'nope', '--concurrency', '2'], ['queues', 'pause', 'nope']]) {
      const res = await runCli(args, env)
      expect(res.code).toBe(2)
      expect(res.stderr).toMatch(/no such queue "nope"/)
    }
    for (const args of [['queues', 'set', 'nope', '--create', '--concurrency', '0'], ['queues', 'set', 'nope', '--create', '--rate', '10/500ms'], ['queues', 'set', 'nope', '--create', '--rate', 'lots']]) {
      const res = await runCli(args, env)
      expect(res.code, res.stderr).toBe(2)
    }
    expect(await row('nope')).toBeUndefined()
  })

  it('worker start syncs declared settings; CLI changes are kept over them; pause shows in list and status', async () => {
    const worker = new Worker(db.tr, { tasks: [mail], lane: 'postgres', shutdownGraceMs: 0 })
    await worker.start()
    await worker.stop()
    expect(await row('qc-mail')).toMatchObject({ concurrency: 3, source: 'code', paused: false })

    const set = await runCli(['queues', 'set', 'qc-mail', '--concurrency', '7', '--rate', '100/1m'], env)
    expect(set.code, set.stderr).toBe(0)
    expect(await row('qc-mail')).toMatchObject({ concurrency: 7, rate_limit: 100, rate_per_ms: '60000', source: 'runtime' })
    // A worker starting with code that declares 3 keeps the run-time 7.
    const again = new Worker(db.tr, { tasks: [mail], lane: 'postgres', shutdownGraceMs: 0 })
    await again.start()
    await again.stop()
    expect(await row('qc-mail')).toMatchObject({ concurrency: 7, source: 'runtime' })

    expect((await runCli(['queues', 'pause', 'qc-mail'], env)).code).toBe(0)
    const { id } = await db.tr.enqueue(mail, {})
    const list = await runCli(['queues', 'list'], env)
    expect(list.stdout).toMatch(/qc-mail\s+paused\s+7\s+100\/1m/)
    const status = await runCli(['status', id], env)
    expect(status.stdout).toMatch(/waiting\s+queue qc-mail is paused/)
    const resumed = await runCli(['queues', 'resume', 'qc-mail'], env)
    expect(resumed.stdout).toMatch(/queue "qc-mail" resumed/)
    expect(await row('qc-mail')).toMatchObject({ paused: false })
  })

  it('two tasks of one queue declaring different settings: the worker refuses to start', () => {
    const other = defineTask({ name: 'qc.other', queue: 'qc-mail', payload: z.object({}), queueSettings: { concurrency: 4 }, run: () => {} })
    expect(() => new Worker(db.tr, { tasks: [mail, other], lane: 'postgres' })).toThrow(InvalidOptionsError)
  })
})
