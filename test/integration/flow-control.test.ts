import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { InvalidOptionsError, defineTask } from '../../src/index.ts'
import { waitUntil } from '../support/db.ts'
import { db, finalRow, row, startPipeline, usePipeline } from '../support/pipeline.ts'

/**
 * Issue 16, flow control: pause and resume (a queue or one group), a queue's
 * global concurrency, debounce / singleton / idempotency windows under
 * concurrent enqueues, ctx.rateLimited, bad settings, and the reason
 * task_flow_reason() gives. Real Postgres and Redis, in-process relay and
 * worker (test/support/pipeline.ts); each test has a queue of its own.
 */

usePipeline()

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const tasks = () => `"${db.schema}".tasks`

async function states(ids: string[]): Promise<string[]> {
  const res = await db.pool.query<{ state: string }>(`select state from ${tasks()} where id = any($1::bigint[]) order by id`, [ids])
  return res.rows.map((r) => r.state)
}
const allSucceeded = (ids: string[]) => async () => (await states(ids)).filter((s) => s === 'succeeded').length === ids.length

async function countRows(table: 'tasks' | 'queues', column: string, value: string): Promise<number> {
  const res = await db.pool.query<{ n: string }>(`select count(*) as n from "${db.schema}".${table} where ${column} = $1`, [value])
  return Number(res.rows[0]!.n)
}

/** A task of queue `queue` that records when each run starts, then works for `ms`. */
function recorder(name: string, queue: string, ms: number) {
  const starts = new Map<string, number>()
  const task = defineTask({
    name,
    queue,
    payload: z.object({ n: z.number() }),
    async run(_p, ctx) {
      starts.set(ctx.task.id, Date.now())
      await sleep(ms)
    },
  })
  return { task, starts }
}

describe('pause and resume', () => {
  it('nothing starts later than 1 s after pause() resolved; resume() drains the backlog', async () => {
    const { task, starts } = recorder('pause.work', 'pausing', 20)
    await startPipeline([task], { concurrency: 5 })
    // A steady stream of work, before and after the pause.
    const ids: string[] = []
    let streaming = true
    const stream = (async () => {
      for (let n = 0; streaming; n++) {
        ids.push((await db.tr.enqueue(task, { n })).id)
        await sleep(10)
      }
    })()
    await waitUntil(() => starts.size >= 20, { what: 'the stream to run' })

    await db.tr.queue('pausing').pause()
    const pausedAt = Date.now()
    // Watch for 2 s (the stream keeps going for 1.5 s of it): absence of starts needs a window.
    await sleep(1500)
    streaming = false
    await stream
    await sleep(500)
    const late = [...starts.values()].filter((at) => at > pausedAt + 1000).map((at) => at - pausedAt)
    const backlog = ids.length - starts.size
    console.log(`[flow-control] pause: ${ids.length} enqueued, ${backlog} waiting at resume, last start ${Math.max(...starts.values()) - pausedAt} ms after pause()`)
    expect(late).toEqual([])
    expect(backlog).toBeGreaterThan(50)
    expect((await db.tr.queue('pausing').info())?.paused).toBe(true)

    await db.tr.queue('pausing').resume()
    await waitUntil(allSucceeded(ids), { what: 'the backlog to drain after resume()' })
    expect(starts.size).toBe(ids.length)
  })

  it("pause({ group }) holds that group's tasks while another group's run", async () => {
    const { task, starts } = recorder('pause.group', 'grouped', 5)
    await db.tr.queue('grouped').pause({ group: 'g1' })
    await startPipeline([task], { concurrency: 5 })
    const g1 = await Promise.all(Array.from({ length: 10 }, (_, n) => db.tr.enqueue(task, { n }, { groupKey: 'g1' }).then((r) => r.id)))
    const g2 = await Promise.all(Array.from({ length: 10 }, (_, n) => db.tr.enqueue(task, { n }, { groupKey: 'g2' }).then((r) => r.id)))

    await waitUntil(allSucceeded(g2), { what: "g2's tasks to run" })
    expect(await states(g1)).toEqual(Array(10).fill('pending'))
    expect(g1.filter((id) => starts.has(id))).toEqual([])
    expect((await db.tr.queue('grouped').info())?.pausedGroups).toEqual(['g1'])

    await db.tr.queue('grouped').resume({ group: 'g1' })
    await waitUntil(allSucceeded(g1), { what: "g1's tasks to run after resume" })
  })
})

