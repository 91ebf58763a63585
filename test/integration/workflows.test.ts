import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import {
  InvalidWorkflowError,
  NonRetryableError,
  Sweeper,
  Worker,
  WorkflowFailedError,
  chain,
  chord,
  defineTask,
  group,
  previousResult,
  step,
} from '../../src/index.ts'
import { createTestDb, waitUntil, type TestDb } from '../support/db.ts'

/**
 * Issue 15, items 2–4, 6, 7: chains pass results, groups gather them in
 * order, chords call back once, a failed step runs the compensations of the
 * completed steps in reverse order and the error callback; all written in
 * the caller's transaction. Real Postgres, a real worker and sweeper.
 */
let db: TestDb
const started: Array<{ stop(): Promise<void> }> = []
const ran: string[] = []

beforeAll(async () => {
  db = await createTestDb()
})
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()))
})
afterAll(async () => {
  await db?.cleanup()
})

const add = defineTask({ name: 'wf.add', queue: 'wf', payload: z.object({ a: z.number(), b: z.number() }), run: ({ a, b }) => a + b })
const double = defineTask({ name: 'wf.double', queue: 'wf', payload: z.number(), run: (n) => n * 2 })
const describeIt = defineTask({ name: 'wf.describe', queue: 'wf', payload: z.number(), run: (n) => ({ text: `n=${n}` }) })
const sum = defineTask({ name: 'wf.sum', queue: 'wf', payload: z.array(z.number()), run: (ns) => ns.reduce((s, n) => s + n, 0) })
const book = defineTask({
  name: 'wf.book',
  queue: 'wf',
  payload: z.object({ what: z.string(), fail: z.boolean().default(false) }),
  maxAttempts: 1,
  run: ({ what, fail }) => {
    ran.push(`book ${what}`)
    if (fail) throw new NonRetryableError(`no ${what} available`)
    return what
  },
})
const unbook = defineTask({ name: 'wf.unbook', queue: 'wf', payload: z.object({ what: z.string() }), run: ({ what }) => void ran.push(`unbook ${what}`) })
const alert = defineTask({
  name: 'wf.alert',
  queue: 'wf',
  payload: z.object({ workflowId: z.string(), failedTaskId: z.string(), error: z.string() }).passthrough(),
  run: (p) => void ran.push(`alert ${p.error}`),
})

/** Item 5: a step that grows its own workflow, atomically with its completion. */
const grow = defineTask({
  name: 'wf.grow',
  queue: 'wf',
  payload: z.object({ by: z.number() }),
  async run({ by }, ctx) {
    const client = await db.pool.connect()
    try {
      await client.query('begin')
      await db.tr.enqueueWorkflow(client, chain(step(add, { a: by, b: 2 }), step(double)), { addTo: ctx.task.workflowId! })
      await ctx.complete(client, 'grown')
      await client.query('commit')
    } finally {
      client.release()
    }
  },
})

async function start(): Promise<void> {
  const worker = new Worker(db.tr, { tasks: [add, double, describeIt, sum, book, unbook, alert, grow], lane: 'postgres', concurrency: 4 })
  const sweeper = new Sweeper(db.tr, { intervalMs: 200 })
  started.push(worker, sweeper)
  await worker.start()
  await sweeper.start()
}

