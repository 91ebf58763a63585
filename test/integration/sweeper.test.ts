import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Sweeper } from '../../src/index.ts'
import { createTestDb, type TestDb } from '../support/db.ts'
import { HOUR, MIN, SEC, dbNow, makeTask, makeTasks, taskRow } from '../support/factory.ts'

// Crashes are tested by state: rows are written already in the state a crash
// leaves behind, with backdated timestamps, and runOnce() is called directly.
let db: TestDb

beforeAll(async () => {
  db = await createTestDb()
})
afterAll(async () => {
  await db.cleanup()
})
beforeEach(async () => {
  await db.pool.query(`delete from "${db.schema}".tasks`)
})

const settings = { dispatchTimeoutMs: 30 * SEC, retentionMs: 24 * HOUR, lostWorkerRetryDelayMs: 5 * SEC }

/** A task a live worker is running on `queue` (lease 30 s ahead). */
function runningTask(queue: string, ago: { dispatchedAgo: number; startedAgo: number }): Promise<string> {
  return makeTask(db.pool, db.schema, {
    queue,
    state: 'running',
    attempt: 1,
    dispatchedAt: dbNow(-ago.dispatchedAgo),
    startedAt: dbNow(-ago.startedAgo),
    leaseExpiresAt: dbNow(30 * SEC),
    workerId: 'w',
  })
}

