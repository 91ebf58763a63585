import { Writable } from 'node:stream'
import pg from 'pg'
import { pino } from 'pino'
import { Kysely, PostgresDialect } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ConfigError, InvalidOptionsError, Sweeper, TaskRelay, chain, defineTask, step, type TaskEvent, type TaskEventFilter, type TaskEventGap } from '../../src/index.ts'
import { databaseUrl, waitUntil } from '../support/db.ts'
import { db, startPipeline, usePipeline } from '../support/pipeline.ts'
import { runCli } from '../cli/cli-process.ts'
import { BATCH_SESSION_SQL } from '../../src/db/executor.ts'
import { loadSql } from '../../src/db/sql.ts'

/**
 * Issue 18 item 3: tr.events, task state changes from any process. The
 * pipeline (relay, worker, sweeper) runs on `db.tr`; subscribers sit on
 * `other`, a TaskRelay of its own pool, as another process would, and one
 * test has the changes made by child processes (the CLI). Real Postgres and
 * Redis.
 */

usePipeline()

const APP = `events-other-${process.pid}`
let other: TaskRelay
let otherPool: pg.Pool
const logLines: Array<{ level: number; msg: string; event?: { type: string; taskId?: string }; err?: { message: string } }> = []

beforeAll(() => {
  otherPool = new pg.Pool({ connectionString: databaseUrl(), application_name: APP, max: 4 })
  otherPool.on('error', () => {})
  const logger = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => (logLines.push(JSON.parse(String(chunk))), done()) }))
  other = new TaskRelay({ db: otherPool, schema: db.schema, logger })
})
afterAll(async () => {
  await other?.close()
  await otherPool?.end()
})

type Received = Array<TaskEvent | TaskEventGap>

async function collect(filter: TaskEventFilter, tr = other) {
  const events: Received = []
  const stop = await tr.events.subscribe(filter, (e) => void events.push(e))
  return { events, stop }
}

/** Event types per task id, in the order received. */
function sequences(events: Received): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (const e of events) if (e.type !== 'gap') (out[e.taskId] ??= []).push(e.type)
  return out
}