describe('workflows', () => {
  it('a chain of 3 passes results along; rolled back with the caller, nothing of it exists', async () => {
    const flow = chain(step(add, { a: 2, b: 3 }), step(double), step(describeIt))
    const client = await db.pool.connect()
    try {
      await client.query('begin')
      const { id: undone } = await db.tr.enqueueWorkflow(client, flow, { name: 'rolled back' })
      await client.query('rollback')
      expect(await db.tr.getWorkflow(undone)).toBeNull()
      expect((await db.pool.query(`select count(*)::int as n from "${db.schema}".tasks`)).rows[0].n).toBe(0)
    } finally {
      client.release()
    }
    await start()
    const { id, taskIds } = await db.tr.enqueueWorkflow(flow)
    expect(await db.tr.waitForWorkflow(id, { timeoutMs: 20_000 })).toEqual({ text: 'n=10' })
    const wf = (await db.tr.getWorkflow(id))!
    expect(wf.state).toBe('succeeded')
    expect(wf.counts).toMatchObject({ total: 3, succeeded: 3 })
    expect(wf.tasks.map((t) => t.id)).toEqual(taskIds)
    const rows = await db.pool.query(`select count(*)::int as n from "${db.schema}".tasks where workflow_id = $1`, [id])
    expect(rows.rows[0].n).toBe(3)
  })

  it('a chord gathers its members results in member order and calls back once; nesting works', async () => {
    await start()
    const members = Array.from({ length: 12 }, (_, i) => chain(step(add, { a: i, b: 0 }), step(double)))
    const { id } = await db.tr.enqueueWorkflow(chord(group(...members), step(sum)))
    expect(await db.tr.waitForWorkflow(id, { timeoutMs: 20_000 })).toBe(2 * (0 + 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11))
    const callback = await db.pool.query(`select payload from "${db.schema}".tasks where workflow_id = $1 and name = 'wf.sum'`, [id])
    expect(callback.rows).toEqual([{ payload: Array.from({ length: 12 }, (_, i) => 2 * i) }])
    // A chain ending with a group: the workflow's result is the list.
    const { id: fan } = await db.tr.enqueueWorkflow(chain(step(add, { a: 1, b: 1 }), group(step(double), step(describeIt))))
    expect(await db.tr.waitForWorkflow(fan, { timeoutMs: 20_000 })).toEqual([4, { text: 'n=2' }])
  })

  it('a failed third step runs the compensations of steps 2 and 1, in that order, once each, then the error callback', async () => {
    await start()
    const flow = chain(
      step(book, { what: 'flight' }, { compensate: step(unbook, { what: 'flight' }) }),
      step(book, { what: 'hotel' }, { compensate: step(unbook, { what: 'hotel' }) }),
      step(book, { what: 'car', fail: true }, { compensate: step(unbook, { what: 'car' }) }),
      step(book, { what: 'dinner' }),
    )
    ran.length = 0
    const { id } = await db.tr.enqueueWorkflow(flow, { onError: step(alert, { workflowId: '', failedTaskId: '', error: '' }) })
    await expect(db.tr.waitForWorkflow(id, { timeoutMs: 20_000 })).rejects.toThrow(WorkflowFailedError)
    await waitUntil(async () => (await db.tr.getWorkflow(id))!.finishedAt !== null, { what: 'the workflow closed', timeoutMs: 20_000 })
    expect(ran.filter((r) => !r.startsWith('alert'))).toEqual(['book flight', 'book hotel', 'book car', 'unbook hotel', 'unbook flight'])
    expect(ran.filter((r) => r.startsWith('unbook'))).toEqual(['unbook hotel', 'unbook flight'])
    expect(ran.filter((r) => r.startsWith('alert'))).toEqual(['alert no car available'])
    expect(ran).not.toContain('book dinner')
    const wf = (await db.tr.getWorkflow(id))!
    expect(wf.state).toBe('failed')
    expect(wf.failedError).toBe('no car available')
    expect(wf.tasks.find((t) => t.id === wf.failedTaskId)?.name).toBe('wf.book')
  })

  it('retrying the failed step revives what its failure cancelled; cancelWorkflow cancels what is left', async () => {
    await start()
    const { id, taskIds } = await db.tr.enqueueWorkflow(chain(step(book, { what: 'boat', fail: true }), step(book, { what: 'pier' }), step(book, { what: 'sail' })))
    await waitUntil(async () => (await db.tr.getWorkflow(id))!.counts.cancelled === 2, { what: 'the steps after the failure cancelled', timeoutMs: 20_000 })
    // The step now succeeds (a fixed bug): its payload says not to fail.
    await db.pool.query(`update "${db.schema}".tasks set payload = '{"what": "boat"}' where id = $1`, [taskIds[0]])
    expect(await db.tr.retry(taskIds[0]!)).toBe(true)
    expect(await db.tr.waitForWorkflow(id, { timeoutMs: 20_000 })).toBe('sail')
    expect((await db.tr.getWorkflow(id))!.state).toBe('succeeded')

    const { id: slow } = await db.tr.enqueueWorkflow(chain(step(add, { a: 1, b: 1 }, { delayMs: 60_000 }), step(double), step(double)))
    expect(await db.tr.cancelWorkflow(slow)).toBe(3)
    const cancelled = (await db.tr.getWorkflow(slow))!
    expect(cancelled.state).toBe('cancelled')
    expect(cancelled.counts.cancelled).toBe(3)
    await expect(db.tr.waitForWorkflow(slow, { timeoutMs: 5000 })).rejects.toThrow(WorkflowFailedError)
  })

  it('a step adds steps to its own workflow in the transaction it completes in', async () => {
    await start()
    const { id } = await db.tr.enqueueWorkflow(step(grow, { by: 40 }))
    expect(await db.tr.waitForWorkflow(id, { timeoutMs: 20_000 })).toBe('grown')
    await waitUntil(async () => (await db.tr.getWorkflow(id))!.counts.succeeded === 3, { what: 'the added steps ran', timeoutMs: 20_000 })
    const wf = (await db.tr.getWorkflow(id))!
    expect(wf.tasks.map((t) => t.name)).toEqual(['wf.grow', 'wf.add', 'wf.double'])
    const doubled = await db.pool.query(`select result from "${db.schema}".tasks where workflow_id = $1 and name = 'wf.double'`, [id])
    expect(doubled.rows).toEqual([{ result: 84 }])
    await expect(db.tr.enqueueWorkflow(step(add, { a: 1, b: 1 }), { addTo: '00000000-0000-4000-8000-000000000000' })).rejects.toThrow(/no workflow has the id/)
  })

  it('from SQL: a chain with a group, fed results, and 22023 for bad input with nothing written', async () => {
    await start()
    const client = await db.pool.connect()
    let id: string
    try {
      await client.query('begin')
      id = (
        await client.query<{ id: string }>(`select "${db.schema}".enqueue_workflow($1::jsonb, 'from sql') as id`, [
          JSON.stringify([{ task: 'wf.add', payload: { a: 1, b: 2 } }, { group: [{ task: 'wf.double' }, { task: 'wf.double' }] }, { task: 'wf.sum' }]),
        ])
      ).rows[0]!.id
      await client.query('commit')
    } finally {
      client.release()
    }
    expect(await db.tr.waitForWorkflow(id, { timeoutMs: 20_000 })).toBe(12)
    expect((await db.tr.getWorkflow(id))!.name).toBe('from sql')
    const before = (await db.pool.query(`select count(*)::int as n from "${db.schema}".workflows`)).rows[0].n
    for (const bad of ['[]', '[{"task": "wf.double"}]', '[{"group": []}]', '[{"payload": {}}]']) {
      await expect(db.pool.query(`select "${db.schema}".enqueue_workflow($1::jsonb)`, [bad])).rejects.toMatchObject({ code: '22023' })
    }
    expect((await db.pool.query(`select count(*)::int as n from "${db.schema}".workflows`)).rows[0].n).toBe(before)
  })

  it('refuses bad workflows with a typed error before writing anything', async () => {
    const before = (await db.pool.query(`select count(*)::int as n from "${db.schema}".workflows`)).rows[0].n
    const bad = [
      group(), // an empty group
      chain(step(double)), // a fed step with nothing before it
      chain(step(add, { a: 1, b: 'x' as unknown as number })), // a payload its schema refuses
      chain(step({ name: 'not.a.task' } as unknown as typeof add, { a: 1, b: 1 })),
      group(...Array.from({ length: 10_001 }, () => step(add, { a: 1, b: 1 }))),
    ]
    for (const flow of bad) {
      await expect(db.tr.enqueueWorkflow(flow as never)).rejects.toThrow(InvalidWorkflowError)
    }
    const after = (await db.pool.query(`select count(*)::int as n from "${db.schema}".workflows`)).rows[0].n
    expect(after).toBe(before)
    // @ts-expect-error a step fed a { text } object cannot take it as a number
    chain(step(describeIt, 1), step(double)) satisfies Parameters<typeof db.tr.enqueueWorkflow>[0]
    void previousResult
  })
})
