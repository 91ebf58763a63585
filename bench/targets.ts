/**
 * taskrelay's targets (issue 5's, then issues 15's, 16's, 17's and 18's), judged on one
 * run's medians, and S7's note. Moved out of report.ts, which prints them.
 */
import { fmt, median, type ScenarioId } from './common.ts'
import type { BenchResult, Row } from './report.ts'
import { issue18 } from './paired.ts'

type Target = { target: string; measured: string; met: boolean | null }
const judge = (ok: boolean, ...xs: number[]) => (xs.every(Number.isFinite) ? ok : null)

/** taskrelay's targets from the issue, judged on this run's medians. */
export function targets(result: BenchResult, rows: Row[]): Target[] {
  const tr = (s: ScenarioId) => rows.find((r) => r.scenario === s && r.system === 'taskrelay')
  const c = (id: string) => (result.ceilings[id]?.length ? median(result.ceilings[id]!) : NaN)
  const out: Target[] = []
  const pct = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) ? (a / b) * 100 : NaN)
  const s1 = tr('S1')
  if (s1) {
    const p = pct(s1.median, c('C1'))
    out.push({ target: 'S1 ≥ 85 % of pgbench 1-client commits/s', measured: `${fmt(p, 0)} % (${fmt(s1.median)} vs ${fmt(c('C1'))})`, met: judge(p >= 85, p) })
    if (s1.extra.businessTxPerSec !== undefined) {
      const q = pct(s1.median, s1.extra.businessTxPerSec)
      const b = pct(s1.extra.businessTxPerSec, c('C1'))
      out.push({ target: '(like for like: S1 vs the business tx alone)', measured: `${fmt(q, 0)} % (business tx alone = ${fmt(b, 0)} % of C1)`, met: null })
    }
  }
  const s2 = tr('S2')
  if (s2) {
    const p = pct(s2.median, c('C2'))
    out.push({ target: 'S2 ≥ 80 % of pgbench 16-client commits/s', measured: `${fmt(p, 0)} % (${fmt(s2.median)} vs ${fmt(c('C2'))})`, met: judge(p >= 80, p) })
  }
  const s3 = tr('S3')
  if (s3) out.push({ target: 'S3 ≥ 150,000 tasks/s', measured: `${fmt(s3.median)} tasks/s`, met: judge(s3.median >= 150_000, s3.median) })
  const s4 = tr('S4')
  const gw4 = rows.find((r) => r.scenario === 'S4' && r.system === 'graphile-worker')
  if (s4) {
    const ratio = gw4 ? s4.median / gw4.median : NaN
    out.push({ target: 'S4 ≥ 1.0 × graphile-worker', measured: `${fmt(ratio)} ×`, met: judge(ratio >= 1, ratio) })
  }
  const s5 = tr('S5')
  if (s5) {
    out.push({
      target: 'S5 p50 ≤ 2 ms and p99 ≤ 5 ms',
      measured: `p50 ${fmt(s5.extra.p50)} ms, p99 ${fmt(s5.extra.p99)} ms`,
      met: judge(s5.extra.p50! <= 2 && s5.extra.p99! <= 5, s5.extra.p50 ?? NaN, s5.extra.p99 ?? NaN),
    })
    if (Number.isFinite(c('C6'))) {
      out.push({
        target: '(floor: one commit at a trickle, C6)',
        measured: `${fmt(c('C6'))} ms; taskrelay's direct path commits 2× in series (enqueue, claim), via the relay 3× (enqueue, dispatch, claim), graphile-worker's 2×`,
        met: null,
      })
    }
  }
  out.push(...issue17(result, rows))
  const s6 = tr('S6')
  const bq6 = rows.find((r) => r.scenario === 'S6' && r.system === 'bullmq')
  if (s6) {
    const ratio = bq6 ? s6.median / bq6.median : NaN
    out.push({ target: 'S6 ≥ 1.0 × BullMQ', measured: `${fmt(ratio)} ×`, met: judge(ratio >= 1, ratio) })
  }
  const s8 = tr('S8')
  const bq8 = rows.find((r) => r.scenario === 'S8' && r.system === 'bullmq')
  if (s8) {
    const ratio = bq8 ? s8.median / bq8.median : NaN
    const ms = bq8 ? `; ${fmt(s8.extra.ms, 0)} vs ${fmt(bq8.extra.ms, 0)} ms to the callback` : ''
    out.push({ target: 'S8 ≥ 1.0 × BullMQ FlowProducer (issue 15)', measured: `${fmt(ratio)} × (${fmt(s8.median)} vs ${fmt(bq8?.median)} tasks/s${ms})`, met: judge(ratio >= 1, ratio) })
  }
  // Issue 16: a global limit that does not bind costs at most 10 % of S4 (same run; report.ts pairs the rounds).
  const s4l = tr('S4L')
  if (s4l) {
    const r = s4l.extra.vsS4 ?? NaN
    out.push({ target: 'S4L ≥ 0.90 × S4 (limit not binding, issue 16)', measured: `${fmt(r, 3)} × (${fmt(s4l.median)} vs ${fmt(s4?.median)} tasks/s; median of ${s4l.extra.pairs ?? 0} round(s))`, met: judge(r >= 0.9, r) })
  }
  // Issue 18: against taskrelay at the commit before it (--baseline), same run, rounds paired (paired.ts).
  out.push(...issue18(result, rows))
  const s9 = tr('S9')
  if (s9) {
    out.push({ target: '(S9: 100 groups, 1 at a time per group; issue 16 sets no figure)', measured: `${fmt(s9.median)} tasks/s, fairness spread ${fmt(s9.extra.spread)}×`, met: null })
  }
  return out
}


