/**
 * Flow control (issue 16): S4L and S9.
 *
 * S4L is S4 on a queue that has settings: `concurrency` far above what the
 * worker can hold (S4L_CONCURRENCY against concurrency 50 + prefetch 450 =
 * 500 tasks in hand), so the limit never binds and what the figure shows is
 * the cost of the flow-controlled path itself (the relay and the Postgres
 * lane take the queue's tasks through flow_take(), which locks the queue's
 * row and counts its dispatched and running tasks). It follows S4 in every
 * round, so the report gives it as a ratio to S4 of the same run (issue 16:
 * at most 10 % slower). The settings row is removed at the end of the cell
 * (and the cell's schema is dropped anyway), so no other cell sees it.
 *
 * S9: s9Groups groups of s9PerGroup tasks each, at most one task per group at
 * a time (taskrelay: groupKey + groupConcurrency 1), a handler of
 * s9HandlerMs, worker as in S4. The backlog is enqueued group after group
 * (all of g0, then all of g1, ...): a queue that served in enqueue order
 * would finish g0 long before g99, one that lets groups take turns finishes
 * them all together. Figures: tasks/s, and the fairness spread = the
 * slowest group's completion time ÷ the fastest group's (a group's
 * completion time: when its last task's handler returned, from the start of
 * the clock). The worker counts, per group, how many of its tasks were in the
 * handler at once: more than one invalidates the run (the limit did not hold).
 */
import { median, type BenchPayload } from './common.ts'
import { drain, enqueueBacklog } from './delivery-scenarios.ts'
import type { ProducerAdapter } from './systems/types.ts'
import type { Measurement, ScenarioContext } from './scenarios.ts'

/** S4L's queue concurrency: 20× the 500 tasks the worker can hold, so it never binds. */
export const S4L_CONCURRENCY = 10_000

function settingsOf(a: ProducerAdapter) {
  if (!a.queueSettings) throw new Error(`${a.name} has no queue settings in the bench`)
  return a.queueSettings
}

/** Remove the queue's settings and check they are gone (the next cell must not inherit them). */
async function resetSettings(a: ProducerAdapter): Promise<void> {
  const qs = settingsOf(a)
  await qs.reset()
  const left = await qs.read()
  if (left !== null) throw new Error(`${a.name}: the queue's settings are still there after reset: ${JSON.stringify(left)}`)
}

export async function s4l(a: ProducerAdapter, ctx: ScenarioContext): Promise<Measurement> {
  const qs = settingsOf(a)
  const n = ctx.sizes.s4Tasks
  await qs.set({ concurrency: S4L_CONCURRENCY })
  try {
    const before = await qs.read()
    if (before?.concurrency !== S4L_CONCURRENCY) {
      return { value: NaN, valid: false, verdict: `INVALID: the queue's concurrency reads ${JSON.stringify(before)} after configure` }
    }
    await enqueueBacklog(a, n)
    const { measurement: m } = await drain(a, ctx, n)
    const after = await qs.read()
    if (after?.concurrency !== S4L_CONCURRENCY) {
      return { value: NaN, valid: false, verdict: `INVALID: the limit was gone by the end of the run (${JSON.stringify(after)}); ${m.verdict}` }
    }
    return { ...m, extra: { limit: S4L_CONCURRENCY } }
  } finally {
    await resetSettings(a)
  }
}

export async function s9(a: ProducerAdapter, ctx: ScenarioContext): Promise<Measurement> {
  if (!a.perGroupLimit) throw new Error(`${a.name} has no per-group concurrency limit`)
  const { s9Groups: groups, s9PerGroup: per, s9HandlerMs: handlerMs } = ctx.sizes
  const n = groups * per
  await a.queueSettings?.set({ groupConcurrency: 1 })
  try {
    if (a.queueSettings && (await a.queueSettings.read())?.groupConcurrency !== 1) {
      return { value: NaN, valid: false, verdict: 'INVALID: the queue\'s groupConcurrency does not read 1 after configure' }
    }
    // Group after group: n = g·per .. g·per + per − 1 is group g.
    const payloads: BenchPayload[] = Array.from({ length: n }, (_, i) => ({ n: i, g: Math.floor(i / per) }))
    for (let i = 0; i < n; i += 1000) await a.enqueueBulk(payloads.slice(i, i + 1000))
    const { measurement: m, t0, groups: seen } = await drain(a, ctx, n, { handlerMs, perGroupLimit: 1 })
    if (!m.valid) return m
    const stats = Array.from({ length: groups }, (_, g) => seen[String(g)])
    const missing = stats.filter((s) => !s || s.done !== per).length
    if (missing) return { ...m, valid: false, verdict: `INVALID: ${missing} group(s) did not report ${per} tasks from the handler; ${m.verdict}` }
    const times = stats.map((s) => s!.lastAt - t0)
    const maxPerGroup = Math.max(...stats.map((s) => s!.maxActive))
    const fastest = Math.min(...times)
    const slowest = Math.max(...times)
    const extra = { spread: slowest / fastest, fastestMs: fastest, slowestMs: slowest, medianGroupMs: median(times), maxPerGroup, groups, perGroup: per }
    if (maxPerGroup > 1) return { ...m, valid: false, verdict: `INVALID: a group had ${maxPerGroup} tasks in the handler at once (limit 1); ${m.verdict}`, extra }
    return { ...m, extra }
  } finally {
    if (a.queueSettings) await resetSettings(a)
  }
}

/** S4L's note: the ratio to S4 of the same run (extra.vsS4, median of the rounds' ratios; report.ts pairs them). */
export function limitNote(extra: Record<string, number>): string {
  const parts = [`limit ${(extra.limit ?? S4L_CONCURRENCY).toLocaleString('en-US')} (never reached: 500 tasks in hand)`]
  if (extra.vsS4 !== undefined) {
    const pct = Math.abs(1 - extra.vsS4) * 100
    parts.push(`÷ S4 of the same round: ${extra.vsS4.toFixed(3)} (median of ${extra.pairs} round(s); ${pct.toFixed(1)} % ${extra.vsS4 <= 1 ? 'slower' : 'faster'})`)
  }
  return parts.join('; ')
}

/** S9's note: the fairness spread and the groups' completion times. */
export function groupsNote(extra: Record<string, number>): string {
  const s = (ms: number | undefined) => (ms === undefined ? '—' : `${(ms / 1000).toFixed(2)} s`)
  return `fairness spread ${extra.spread?.toFixed(2)}× (groups done after ${s(extra.fastestMs)} fastest, ${s(extra.medianGroupMs)} median, ${s(extra.slowestMs)} slowest); ${extra.groups} groups × ${extra.perGroup}, most in one group at once ${extra.maxPerGroup}`
}
