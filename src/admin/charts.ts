import { rollupWatermark, taskChartCells, type ChartCellRow } from '../db/admin-queries.ts'
import type { AdminContext } from './context.ts'

/**
 * Throughput, failures and wait/run time percentiles per queue, for the
 * dashboard's charts: the last hour in 1-minute buckets or the last 24 hours
 * in 15-minute buckets. Read from the sweeper's per-minute rollups
 * (0017, src/sweeper/rollup-writer.ts) plus the few rows finished since its
 * last pass, so the cost grows with the number of queues × buckets, never
 * with the history kept in tasks.
 *
 * @example
 *   const [emails] = await readCharts(tr, '1h', 'emails')
 *   for (const p of emails.points) console.log(p.at, p.succeeded, p.runP95Ms)
 */
export type ChartRange = '1h' | '24h'

export interface ChartPoint {
  /** ISO start of the bucket */
  at: string
  succeeded: number
  failed: number
  /** wait time (started_at − run_at: due until picked up), null when no task of the bucket started */
  waitP50Ms: number | null
  waitP95Ms: number | null
  /** run time (finished_at − started_at of the last attempt) */
  runP50Ms: number | null
  runP95Ms: number | null
}

export interface QueueChart {
  queue: string
  range: ChartRange
  /** 60 for 1h, 900 for 24h */
  bucketSeconds: number
  /** every bucket, zero-filled, oldest first */
  points: ChartPoint[]
}

const RANGES: Record<ChartRange, { bucketSeconds: number; buckets: number }> = {
  '1h': { bucketSeconds: 60, buckets: 60 },
  '24h': { bucketSeconds: 900, buckets: 96 },
}

/**
 * Histogram buckets shared with the SQL (0017's rollup_bucket): bucket 0 is
 * under 1 ms, bucket b (1..62) holds [2^((b-1)/2), 2^(b/2)) ms, bucket 63
 * everything from 2^31 ms (~25 days). Neighbouring edges are √2 apart, so a
 * percentile read from merged buckets is exact to the bucket: the true value
 * lies within a factor √2 below the reported upper edge.
 */
export const HIST_BUCKETS = 64

/** Upper edge of bucket b in ms (the top bucket reports its lower edge). */
export function bucketUpperMs(b: number): number {
  return b >= HIST_BUCKETS - 1 ? 2 ** ((HIST_BUCKETS - 2) / 2) : 2 ** (b / 2)
}

/** The bucket of a duration in ms, as rollup_bucket() computes it in SQL. */
export function bucketOf(ms: number): number {
  return ms < 1 ? 0 : Math.min(HIST_BUCKETS - 1, 1 + Math.floor(2 * Math.log2(ms)))
}

/** The p-th percentile (0..1) of a histogram as its bucket's upper edge; null when empty. */
export function histPercentile(hist: readonly number[], p: number): number | null {
  const total = hist.reduce((a, b) => a + b, 0)
  if (total === 0) return null
  const rank = Math.max(1, Math.ceil(p * total))
  let seen = 0
  for (let b = 0; b < hist.length; b++) {
    seen += hist[b]!
    if (seen >= rank) return bucketUpperMs(b)
  }
  return bucketUpperMs(hist.length - 1)
}

/** Add `from` into `into`, element by element. */
export function histAdd(into: number[], from: readonly number[] | null): void {
  if (!from) return
  for (let i = 0; i < from.length; i++) into[i] = (into[i] ?? 0) + Number(from[i])
}

export async function readCharts(ctx: Pick<AdminContext, 'executor' | 'schema'>, range: ChartRange, queue?: string): Promise<QueueChart[]> {
  const { bucketSeconds, buckets } = RANGES[range]
  const { upto } = await rollupWatermark(ctx.executor, { schema: ctx.schema })
  const rows = await taskChartCells(ctx.executor, { schema: ctx.schema, bucketSeconds, buckets, queue: queue ?? null, watermark: upto })
  const startMs = rows.length ? Number(rows[0]!.first_ms) : firstBucketMs(bucketSeconds, buckets)
  const byQueue = new Map<string, ChartCellRow[]>()
  if (queue !== undefined) byQueue.set(queue, [])
  for (const r of rows) if (r.queue !== null) (byQueue.get(r.queue) ?? byQueue.set(r.queue, []).get(r.queue)!).push(r)
  return [...byQueue.keys()].sort().map((q) => {
    const acc = Array.from({ length: buckets }, () => ({ succeeded: 0, failed: 0, wait: new Array<number>(HIST_BUCKETS).fill(0), run: new Array<number>(HIST_BUCKETS).fill(0) }))
    for (const r of byQueue.get(q)!) {
      const i = Math.floor((Number(r.at_ms) - startMs) / (bucketSeconds * 1000))
      const a = acc[i]
      if (!a) continue
      a.succeeded += Number(r.succeeded)
      a.failed += Number(r.failed)
      histAdd(a.wait, r.wait_hist)
      histAdd(a.run, r.run_hist)
    }
    return {
      queue: q,
      range,
      bucketSeconds,
      points: acc.map((a, i) => ({
        at: new Date(startMs + i * bucketSeconds * 1000).toISOString(),
        succeeded: a.succeeded,
        failed: a.failed,
        waitP50Ms: histPercentile(a.wait, 0.5),
        waitP95Ms: histPercentile(a.wait, 0.95),
        runP50Ms: histPercentile(a.run, 0.5),
        runP95Ms: histPercentile(a.run, 0.95),
      })),
    }
  })
}

/** Start of the oldest bucket by this process's clock (the database's is used when rows come back). */
function firstBucketMs(bucketSeconds: number, buckets: number): number {
  const size = bucketSeconds * 1000
  return Math.floor(Date.now() / size) * size - (buckets - 1) * size
}