describe('global concurrency', () => {
  it('concurrency 3 with a worker of 20 slots: at most 3 run at once, and 3 do', async () => {
    let active = 0
    let most = 0
    const task = defineTask({
      name: 'conc.work',
      queue: 'narrow',
      payload: z.object({ n: z.number() }),
      async run() {
        most = Math.max(most, ++active)
        await sleep(100)
        active--
      },
    })
    const info = await db.tr.queue('narrow').configure({ concurrency: 3 })
    expect(info.concurrency).toBe(3)
    await startPipeline([task], { concurrency: 20 })
    const { ids } = await db.tr.enqueueMany(Array.from({ length: 30 }, (_, n) => ({ task, payload: { n } })))
    await waitUntil(allSucceeded(ids), { what: 'the 30 tasks to run' })
    console.log(`[flow-control] concurrency 3: max overlap ${most}`)
    expect(most).toBe(3)
  })
})

describe('keyed enqueues', () => {
  it('debounce: 100 concurrent enqueues make one task; a later one replaces its payload', async () => {
    const seen: string[] = []
    const task = defineTask({
      name: 'deb.work',
      queue: 'deb',
      payload: z.object({ v: z.string() }),
      run({ v }) {
        seen.push(v)
      },
    })
    const debounce = { key: 'k1', delay: '2s' }
    // Without trx each enqueue commits on its own pool connection: real concurrency.
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => db.tr.enqueue(task, { v: `p${i}` }, { debounce })))
    expect(new Set(results.map((r) => r.id)).size).toBe(1)
    expect(results.filter((r) => r.outcome === 'created')).toHaveLength(1)
    expect(results.filter((r) => r.outcome === 'debounced')).toHaveLength(99)
    expect(await countRows('tasks', 'name', 'deb.work')).toBe(1)

    const last = await db.tr.enqueue(task, { v: 'last' }, { debounce })
    expect(last).toEqual({ id: results[0]!.id, outcome: 'debounced' })
    expect(await countRows('tasks', 'name', 'deb.work')).toBe(1)
    expect((await row(last.id)).payload).toEqual({ v: 'last' })

    // Once the delay passes it runs once, with the last payload.
    await startPipeline([task])
    expect((await finalRow(last.id)).state).toBe('succeeded')
    expect(seen).toEqual(['last'])
  })

  it('singleton: 100 concurrent enqueues make one task; after it finished, a new one', async () => {
    const task = defineTask({ name: 'single.work', queue: 'single', payload: z.object({ n: z.number() }), run() {} })
    const results = await Promise.all(Array.from({ length: 100 }, (_, n) => db.tr.enqueue(task, { n }, { singletonKey: 'one' })))
    const { id } = results[0]!
    expect(results.every((r) => r.id === id)).toBe(true)
    expect(results.filter((r) => r.outcome === 'created')).toHaveLength(1)
    expect(results.filter((r) => r.outcome === 'existing')).toHaveLength(99)
    expect(await countRows('tasks', 'name', 'single.work')).toBe(1)

    await startPipeline([task])
    expect((await finalRow(id)).state).toBe('succeeded')
    const next = await db.tr.enqueue(task, { n: 100 }, { singletonKey: 'one' })
    expect(next.outcome).toBe('created')
    expect(next.id).not.toBe(id)
  })

  it("idempotencyWindow: a repeat within the window is 'existing', after it a new task", async () => {
    const task = defineTask({ name: 'idem.work', queue: 'idem', payload: z.object({ n: z.number() }), run() {} })
    const opts = { idempotencyKey: 'w1', idempotencyWindow: '1s' }
    const first = await db.tr.enqueue(task, { n: 1 }, opts)
    expect(first.outcome).toBe('created')
    expect(await db.tr.enqueue(task, { n: 2 }, opts)).toEqual({ id: first.id, outcome: 'existing' })

    // The window is on the database clock: wait until it says so, not a fixed sleep.
    await waitUntil(async () => (await db.pool.query(`select now() > $1::timestamptz as over`, [(await row(first.id)).idempotency_expires_at])).rows[0].over, {
      what: 'the idempotency window to pass',
    })
    const after = await db.tr.enqueue(task, { n: 3 }, opts)
    expect(after.outcome).toBe('created')
    expect(after.id).not.toBe(first.id)
    expect(await countRows('tasks', 'name', 'idem.work')).toBe(2)
  })
})