/** The LISTEN connections `other` holds on the events channel (pg_stat_activity). */
async function listenConnections(): Promise<number> {
  const res = await db.pool.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity where application_name = $1 and query ilike $2`,
    [APP, `listen "${db.schema}.task_events"`],
  )
  return res.rows[0]!.n
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('tr.events across processes', () => {
  it("delivers every task's changes in order: retried then succeeded, failed, progress, cancelled, and a dependent the sweeper cancels", async () => {
    let releaseProgress!: () => void
    const progressSeen = new Promise<void>((r) => (releaseProgress = r))
    const job = defineTask({
      name: 'ev.job',
      queue: 'ev',
      payload: z.object({ kind: z.enum(['flaky', 'doomed', 'progress', 'idle']) }),
      maxAttempts: 2,
      backoff: { type: 'fixed', delayMs: 10 },
      async run({ kind }, ctx) {
        if (kind === 'flaky' && ctx.attempt === 1) throw new Error('flaky once')
        if (kind === 'doomed') throw new Error(`doomed on ${ctx.attempt}`)
        if (kind === 'progress') {
          ctx.progress(40, { step: 'half' })
          await progressSeen // the subscriber saw it: the write happened before the outcome
        }
        return kind
      },
    })
    const all = await collect({ queue: 'ev' })
    const detailed = await collect({ queue: 'ev', details: true })
    const others = await collect({ queue: 'not-ev' })
    const onlyFailures = await collect({ types: ['failed', 'retried'] })
    await startPipeline([job])

    const flaky = (await db.tr.enqueue(job, { kind: 'flaky' })).id
    const doomed = (await db.tr.enqueue(job, { kind: 'doomed' })).id
    const dependent = (await db.tr.enqueue(job, { kind: 'idle' }, { dependsOn: [doomed] })).id
    const later = (await db.tr.enqueue(job, { kind: 'idle' }, { delayMs: 3_600_000 })).id
    const progress = (await db.tr.enqueue(job, { kind: 'progress' })).id
    expect(await db.tr.cancel(later)).toBe(true)
    await waitUntil(() => all.events.some((e) => e.type === 'progress'), { what: 'the progress event' })
    releaseProgress()
    await db.tr.waitFor(flaky, { timeoutMs: 15_000 })
    await db.tr.waitFor(progress, { timeoutMs: 15_000 })
    await db.tr.waitFor(doomed, { timeoutMs: 15_000 }).catch(() => {})
    await new Sweeper(db.tr).runOnce() // cancels the dependent of the failed task
    await waitUntil(() => sequences(all.events)[dependent]?.includes('cancelled'), { what: "the dependent's cancellation" })
    await sleep(200) // nothing more arrives

    expect(sequences(all.events)).toEqual({
      [flaky]: ['enqueued', 'started', 'retried', 'started', 'succeeded'],
      [doomed]: ['enqueued', 'started', 'retried', 'started', 'failed'],
      [dependent]: ['enqueued', 'cancelled'],
      [later]: ['enqueued', 'cancelled'],
      [progress]: ['enqueued', 'started', 'progress', 'succeeded'],
    })
    for (const e of all.events) {
      expect(e).toMatchObject({ queue: 'ev', at: expect.any(Date) })
      expect(e).not.toHaveProperty('details')
      expect(Object.isFrozen(e)).toBe(true)
    }
    expect(others.events).toEqual([])
    expect(sequences(onlyFailures.events)).toEqual({ [flaky]: ['retried'], [doomed]: ['retried', 'failed'] })

    // details: the row as read when the notification arrived.
    expect(sequences(detailed.events)).toEqual(sequences(all.events))
    const find = (id: string, type: string) => detailed.events.find((e): e is TaskEvent => e.type === type && e.type !== 'gap' && e.taskId === id)!
    expect(find(doomed, 'failed').details).toMatchObject({ name: 'ev.job', state: 'failed', attempt: 2, maxAttempts: 2, workflowId: null, error: { message: 'doomed on 2' } })
    expect(find(flaky, 'retried').details).toMatchObject({ name: 'ev.job', error: { message: 'flaky once', attempt: 1 } })
    expect(find(flaky, 'succeeded').details).toMatchObject({ state: 'succeeded', attempt: 2, error: null })
    expect(find(progress, 'progress').details).toMatchObject({ state: 'running', progress: { value: 40, info: { step: 'half' } } })
    expect(find(dependent, 'cancelled').details).toMatchObject({ state: 'cancelled', error: { kind: 'dependency_failed' } })
    expect(find(later, 'enqueued').details).toMatchObject({ error: null })

    for (const c of [all, detailed, others, onlyFailures]) await c.stop()
  })

  it('filters by task id, by workflow and by task name, reading each notification\'s rows once', async () => {
    const stepTask = defineTask({ name: 'evwf.step', queue: 'evwf', payload: z.object({ n: z.number() }), run: ({ n }) => n })
    const loner = defineTask({ name: 'evwf.loner', queue: 'evwf', payload: z.object({}), run: () => 'alone' })
    const { id: workflowId, taskIds } = await db.tr.enqueueWorkflow(chain(step(stepTask, { n: 1 }), step(stepTask, { n: 2 })), { name: 'evwf' })
    const outside = (await db.tr.enqueueMany([{ task: stepTask, payload: { n: 3 } }, { task: loner, payload: {} }])).ids
    // Subscribed after enqueuing: from here on, only what commits next.
    const byWorkflow = await collect({ workflowId })
    const byTask = await collect({ taskId: Number(taskIds[1]) })
    const byName = await collect({ name: 'evwf.lon*' })
    const byQueue = await collect({ queue: 'evwf', types: ['succeeded'] })
    const statements: string[] = []
    const spy = other.batchExecutor.query.bind(other.batchExecutor)
    other.batchExecutor.query = ((text: string, values?: readonly unknown[]) => (statements.push(text), spy(text, values))) as typeof spy
    try {
      await startPipeline([stepTask, loner])
      await db.tr.waitForWorkflow(workflowId, { timeoutMs: 15_000 })
      for (const id of outside) await db.tr.waitFor(id, { timeoutMs: 15_000 })
      await waitUntil(() => byQueue.events.length === 4, { what: 'four succeeded events' })
      await sleep(200)
    } finally {
      other.batchExecutor.query = spy
    }
    expect(sequences(byWorkflow.events)).toEqual({ [taskIds[0]!]: ['started', 'succeeded'], [taskIds[1]!]: ['started', 'succeeded'] })
    expect(byWorkflow.events.every((e) => e.type !== 'gap' && !('details' in e))).toBe(true) // filtered on the row, not given it
    expect(sequences(byTask.events)).toEqual({ [taskIds[1]!]: ['started', 'succeeded'] })
    expect(sequences(byName.events)).toEqual({ [outside[1]!]: ['started', 'succeeded'] })
    expect(Object.keys(sequences(byQueue.events)).sort()).toEqual([...taskIds, ...outside].sort())
    // One read per notification that some row-reading subscriber could take: never one per task or per subscriber.
    const reads = statements.filter((s) => s.includes('where id = any($1::bigint[])'))
    expect(reads.length).toBeGreaterThan(0)
    expect(reads.length).toBeLessThanOrEqual(8) // 4 tasks × (started, succeeded), fewer when batched together
    for (const c of [byWorkflow, byTask, byName, byQueue]) await c.stop()
  })

  it('reads the rows by primary key, even with a generic plan made while the table was small', async () => {
    const c = new pg.Client({ connectionString: databaseUrl() })
    await c.connect()
    try {
      await c.query(`${BATCH_SESSION_SQL}; set plan_cache_mode = force_generic_plan`)
      await c.query(`prepare rows_read as ${loadSql('task-events-rows.sql', db.schema)}`)
      const plan = (await c.query<{ 'QUERY PLAN': string }>(`explain (costs off) execute rows_read('{1,2,3}')`)).rows.map((r) => r['QUERY PLAN']).join('\n')
      expect(plan).toContain('tasks_pkey')
      expect(plan).not.toMatch(/Seq Scan/)
    } finally {
      await c.end()
    }
  })

  it('a subscriber that throws or rejects is logged and the others still get every event', async () => {
    const calls = { sync: 0, async: 0 }
    const fail = (which: 'sync' | 'async', message: string) => {
      calls[which]++
      throw new Error(message)
    }
    const stopSync = await other.events.subscribe({ queue: 'evthrow' }, () => fail('sync', 'subscriber bug'))
    const stopAsync = await other.events.subscribe({ queue: 'evthrow' }, async () => fail('async', 'async subscriber bug'))
    const good = await collect({ queue: 'evthrow' })
    const t = defineTask({ name: 'ev.throw', queue: 'evthrow', payload: z.object({}), run: () => 1 })
    const before = logLines.length
    const { ids } = await db.tr.enqueueMany([{ task: t, payload: {} }, { task: t, payload: {} }])
    await db.tr.cancel(ids[0]!)
    await waitUntil(() => good.events.length === 3, { what: 'three events for the good subscriber' })
    expect(good.events.map((e) => e.type !== 'gap' && [e.type, e.taskId])).toEqual([['enqueued', ids[0]], ['enqueued', ids[1]], ['cancelled', ids[0]]])
    // The throwing ones were called for every event too: a throw does not unsubscribe them.
    await waitUntil(() => calls.sync === 3 && calls.async === 3, { what: 'every call' })
    await waitUntil(() => logLines.length - before >= 6, { what: 'six log lines' })
    const logged = logLines.slice(before).filter((l) => l.msg === 'task event subscriber threw; the others still get the event')
    expect(logged).toHaveLength(6)
    expect(logged.every((l) => l.level === 50)).toBe(true)
    expect(logged.map((l) => l.err?.message).sort()).toEqual([...Array(3).fill('async subscriber bug'), ...Array(3).fill('subscriber bug')])
    expect(logged.map((l) => l.event?.taskId).sort()).toEqual([ids[0], ids[0], ids[0], ids[0], ids[1], ids[1]].sort())
    for (const stop of [stopSync, stopAsync, good.stop]) await stop()
  })

  it('shares one LISTEN connection, closes it with the last unsubscribe, and delivers nothing after', async () => {
    const t = defineTask({ name: 'ev.unsub', queue: 'evunsub', payload: z.object({}), run: () => 1 })
    expect(other.events.subscriptions).toBe(0)
    expect(await listenConnections()).toBe(0)
    const a = await collect({ queue: 'evunsub' })
    const b = await collect({ queue: 'evunsub' })
    expect(other.events.subscriptions).toBe(2)
    expect(await listenConnections()).toBe(1)
    const first = (await db.tr.enqueue(t, {})).id
    await waitUntil(() => a.events.length === 1 && b.events.length === 1, { what: 'both subscribers' })
    await a.stop()
    await a.stop() // twice is harmless
    const second = (await db.tr.enqueue(t, {})).id
    await waitUntil(() => b.events.length === 2, { what: 'the second event' })
    expect(a.events.map((e) => e.type !== 'gap' && e.taskId)).toEqual([first])
    expect(await listenConnections()).toBe(1)
    await b.stop()
    expect(other.events.subscriptions).toBe(0)
    await waitUntil(async () => (await listenConnections()) === 0, { what: 'the LISTEN connection to close' })
    await db.tr.enqueue(t, {})
    await sleep(200)
    expect(b.events.map((e) => e.type !== 'gap' && e.taskId)).toEqual([first, second])
  })

  it('says when events were lost: a gap after the connection came back, then delivers again', async () => {
    const t = defineTask({ name: 'ev.gap', queue: 'evgap', payload: z.object({}), run: () => 1 })
    const c = await collect({ queue: 'evgap' })
    await db.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1 and query ilike $2`, [APP, `listen "${db.schema}.task_events"`])
    const lost = (await db.tr.enqueue(t, {})).id // committed while nobody listens: lost
    await waitUntil(() => c.events.some((e) => e.type === 'gap'), { what: 'the gap event', timeoutMs: 10_000 })
    const after = (await db.tr.enqueue(t, {})).id
    await waitUntil(() => c.events.length >= 2 && c.events.at(-1)?.type === 'enqueued', { what: 'an event after the gap' })
    const gap = c.events.find((e) => e.type === 'gap')!
    expect(gap).toMatchObject({ type: 'gap', reason: 'reconnected', at: expect.any(Date) })
    const ids = c.events.filter((e): e is TaskEvent => e.type !== 'gap').map((e) => e.taskId)
    expect(ids).toContain(after)
    // The one committed in the gap may or may not have made it (the kill is not instant); if it did, before the gap.
    if (ids.includes(lost)) expect(c.events.findIndex((e) => e.type !== 'gap' && e.taskId === lost)).toBeLessThan(c.events.indexOf(gap))
    await c.stop()
  })

  it('sees changes made by other OS processes (the CLI enqueues and cancels)', async () => {
    const c = await collect({ queue: 'evcli', details: true })
    const env = { DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema }
    const enq = await runCli(['enqueue', 'evcli.remote', '{"n": 1}', '--queue', 'evcli', '--delay', '1h', '--json'], env)
    expect(enq.code, enq.stderr).toBe(0)
    const id = String((JSON.parse(enq.stdout) as { id: string | number }).id)
    const cancel = await runCli(['cancel', id], env)
    expect(cancel.code, cancel.stderr).toBe(0)
    await waitUntil(() => c.events.length === 2, { what: 'two events from the CLI' })
    expect(c.events.map((e) => e.type !== 'gap' && [e.type, e.taskId, e.details?.name])).toEqual([
      ['enqueued', id, 'evcli.remote'],
      ['cancelled', id, 'evcli.remote'],
    ])
    await c.stop()
  })

  it('refuses bad filters and handlers with InvalidOptionsError, before connecting', async () => {
    const bad: unknown[] = [
      { types: ['finished'] }, { types: [] }, { queue: 5 }, { queue: 'has space' }, { taskId: 'abc' }, { taskId: -1 },
      { workflowId: 'not-a-uuid' }, { name: 'bad name!' }, { queues: 'ev' }, { details: 'yes' }, 'ev',
    ]
    for (const filter of bad) {
      await expect(other.events.subscribe(filter as TaskEventFilter, () => {}), JSON.stringify(filter)).rejects.toBeInstanceOf(InvalidOptionsError)
    }
    await expect(other.events.subscribe({ queues: 'ev' } as TaskEventFilter, () => {})).rejects.toThrow(/unknown option "queues"; did you mean "queue"\?/)
    await expect(other.events.subscribe({ types: ['finished'] } as unknown as TaskEventFilter, () => {})).rejects.toThrow(/types\.0/)
    await expect(other.events.subscribe({}, 'nope' as unknown as () => void)).rejects.toThrow(/handler: expected a function/)
    expect(other.events.subscriptions).toBe(0)
    expect(await listenConnections()).toBe(0)
  })

  it('needs a pool (ConfigError over Kysely), and ends with close()', async () => {
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2, application_name: `${APP}-closing` })
    const kyselyTr = new TaskRelay({ db: new Kysely({ dialect: new PostgresDialect({ pool }) }), schema: db.schema })
    await expect(kyselyTr.events.subscribe({}, () => {})).rejects.toBeInstanceOf(ConfigError)
    await kyselyTr.close()
    const tr = new TaskRelay({ db: pool, schema: db.schema })
    const events: Received = []
    await tr.events.subscribe({ queue: 'evclose' }, (e) => void events.push(e))
    await tr.close()
    expect(tr.events.subscriptions).toBe(0)
    const count = async () =>
      (await db.pool.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where application_name = $1 and query ilike 'listen%'`, [`${APP}-closing`])).rows[0]!.n
    await waitUntil(async () => (await count()) === 0, { what: 'the closed LISTEN connection' })
    await expect(tr.events.subscribe({}, () => {})).rejects.toThrow(/closed/)
    await pool.end()
    expect(events).toEqual([])
  })
  it('are announced only while a TaskRelay has subscribers: its registration row (0019)', async () => {
    // A bare LISTEN, registered nowhere: it hears only what the statements announce.
    const raw = new pg.Client({ connectionString: databaseUrl() })
    await raw.connect()
    const heard: string[] = []
    raw.on('notification', (n) => heard.push((n.payload ?? '').split(' ').slice(0, 3).join(' ')))
    await raw.query(`listen "${db.schema}.task_events"`)
    const registrations = async () =>
      (await db.pool.query<{ n: number }>(`select count(*)::int as n from "${db.schema}".task_event_listeners where expires_at > now()`)).rows[0]!.n
    const job = defineTask({ name: 'ev.gated', queue: 'evgated', payload: z.object({}), async run() {} })
    await startPipeline([job])
    try {
      expect(await registrations()).toBe(0)
      const quiet = (await db.tr.enqueue(job, {})).id
      await db.tr.waitFor(quiet, { timeoutMs: 15_000 })
      await sleep(200)
      expect(heard.filter((h) => h.endsWith(` ${quiet}`))).toEqual([])

      const sub = await collect({ queue: 'evgated' })
      expect(await registrations()).toBe(1)
      const loud = (await db.tr.enqueue(job, {})).id
      await db.tr.waitFor(loud, { timeoutMs: 15_000 })
      await waitUntil(() => sequences(sub.events)[loud]?.includes('succeeded'), { what: 'the succeeded event' })
      expect(sequences(sub.events)[loud]).toEqual(['enqueued', 'started', 'succeeded'])
      // The bare LISTEN is another connection: its copy of the last event may come a moment later.
      await waitUntil(() => heard.includes(`succeeded evgated ${loud}`), { what: 'the bare LISTEN to hear the succeeded event' })
      expect(heard.filter((h) => h.endsWith(` ${loud}`))).toEqual([`enqueued evgated ${loud}`, `started evgated ${loud}`, `succeeded evgated ${loud}`])

      // The last unsubscribe removes the row: quiet again.
      await sub.stop()
      expect(await registrations()).toBe(0)
      const quietAgain = (await db.tr.enqueue(job, {})).id
      await db.tr.waitFor(quietAgain, { timeoutMs: 15_000 })
      await sleep(200)
      expect(heard.filter((h) => h.endsWith(` ${quietAgain}`))).toEqual([])
    } finally {
      await raw.end()
    }
  })
})