/** Issue 17: S5 against BullMQ's latency in the same run; S7 against the enqueue rate. */
function issue17(result: BenchResult, rows: Row[]): Target[] {
  const get = (s: ScenarioId, sys: string) => rows.find((r) => r.scenario === s && r.system === sys)
  const out: Target[] = []
  const s5 = get('S5', 'taskrelay')
  const bq5 = get('S5', 'bullmq')
  if (s5 && bq5) {
    const p50 = s5.extra.p50! / bq5.extra.p50!
    const p99 = s5.extra.p99! / bq5.extra.p99!
    out.push({ target: 'S5 p50 ≤ 1.5 × BullMQ p50 (issue 17)', measured: `${fmt(p50)} × (${fmt(s5.extra.p50)} vs ${fmt(bq5.extra.p50)} ms)`, met: judge(p50 <= 1.5, p50) })
    out.push({ target: 'S5 p99 ≤ 2 × BullMQ p99 (issue 17)', measured: `${fmt(p99)} × (${fmt(s5.extra.p99)} vs ${fmt(bq5.extra.p99)} ms)`, met: judge(p99 <= 2, p99) })
  }
  const s7 = get('S7', 'taskrelay')
  if (s7) {
    const ofEnqueue = s7.extra.rateB! / s7.extra.enqueuedB!
    out.push({ target: 'S7 done during the outage ≥ 80 % of the enqueue rate', measured: `${fmt(ofEnqueue * 100, 0)} % (${fmt(s7.extra.rateB)} of ${fmt(s7.extra.enqueuedB)}/s); ${fmt(s7.median)} × the run without outage`, met: judge(ofEnqueue >= 0.8, ofEnqueue) })
    // Summed over every run: one task run twice in one run is a miss, whatever the median says.
    const cells = result.cells.filter((c) => c.scenario === 'S7' && c.system === 'taskrelay' && c.extra)
    const total = (k: string) => cells.reduce((n, c) => n + (c.extra![k] ?? 0), 0)
    const [lost, twice] = [total('lostB'), total('twiceB')]
    out.push({ target: 'S7 0 lost, 0 ran twice (outage runs)', measured: `${lost} lost, ${twice} ran twice, over ${cells.length} run(s)`, met: judge(lost === 0 && twice === 0, lost, twice) })
  }
  return out
}

/** S7's note: rates, what was lost, how the lanes moved, what followed the restart. */
export function outageNote(x: Record<string, number>): string {
  const parts = [
    `done ${fmt(x.rateB)}/s during the outage vs ${fmt(x.rateA)}/s without (enqueued ${fmt(x.enqueuedB)}/s meanwhile; ${fmt(x.beforeB)}/s before it, ${fmt(x.afterB)}/s in the 10 s after)`,
    `outage run (median): ${fmt(x.lostB, 0)} lost, ${fmt(x.twiceB, 0)} ran twice, ${fmt(x.failedB, 0)} enqueue calls failed${x.unsettledB ? `, ${fmt(x.unsettledB, 0)} unanswered` : ''}`,
  ]
  if (Number.isFinite(x.toPostgresMs)) parts.push(`worker on the Postgres lane ${fmt(x.toPostgresMs, 0)} ms after the kill, back on Redis ${fmt(x.backToRedisMs, 0)} ms after the restart`)
  if (Number.isFinite(x.staleAfterRestart)) parts.push(`after the restart ${fmt(x.staleAfterRestart, 0)} stale messages dropped, ${fmt(x.redispatchedAfterRestart, 0)} re-dispatched`)
  parts.push(Number.isFinite(x.drainAfterStopMs) ? `every acknowledged task done ${fmt(x.drainAfterStopMs!, 0)} ms after the producers stopped` : 'not every acknowledged task ran')
  return parts.join('; ')
}