describe('ctx.rateLimited', () => {
  it('runs the task again after the given time, without spending an attempt', async () => {
    const runs: Array<{ at: number; attempt: number }> = []
    const task = defineTask({
      name: 'rl.call',
      queue: 'remote',
      maxAttempts: 1,
      payload: z.object({}),
      run(_p, ctx) {
        runs.push({ at: Date.now(), attempt: ctx.attempt })
        if (runs.length === 1) ctx.rateLimited(500)
        return 'ok'
      },
    })
    await startPipeline([task])
    const { id } = await db.tr.enqueue(task, {})
    const r = await finalRow(id)
    console.log(`[flow-control] rateLimited(500): second run ${runs[1] ? runs[1].at - runs[0]!.at : '-'} ms after the first; attempts seen ${runs.map((x) => x.attempt).join(', ')}, row attempt ${r.attempt} of max ${r.max_attempts}`)
    // maxAttempts 1 and it still succeeds on the second run: the first did not count.
    expect(r.state).toBe('succeeded')
    expect(r.result).toBe('ok')
    expect(runs).toHaveLength(2)
    expect(runs[1]!.at - runs[0]!.at).toBeGreaterThanOrEqual(480)
  })
})

describe('bad input', () => {
  it('bad queue settings throw InvalidOptionsError and write no queues row', async () => {
    const cases: Array<[string, Parameters<ReturnType<typeof db.tr.queue>['configure']>[0]]> = [
      ['bad-conc', { concurrency: 0 }],
      ['bad-rate', { rateLimit: { limit: 10, per: '500ms' } }],
      ['bad-limit', { rateLimit: { limit: 0, per: '1s' } }],
      ['bad-group-rate', { groupRateLimit: { limit: 5, per: 999 } }],
    ]
    for (const [queue, settings] of cases) {
      await expect(db.tr.queue(queue).configure(settings), queue).rejects.toBeInstanceOf(InvalidOptionsError)
      expect(await countRows('queues', 'name', queue), queue).toBe(0)
    }
  })

  it('bad enqueue options throw InvalidOptionsError and write no task', async () => {
    const task = defineTask({ name: 'bad.opts', queue: 'bad', payload: z.object({}), run() {} })
    const cases: Array<[string, object]> = [
      ['groupKey not a string', { groupKey: 5 }],
      ['empty groupKey', { groupKey: '' }],
      ['groupKey over 200 chars', { groupKey: 'g'.repeat(201) }],
      ['debounce without key', { debounce: { delay: '1s' } }],
    ]
    for (const [what, options] of cases) {
      await expect(db.tr.enqueue(task, {}, options as never), what).rejects.toBeInstanceOf(InvalidOptionsError)
    }
    expect(await countRows('tasks', 'name', 'bad.opts')).toBe(0)
  })
})

describe('task_flow_reason', () => {
  it('says "at its limit of N" for a due task the queue\'s concurrency holds back', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const task = defineTask({ name: 'reason.work', queue: 'reasons', payload: z.object({ n: z.number() }), run: () => gate })
    await db.tr.queue('reasons').configure({ concurrency: 1 })
    await startPipeline([task])
    const ids = [(await db.tr.enqueue(task, { n: 1 })).id, (await db.tr.enqueue(task, { n: 2 })).id]
    const held = await waitUntil(async () => {
      const s = await states(ids)
      return s.includes('running') && s.includes('pending') ? ids[s.indexOf('pending')] : null
    }, { what: 'one running and one held back' })

    const res = await db.pool.query<{ reason: string | null }>(`select "${db.schema}".task_flow_reason($1::bigint) as reason`, [held])
    console.log(`[flow-control] task_flow_reason: ${res.rows[0]!.reason}`)
    expect(res.rows[0]!.reason).toContain('at its limit of 1')
    release()
    await waitUntil(allSucceeded(ids), { what: 'both to finish' })
  })
})