describe('sweeper.runOnce', () => {
  it('puts dispatched tasks nobody claimed back to pending without using an attempt', async () => {
    const stale = await makeTask(db.pool, db.schema, { state: 'dispatched', dispatchedAt: dbNow(-5 * MIN), attempt: 1, maxAttempts: 3 })
    const fresh = await makeTask(db.pool, db.schema, { state: 'dispatched', dispatchedAt: dbNow(-1 * SEC) })
    const result = await new Sweeper(db.tr, settings).runOnce()
    expect(result.redispatched).toBe(1)
    const s = await taskRow(db.pool, db.schema, stale)
    expect(s).toMatchObject({ state: 'pending', attempt: 1, dispatch_token: null, dispatched_at: null })
    expect((await taskRow(db.pool, db.schema, fresh))!.state).toBe('dispatched')
  })

  it('leaves a deep backlog on slow workers to drain, and re-dispatches what its workers have passed', async () => {
    // Workers of 'slow' are reading messages dispatched 10 minutes ago: a task
    // dispatched 5 minutes ago is still ahead of them in the list, one from 20
    // minutes ago was passed (lost). 'idle' has nothing running: the timeout decides.
    await runningTask('slow', { dispatchedAgo: 10 * MIN, startedAgo: SEC })
    const waiting = await makeTask(db.pool, db.schema, { queue: 'slow', state: 'dispatched', dispatchedAt: dbNow(-5 * MIN) })
    const passed = await makeTask(db.pool, db.schema, { queue: 'slow', state: 'dispatched', dispatchedAt: dbNow(-20 * MIN) })
    const idle = await makeTask(db.pool, db.schema, { queue: 'idle', state: 'dispatched', dispatchedAt: dbNow(-5 * MIN) })
    // 'long' runs one six-hour task and starts nothing else: no recent evidence, the timeout decides.
    await runningTask('long', { dispatchedAgo: 6 * HOUR, startedAgo: 6 * HOUR })
    const behindLong = await makeTask(db.pool, db.schema, { queue: 'long', state: 'dispatched', dispatchedAt: dbNow(-5 * MIN) })
    const result = await new Sweeper(db.tr, settings).runOnce()
    expect(result.redispatched).toBe(3)
    expect((await taskRow(db.pool, db.schema, waiting))!.state).toBe('dispatched')
    expect((await taskRow(db.pool, db.schema, passed))!.state).toBe('pending')
    expect((await taskRow(db.pool, db.schema, idle))!.state).toBe('pending')
    expect((await taskRow(db.pool, db.schema, behindLong))!.state).toBe('pending')
  })

  it('does not prune a finished task that a waiting task depends on', async () => {
    const old = dbNow(-2 * 24 * HOUR)
    const needed = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1, finishedAt: old })
    const free = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1, finishedAt: old })
    const running = await makeTask(db.pool, db.schema, { state: 'running', attempt: 1, leaseExpiresAt: dbNow(30 * SEC) })
    const child = await makeTask(db.pool, db.schema, { state: 'waiting' })
    await db.pool.query(`insert into "${db.schema}".task_dependencies (task_id, depends_on) values ($1, $2), ($1, $3)`, [child, needed, running])
    const result = await new Sweeper(db.tr, settings).runOnce()
    expect(result.pruned).toBe(1)
    expect(await taskRow(db.pool, db.schema, free)).toBeUndefined()
    expect((await taskRow(db.pool, db.schema, needed))!.state).toBe('succeeded')
    expect((await taskRow(db.pool, db.schema, child))!.state).toBe('waiting')
  })

  it('retries running tasks whose lease expired, saying the worker was lost', async () => {
    const lost = await makeTask(db.pool, db.schema, {
      state: 'running',
      attempt: 1,
      maxAttempts: 3,
      workerId: 'host-a:123:abc',
      leaseExpiresAt: dbNow(-10 * SEC),
    })
    const alive = await makeTask(db.pool, db.schema, { state: 'running', attempt: 1, leaseExpiresAt: dbNow(20 * SEC) })
    const result = await new Sweeper(db.tr, settings).runOnce()
    expect(result).toMatchObject({ leasesReclaimed: 1, leasesFailed: 0 })
    const row = (await taskRow(db.pool, db.schema, lost))!
    expect(row.state).toBe('pending')
    expect(row.attempt).toBe(1)
    expect(row.lease_expires_at).toBeNull()
    expect(row.last_error).toMatchObject({ kind: 'lost_worker', attempt: 1 })
    expect(row.last_error!.message).toContain('host-a:123:abc')
    // Retried after lostWorkerRetryDelayMs, not at once.
    const delay = await db.pool.query(`select extract(epoch from run_at - now()) as s from "${db.schema}".tasks where id = $1`, [lost])
    expect(Number(delay.rows[0].s)).toBeGreaterThan(3)
    expect((await taskRow(db.pool, db.schema, alive))!.state).toBe('running')
  })

  it('fails lost tasks that have no attempts left', async () => {
    const id = await makeTask(db.pool, db.schema, { state: 'running', attempt: 3, maxAttempts: 3, leaseExpiresAt: dbNow(-1 * SEC) })
    const result = await new Sweeper(db.tr, settings).runOnce()
    expect(result).toMatchObject({ leasesReclaimed: 0, leasesFailed: 1 })
    const row = (await taskRow(db.pool, db.schema, id))!
    expect(row.state).toBe('failed')
    expect(row.finished_at).not.toBeNull()
    expect(row.last_error!.kind).toBe('lost_worker')
  })

  it('fails a large batch of lost tasks whose ids overflow one notification', async () => {
    // 1,000 ids of 19 digits (~20 kB) would not fit Postgres's 8000-byte NOTIFY payload in one.
    await db.pool.query(
      `insert into "${db.schema}".tasks (id, name, state, attempt, max_attempts, started_at, lease_expires_at)
       select 9000000000000000000 + g, 'sweep.lost', 'running', 1, 1, now() - interval '1 minute', now() - interval '1 second'
         from generate_series(1, 1000) g`,
    )
    const result = await new Sweeper(db.tr, settings).runOnce()
    expect(result).toMatchObject({ leasesReclaimed: 0, leasesFailed: 1000 })
    const res = await db.pool.query(`select count(*)::int as n from "${db.schema}".tasks where state = 'failed'`)
    expect(res.rows[0].n).toBe(1000)
  })

  it('prunes finished tasks past retention in batches, and nothing else', async () => {
    const old = await makeTasks(
      db.pool,
      db.schema,
      Array.from({ length: 25 }, (_, i) => ({
        state: (['succeeded', 'failed', 'cancelled'] as const)[i % 3],
        finishedAt: dbNow(-2 * 24 * HOUR),
      })),
    )
    const recent = await makeTask(db.pool, db.schema, { state: 'succeeded', finishedAt: dbNow(-1 * HOUR) })
    const oldPending = await makeTask(db.pool, db.schema, { state: 'pending', createdAt: dbNow(-30 * 24 * HOUR) })
    const result = await new Sweeper(db.tr, { ...settings, pruneBatchSize: 10 }).runOnce()
    expect(result.pruned).toBe(25)
    const left = await db.pool.query(`select id from "${db.schema}".tasks order by id`)
    expect(left.rows.map((r) => String(r.id))).toEqual([recent, oldPending])
    expect(old).toHaveLength(25)
  })

  it('several sweepers at once handle each row exactly once', async () => {
    await makeTasks(db.pool, db.schema, Array.from({ length: 300 }, () => ({ state: 'dispatched' as const, dispatchedAt: dbNow(-5 * MIN) })))
    await makeTasks(db.pool, db.schema, Array.from({ length: 300 }, () => ({ state: 'running' as const, attempt: 1, maxAttempts: 2, leaseExpiresAt: dbNow(-5 * SEC) })))
    const sweepers = [1, 2, 3, 4].map(() => new Sweeper(db.tr, settings))
    const results = await Promise.all(sweepers.map((s) => s.runOnce()))
    const total = (k: 'redispatched' | 'leasesReclaimed') => results.reduce((a, r) => a + r[k], 0)
    expect(total('redispatched')).toBe(300)
    expect(total('leasesReclaimed')).toBe(300)
    const states = await db.pool.query(`select state, count(*)::int as c from "${db.schema}".tasks group by state`)
    expect(states.rows).toEqual([{ state: 'pending', c: 600 }])
  })

  it('a worker that lost its lease cannot record an outcome over the new attempt', async () => {
    // Attempt 1 expired and was taken over: the row now runs as attempt 2.
    const id = await makeTask(db.pool, db.schema, { state: 'running', attempt: 2, maxAttempts: 3, leaseExpiresAt: dbNow(30 * SEC) })
    const { loadSql } = await import('../../src/db/sql.ts')
    const res = await db.pool.query(loadSql('task-finish-batch.sql', db.schema), [[id], [1], ['succeeded'], ['"late"'], [null], [0]])
    expect(res.rowCount).toBe(0)
    const row = (await taskRow(db.pool, db.schema, id))!
    expect(row).toMatchObject({ state: 'running', attempt: 2, result: null })
  })

  it("tells relays when a lost worker's retry is due", async () => {
    await makeTask(db.pool, db.schema, { state: 'running', attempt: 1, maxAttempts: 3, leaseExpiresAt: dbNow(-1 * SEC) })
    const client = await db.pool.connect()
    const heard: Array<{ channel: string; payload: string | undefined }> = []
    client.on('notification', (n) => heard.push({ channel: n.channel, payload: n.payload }))
    await client.query(`listen "${db.schema}.task_ready"`)
    expect(await new Sweeper(db.tr, settings).runOnce()).toMatchObject({ leasesReclaimed: 1 })
    const { waitUntil } = await import('../support/db.ts')
    await waitUntil(() => heard.length > 0 || null, { what: 'task_ready notification' })
    await client.query('unlisten *')
    client.release()
    // The payload is the delay in ms: relays wake when the retry is due, not at their next poll.
    expect(heard).toEqual([{ channel: `${db.schema}.task_ready`, payload: String(settings.lostWorkerRetryDelayMs) }])
  })

  it('wakes relays after putting tasks back', async () => {
    await makeTask(db.pool, db.schema, { state: 'dispatched', dispatchedAt: dbNow(-5 * MIN) })
    const client = await db.pool.connect()
    const heard: string[] = []
    client.on('notification', (n) => heard.push(n.channel))
    await client.query(`listen "${db.schema}.task_ready"`)
    await new Sweeper(db.tr, settings).runOnce()
    const { waitUntil } = await import('../support/db.ts')
    await waitUntil(() => heard.length > 0 || null, { what: 'task_ready notification' })
    await client.query('unlisten *')
    client.release()
    expect(heard).toEqual([`${db.schema}.task_ready`])
  })
})
