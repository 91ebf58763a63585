import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { bucketOf, bucketUpperMs, histPercentile } from '../../src/admin/charts.ts'
import { RollupWriter } from '../../src/sweeper/rollup-writer.ts'
import { Sweeper } from '../../src/index.ts'
import { createTestDb, type TestDb } from '../support/db.ts'
import { MIN, SEC, dbNow, makeTasks } from '../support/factory.ts'

// The sweeper's rollups (0017) against a truth computed from the rows.
let db: TestDb
beforeAll(async () => {
  db = await createTestDb()
})
afterAll(async () => {
  await db.cleanup()
})
beforeEach(async () => {
  await db.pool.query(`delete from "${db.schema}".tasks; delete from "${db.schema}".task_rollups;
                       update "${db.schema}".task_rollup_watermark set upto = now() - interval '25 minutes'`)
})

type Final = 'succeeded' | 'failed' | 'cancelled'
/** A finished task: due `waitMs` before it started, ran `runMs`, finished `agoMs` ago. */
function done(queue: string, state: Final, agoMs: number, waitMs: number, runMs: number) {
  const startedAgo = agoMs + runMs
  return { queue, state, attempt: 1, createdAt: dbNow(-startedAgo - waitMs), runAt: dbNow(-startedAgo - waitMs), startedAt: dbNow(-startedAgo), finishedAt: dbNow(-agoMs) }
}

/** Deterministic spread: 600 tasks over 20 minutes, three queues, waits and runs from 0.3 ms to 40 s. */
function seed() {
  const states: Final[] = ['succeeded', 'succeeded', 'succeeded', 'failed', 'cancelled']
  return Array.from({ length: 600 }, (_, i) =>
    done(['a', 'b', 'c'][i % 3]!, states[i % 5]!, 2 * MIN + ((i * 7919) % (20 * MIN)), 0.3 * 1.03 ** (i % 400), 1.5 * 1.025 ** ((i * 13) % 420)),
  )
}

const truthSql = (schema: string) => `
  select date_trunc('minute', finished_at) as minute, queue,
         count(*) filter (where state = 'succeeded')::int as succeeded,
         count(*) filter (where state = 'failed')::int as failed,
         count(*) filter (where state = 'cancelled')::int as cancelled
    from "${schema}".tasks group by 1, 2 order by 1, 2`

async function rollups() {
  const res = await db.pool.query(`select minute, queue, succeeded, failed, cancelled, wait_hist, run_hist from "${db.schema}".task_rollups order by 1, 2`)
  return res.rows as Array<{ minute: Date; queue: string; succeeded: number; failed: number; cancelled: number; wait_hist: number[]; run_hist: number[] }>
}

