import { readFileSync } from 'node:fs'
import pg from 'pg'
import { describe, expect, it, onTestFinished } from 'vitest'
import { z } from 'zod'
import { InvalidOptionsError, Sweeper, defineTask } from '../../src/index.ts'
import { databaseUrl, waitUntil } from '../support/db.ts'
import { HOUR, SEC, dbNow, makeTask } from '../support/factory.ts'
import { db, startPipeline, usePipeline } from '../support/pipeline.ts'

/**
 * Issue 18 items 1 and 2: one row per attempt (task_attempts, written by the
 * statements that record outcomes), readable through getTask(id, { attempts:
 * true }) and the task_attempt_history view; ctx.progress persisted,
 * throttled, and reset when a new attempt starts. Real Postgres and Redis.
 */

usePipeline()

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const sweepSettings = { dispatchTimeoutMs: 30 * SEC, retentionMs: 24 * HOUR, lostWorkerRetryDelayMs: 5 * SEC }

async function viewRows(id: string) {
  const res = await db.pool.query<{ attempt: number; outcome: string; worker_id: string | null }>(
    `select attempt, outcome, worker_id from "${db.schema}".task_attempt_history where task_id = $1 order by attempt`,
    [id],
  )
  return res.rows
}

async function storedAttempts(ids: string[]) {
  const res = await db.pool.query<{ task_id: string; attempt: number; outcome: string }>(
    `select task_id::text, attempt, outcome from "${db.schema}".task_attempts where task_id = any($1::bigint[]) order by task_id, attempt`,
    [ids],
  )
  return res.rows.map((r) => [r.task_id, r.attempt, r.outcome])
}

