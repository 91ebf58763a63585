import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { readCharts } from '../../src/admin/charts.ts'
import { readStats } from '../../src/admin/stats.ts'
import { RollupWriter } from '../../src/sweeper/rollup-writer.ts'
import { createTestDb, type TestDb } from '../support/db.ts'
import { HOUR, MIN, SEC, dbNow, makeTasks } from '../support/factory.ts'

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

/** A finished task: due `waitMs` before it started, ran `runMs`, finished `agoMs` ago. */
function done(queue: string, state: 'succeeded' | 'failed' | 'cancelled', agoMs: number, waitMs: number, runMs: number) {
  return {
    queue,
    state,
    attempt: 1,
    createdAt: dbNow(-agoMs - runMs - waitMs),
    runAt: dbNow(-agoMs - runMs - waitMs),
    startedAt: dbNow(-agoMs - runMs),
    finishedAt: dbNow(-agoMs),
  }
}

describe('readCharts', () => {
  it('zero-fills every bucket, oldest first, and counts and percentiles per queue', async () => {
    await makeTasks(db.pool, db.schema, [
      ...Array.from({ length: 19 }, () => done('mail', 'succeeded', 5 * SEC, 10, 100)),
      done('mail', 'failed', 5 * SEC, 10, 5000),
      done('mail', 'cancelled', 5 * SEC, 10, 5000),
      done('other', 'succeeded', 3 * HOUR, 10, 100),
    ])
    const charts = await readCharts(db.tr, '1h')
    expect(charts.map((c) => c.queue)).toEqual(['mail'])
    const [mail] = charts
    expect(mail!.bucketSeconds).toBe(60)
    expect(mail!.points).toHaveLength(60)
    const times = mail!.points.map((p) => Date.parse(p.at))
    expect(times.every((t, i) => i === 0 || t - times[i - 1]! === MIN)).toBe(true)
    const hit = mail!.points.filter((p) => p.succeeded + p.failed > 0)
    expect(hit.reduce((n, p) => n + p.succeeded, 0)).toBe(19)
    expect(hit.reduce((n, p) => n + p.failed, 0)).toBe(1)
    expect(mail!.points.filter((p) => p.succeeded === 0 && p.failed === 0).every((p) => p.runP50Ms === null)).toBe(true)
    const p = hit.at(-1)!
    if (hit.length === 1) {
      // 100 ms lies in [2^6.5, 2^7) = [90.5, 128): reported as 128; the one 5 s run is the p95 at most.
      expect(p.runP50Ms).toBe(128)
      expect(p.waitP50Ms).toBeGreaterThanOrEqual(10)
      expect(p.waitP50Ms).toBeLessThan(10 * Math.SQRT2 + 1)
    }
    const day = await readCharts(db.tr, '24h')
    expect(day.map((c) => [c.queue, c.bucketSeconds, c.points.length])).toEqual([
      ['mail', 900, 96],
      ['other', 900, 96],
    ])
    expect(day[1]!.points.reduce((n, q) => n + q.succeeded, 0)).toBe(1)
  })

  it('reads the same from the rollups as from the rows finished since the watermark', async () => {
    await makeTasks(db.pool, db.schema, [
      ...Array.from({ length: 40 }, (_, i) => done(i % 2 ? 'mail' : 'sms', i % 7 ? 'succeeded' : 'failed', 2 * MIN + i * 10 * SEC, 5 * i, 3 * i * i)),
      ...Array.from({ length: 10 }, (_, i) => done('mail', 'succeeded', 2 * HOUR + i * MIN, 5, 50)),
    ])
    const strip = (s: Awaited<ReturnType<typeof readStats>>) => ({ ...s, at: '', rollupLagMs: 0 })
    const before = [await readCharts(db.tr, '1h'), await readCharts(db.tr, '24h'), strip(await readStats(db.tr))]
    await db.pool.query(`update "${db.schema}".task_rollup_watermark set upto = now() - interval '3 hours'`)
    expect((await new RollupWriter(db.tr, { chunkMs: 4 * HOUR }).write()).tasks).toBe(50)
    const after = [await readCharts(db.tr, '1h'), await readCharts(db.tr, '24h'), strip(await readStats(db.tr))]
    expect(after).toEqual(before)
    expect((before[2] as { totals: { succeededLastHour: number } }).totals.succeededLastHour).toBe(34)
  })

  it('answers a named queue even when it has nothing', async () => {
    const [c] = await readCharts(db.tr, '1h', 'empty')
    expect(c!.queue).toBe('empty')
    expect(c!.points.every((p) => p.succeeded === 0 && p.waitP95Ms === null)).toBe(true)
  })
})