describe('RollupWriter', () => {
  it('counts each finished task once per minute and queue, with percentiles exact to the bucket', async () => {
    await makeTasks(db.pool, db.schema, seed())
    const r = await new RollupWriter(db.tr, { chunkMs: 60 * MIN }).write()
    expect(r.tasks).toBe(600)
    const got = await rollups()
    const truth = (await db.pool.query(truthSql(db.schema))).rows
    expect(got.map(({ minute, queue, succeeded, failed, cancelled }) => ({ minute, queue, succeeded, failed, cancelled }))).toEqual(truth)
    // Percentiles of everything of queue a, merged over every minute, against the rows.
    for (const [col, expr] of [['wait_hist', 'started_at - run_at'], ['run_hist', 'finished_at - started_at']] as const) {
      const merged = new Array<number>(64).fill(0)
      for (const row of got.filter((x) => x.queue === 'a')) row[col].forEach((n, i) => (merged[i]! += n))
      for (const p of [0.5, 0.95]) {
        const exact = (await db.pool.query(
          `select percentile_disc($1) within group (order by extract(epoch from ${expr}) * 1000)::float8 as v
             from "${db.schema}".tasks where queue = 'a' and state <> 'cancelled'`, [p])).rows[0].v as number
        const reported = histPercentile(merged, p)!
        expect(reported).toBe(bucketUpperMs(bucketOf(exact)))
        expect(exact).toBeLessThanOrEqual(reported)
        expect(exact).toBeGreaterThanOrEqual(reported / Math.SQRT2 - 1e-9)
      }
    }
  })

  it('adds a later pass into the same minute rows, and counts nothing twice', async () => {
    await makeTasks(db.pool, db.schema, seed().slice(0, 300))
    const w = new RollupWriter(db.tr, { chunkMs: 60 * MIN })
    await w.write()
    expect((await w.write()).tasks).toBe(0)
    // Rows finished after the watermark (as a later finish would be) land in existing minutes.
    await db.pool.query(`update "${db.schema}".task_rollup_watermark set upto = now() - interval '40 minutes'`)
    await db.pool.query(`delete from "${db.schema}".task_rollups`)
    await w.write()
    const before = await rollups()
    await makeTasks(db.pool, db.schema, seed().slice(300))
    await db.pool.query(`update "${db.schema}".task_rollup_watermark set upto = now() - interval '40 minutes'`)
    await db.pool.query(`delete from "${db.schema}".task_rollups`)
    await w.write()
    expect((await rollups()).map(({ succeeded, failed, cancelled }) => succeeded + failed + cancelled).reduce((a, b) => a + b, 0)).toBe(600)
    expect(before.length).toBeGreaterThan(0)
  })

  it('two sweepers at once count each task once', async () => {
    await makeTasks(db.pool, db.schema, seed())
    // Default chunk (10 minutes): the 25 minutes take three passes, raced by two sweepers and a writer.
    const a = new Sweeper(db.tr, {})
    const b = new Sweeper(db.tr, {})
    const w = new RollupWriter(db.tr)
    let counted = 0
    for (let i = 0; i < 4; i++) {
      const [ra, rb, rw] = await Promise.all([a.runOnce(), b.runOnce(), w.write()])
      counted += ra.rolledUp + rb.rolledUp + rw.tasks
    }
    expect(counted).toBe(600)
    const sum = (await rollups()).reduce((n, x) => n + x.succeeded + x.failed + x.cancelled, 0)
    expect(sum).toBe(600)
  })

  it('a pass that dies before its commit leaves neither rollups nor watermark behind', async () => {
    await makeTasks(db.pool, db.schema, seed())
    const { loadSql } = await import('../../src/db/sql.ts')
    const client = await db.pool.connect()
    try {
      await client.query('begin')
      const lock = (await client.query(loadSql('rollup-lock.sql', db.schema), [10 * MIN])).rows[0]
      await client.query(loadSql('rollup-write.sql', db.schema), [lock.lo, lock.hi])
      await client.query('rollback') // the crash: the connection's transaction never commits
    } finally {
      client.release()
    }
    expect(await rollups()).toEqual([])
    expect((await new RollupWriter(db.tr, { chunkMs: 60 * MIN }).write()).tasks).toBe(600)
  })

  it('keeps its horizon before a transaction still open, which may yet commit older finish times', async () => {
    const client = await db.pool.connect()
    try {
      await client.query('begin')
      const started = (await client.query(`select now()::text as t`)).rows[0].t as string
      await new Promise((r) => setTimeout(r, 2500)) // past the 2 s slack: only the guard holds the horizon back
      await new RollupWriter(db.tr, { chunkMs: 60 * MIN }).write()
      const wm = (await db.pool.query(`select upto <= $1::timestamptz as ok from "${db.schema}".task_rollup_watermark`, [started])).rows[0].ok
      expect(wm).toBe(true)
    } finally {
      await client.query('rollback')
      client.release()
    }
  })

  it('catches up a chunk per pass after downtime, and prunes minutes past retention', async () => {
    await db.pool.query(`update "${db.schema}".task_rollup_watermark set upto = now() - interval '3 hours'`)
    await db.pool.query(`insert into "${db.schema}".task_rollups (minute, queue, wait_hist, run_hist)
                         values (date_trunc('minute', now() - interval '2 days'), 'old', '{}', '{}'), (date_trunc('minute', now() - interval '10 minutes'), 'new', '{}', '{}')`)
    const sweeper = new Sweeper(db.tr, { retentionMs: 24 * 60 * MIN })
    await sweeper.runOnce()
    const wm = (await db.pool.query(`select extract(epoch from now() - upto)::float8 * 1000 as lag from "${db.schema}".task_rollup_watermark`)).rows[0].lag as number
    expect(wm).toBeGreaterThan(2 * 60 * MIN)
    expect((await rollups()).map((r) => r.queue)).toEqual(['new'])
    expect(SEC).toBe(1000)
  })
})