describe('attempt history', () => {
  it('keeps every attempt of a retried task, with its worker, times and error; the view agrees', async () => {
    const flaky = defineTask({
      name: 'history.flaky',
      queue: 'history',
      payload: z.object({ failTimes: z.number() }),
      maxAttempts: 3,
      backoff: { type: 'fixed', delayMs: 10 },
      async run({ failTimes }, ctx) {
        await sleep(20)
        if (ctx.attempt <= failTimes) throw new Error(`boom on attempt ${ctx.attempt}`)
        return { ok: ctx.attempt }
      },
    })
    const { worker } = await startPipeline([flaky])
    const { id: retried } = await db.tr.enqueue(flaky, { failTimes: 1 })
    const { id: failed } = await db.tr.enqueue(flaky, { failTimes: 5 })
    await db.tr.waitFor(retried, { timeoutMs: 15_000 })
    await db.tr.waitFor(failed, { timeoutMs: 15_000 }).catch(() => {})

    const rec = (await db.tr.getTask(retried, { attempts: true }))!
    expect(rec.attempts!.map((a) => a.outcome)).toEqual(['retry', 'succeeded'])
    const [first, second] = rec.attempts!
    expect(first).toMatchObject({ attempt: 1, workerId: worker.workerId, error: { message: 'boom on attempt 1', attempt: 1 } })
    expect(second).toMatchObject({ attempt: 2, workerId: worker.workerId, error: null })
    for (const a of rec.attempts!) {
      expect(a.finishedAt!.getTime()).toBeGreaterThanOrEqual(a.startedAt!.getTime())
      expect(a.durationMs).toBeGreaterThanOrEqual(15)
    }
    expect(second!.startedAt!.getTime()).toBeGreaterThanOrEqual(first!.finishedAt!.getTime())

    const failedRec = (await db.tr.getTask(failed, { attempts: true }))!
    expect(failedRec.state).toBe('failed')
    expect(failedRec.attempts!.map((a) => [a.attempt, a.outcome, a.error?.message])).toEqual([
      [1, 'retry', 'boom on attempt 1'],
      [2, 'retry', 'boom on attempt 2'],
      [3, 'failed', 'boom on attempt 3'],
    ])
    expect(await viewRows(failed)).toEqual([
      { attempt: 1, outcome: 'retry', worker_id: worker.workerId },
      { attempt: 2, outcome: 'retry', worker_id: worker.workerId },
      { attempt: 3, outcome: 'failed', worker_id: worker.workerId },
    ])
    // The README's query of the view, as printed there.
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
    const section = readme.slice(readme.indexOf('### Attempt history'))
    const query = /```sql\n([\s\S]*?)```/.exec(section)![1]!
    const fromReadme = await db.pool.query(query.replaceAll('taskrelay.', `"${db.schema}".`).replace('task_id = 42', 'task_id = $1'), [failed])
    expect(fromReadme.rows.map((r) => [r.attempt, r.outcome, r.error])).toEqual([
      [1, 'retry', 'boom on attempt 1'],
      [2, 'retry', 'boom on attempt 2'],
      [3, 'failed', 'boom on attempt 3'],
    ])
    // Without the option the record has no attempts key: the plain read stays one row.
    expect(await db.tr.getTask(retried)).not.toHaveProperty('attempts')
    // Only attempts that did not finish their task are rows of task_attempts (0018): the
    // last one is the task row itself, so a task done in one attempt costs no insert.
    expect(await storedAttempts([retried, failed])).toEqual([
      [retried, 1, 'retry'],
      [failed, 1, 'retry'],
      [failed, 2, 'retry'],
    ])

    // retry() of the failed task keeps its failed attempt 3 when attempt 4 starts.
    expect(await db.tr.retry(failed)).toBe(true)
    await waitUntil(async () => (await db.tr.getTask(failed))?.state === 'failed' && (await db.tr.getTask(failed))!.attempt === 4, {
      what: 'attempt 4 to fail',
      timeoutMs: 15_000,
    })
    expect((await db.tr.getTask(failed, { attempts: true }))!.attempts!.map((a) => [a.attempt, a.outcome, a.error?.message])).toEqual([
      [1, 'retry', 'boom on attempt 1'],
      [2, 'retry', 'boom on attempt 2'],
      [3, 'failed', 'boom on attempt 3'],
      [4, 'failed', 'boom on attempt 4'],
    ])
  })

  it('shows a success written in the caller’s transaction (ctx.complete)', async () => {
    const inTx = defineTask({
      name: 'history.in-tx',
      queue: 'history',
      payload: z.object({}),
      async run(_p, ctx) {
        const client = await db.pool.connect()
        try {
          await client.query('begin')
          await ctx.complete(client, { saved: true })
          await client.query('commit')
        } finally {
          client.release()
        }
      },
    })
    const { worker } = await startPipeline([inTx])
    const { id } = await db.tr.enqueue(inTx, {})
    await db.tr.waitFor(id, { timeoutMs: 15_000 })
    expect((await db.tr.getTask(id, { attempts: true }))!.attempts).toEqual([
      expect.objectContaining({ attempt: 1, outcome: 'succeeded', workerId: worker.workerId, error: null }),
    ])
  })

  it("records a lost worker's attempt and a cancelled running attempt; shows the running attempt", async () => {
    const lost = await makeTask(db.pool, db.schema, {
      state: 'running', attempt: 1, maxAttempts: 3, workerId: 'gone-worker',
      startedAt: dbNow(-90 * SEC), leaseExpiresAt: dbNow(-1 * SEC),
    })
    const running = await makeTask(db.pool, db.schema, {
      state: 'running', attempt: 2, maxAttempts: 3, workerId: 'w-live',
      startedAt: dbNow(-2 * SEC), leaseExpiresAt: dbNow(30 * SEC),
    })
    await new Sweeper(db.tr, sweepSettings).runOnce()
    const lostRec = (await db.tr.getTask(lost, { attempts: true }))!
    expect(lostRec.state).toBe('pending')
    expect(lostRec.attempts).toEqual([
      expect.objectContaining({ attempt: 1, outcome: 'lost', workerId: 'gone-worker', error: expect.objectContaining({ kind: 'lost_worker' }) }),
    ])

    // The attempt in progress is the task row itself: 'running', no finish, no duration.
    expect((await db.tr.getTask(running, { attempts: true }))!.attempts).toEqual([
      expect.objectContaining({ attempt: 2, outcome: 'running', workerId: 'w-live', finishedAt: null, durationMs: null }),
    ])
    expect(await db.tr.cancel(running)).toBe(true)
    expect((await db.tr.getTask(running, { attempts: true }))!.attempts).toEqual([
      expect.objectContaining({ attempt: 2, outcome: 'cancelled', workerId: 'w-live' }),
    ])
  })

  it('goes with its task when the sweeper prunes it', async () => {
    const old = dbNow(-2 * 24 * HOUR)
    const id = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1, finishedAt: old })
    await db.pool.query(
      `insert into "${db.schema}".task_attempts (task_id, attempt, worker_id, started_at, finished_at, outcome)
       values ($1, 1, 'w', now() - interval '2 days', now() - interval '2 days', 'succeeded')`,
      [id],
    )
    const kept = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1, finishedAt: dbNow(-1 * SEC) })
    await db.pool.query(
      `insert into "${db.schema}".task_attempts (task_id, attempt, outcome) values ($1, 1, 'succeeded')`,
      [kept],
    )
    const result = await new Sweeper(db.tr, sweepSettings).runOnce()
    expect(result.pruned).toBeGreaterThanOrEqual(1)
    const left = await db.pool.query<{ task_id: string }>(
      `select task_id::text from "${db.schema}".task_attempts where task_id = any($1::bigint[])`,
      [[id, kept]],
    )
    expect(left.rows.map((r) => r.task_id)).toEqual([kept])
  })
})

describe('ctx.progress', () => {
  it('is written while the attempt runs, throttled, and starts again empty on the next attempt', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const badValues: string[] = []
    const job = defineTask({
      name: 'progress.job',
      queue: 'progress',
      payload: z.object({}),
      maxAttempts: 2,
      backoff: { type: 'fixed', delayMs: 10 },
      async run(_p, ctx) {
        for (const bad of [-1, 101, Number.NaN]) {
          try {
            ctx.progress(bad)
          } catch (err) {
            if (err instanceof InvalidOptionsError) badValues.push(String(bad))
          }
        }
        try {
          ctx.progress(10, { blob: 'x'.repeat(9000) })
        } catch (err) {
          if (err instanceof InvalidOptionsError) badValues.push('info over 8 KiB')
        }
        if (ctx.attempt === 1) {
          for (let v = 1; v <= 40; v++) ctx.progress(v, { step: `s${v}` })
          await gate
          throw new Error('first attempt fails after reporting 40 %')
        }
        await sleep(1500) // long enough for the throttled writer to flush once, had anything been reported
        return 'done'
      },
    })
    const listener = new pg.Client({ connectionString: databaseUrl() })
    await listener.connect()
    const progressEvents: string[] = []
    listener.on('notification', (n) => {
      const [event, , ids] = (n.payload ?? '').split(' ')
      if (event === 'progress') progressEvents.push(...ids!.split(','))
    })
    await listener.query(`listen "${db.schema}.task_events"`)
    onTestFinished(() => listener.end())
    await startPipeline([job])
    const { id } = await db.tr.enqueue(job, {})
    const seen = await waitUntil(async () => {
      const p = (await db.tr.getTask(id))!.progress
      return p && p.value === 40 ? p : null
    }, { what: 'progress 40 in the task row', timeoutMs: 10_000 })
    expect(seen.info).toEqual({ step: 's40' })
    expect(Number.isNaN(Date.parse(seen.at))).toBe(false)
    expect(badValues).toEqual(['-1', '101', 'NaN', 'info over 8 KiB'])

    // 40 reports in one tick are one write: count the 'progress' events of this task for a while.
    await sleep(2500)
    expect(progressEvents.filter((e) => e === id)).toHaveLength(1)

    release()
    await db.tr.waitFor(id, { timeoutMs: 15_000 })
    const done = (await db.tr.getTask(id, { attempts: true }))!
    expect(done.attempts!.map((a) => a.outcome)).toEqual(['retry', 'succeeded'])
    // Attempt 2 reported nothing: the first attempt's 40 % is not shown as its progress.
    expect(done.progress).toBeNull()
  })

  it("reaches waitFor's onProgress, each written report once, in order", async () => {
    const steps = defineTask({
      name: 'progress.steps',
      queue: 'progress-steps',
      payload: z.object({}),
      async run(_p, ctx) {
        await sleep(300) // waitFor is listening by then
        for (const value of [25, 50, 75]) {
          ctx.progress(value, { value })
          await sleep(1200) // past the writer's 1 s throttle: every report is written
        }
        return 'ok'
      },
    })
    await startPipeline([steps])
    const { id } = await db.tr.enqueue(steps, {})
    const seen: number[] = []
    const done = await db.tr.waitFor(id, { timeoutMs: 20_000, onProgress: (p) => void seen.push(p.value) })
    expect(done.state).toBe('succeeded')
    expect(seen).toEqual([25, 50, 75])
    expect(done.progress).toMatchObject({ value: 75, info: { value: 75 } })
    // The subscription ended with the wait.
    expect(db.tr.events.subscriptions).toBe(0)
    await expect(db.tr.waitFor(id, { onProgress: 'nope' as never })).rejects.toBeInstanceOf(InvalidOptionsError)
  })
})
