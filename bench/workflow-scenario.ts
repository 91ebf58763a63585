/**
 * S8 (issue 15): a chord of s8Members no-op members plus its callback, end to
 * end. taskrelay: one enqueueWorkflow(chord(group(...), step(callback)))
 * call; BullMQ: one FlowProducer.add() of a parent with the members as its
 * children, on one queue. Worker process (and taskrelay's relay) as in S4,
 * started and idle before the first chord.
 *
 * One untimed chord first (connections, prepared statements, JIT: a worker
 * that has been running a while), then s8Repeats timed chords one after
 * another; the clock runs from the enqueue call until the system reports the
 * callback / parent completed (taskrelay: waitFor, BullMQ: QueueEvents). The
 * cell's figure is the median of the timed chords' (members + 1) / seconds.
 *
 * Checked as S4: every member and every callback ran exactly once (ledger;
 * chord k uses n = k·(members+1) .. k·(members+1)+members, the callback the
 * last), and each callback got every member's result (taskrelay: in member
 * order, checked by the callback and again from its row; BullMQ: the parent
 * reads getChildrenValues(), which has no order).
 */
import { median, nowMs, sleep } from './common.ts'
import { ledgerKey } from './ledger.ts'
import { startDelivery } from './delivery.ts'
import { ledgerVerdict } from './delivery-scenarios.ts'
import type { ProducerAdapter } from './systems/types.ts'
import type { Measurement, ScenarioContext } from './scenarios.ts'

const TIMEOUT_MS = 120_000

export async function s8(a: ProducerAdapter, ctx: ScenarioContext): Promise<Measurement> {
  if (!a.prepareChord) throw new Error(`${a.name} has no chord / flow API`)
  const { s8Members: members, s8Repeats: repeats } = ctx.sizes
  const key = ledgerKey(ctx.tag)
  const d = await startDelivery(a, key, { childExecArgv: ctx.childExecArgv, override: { chordMembers: members } })
  const rates: number[] = []
  const totalMs: number[] = []
  const enqueueMs: number[] = []
  const stages: Array<Record<string, number>> = []
  const problems: string[] = []
  let coldMs = NaN
  let chords = 0
  try {
    await d.start()
    await sleep(300) // idle and ready
    for (let k = 0; k <= repeats; k++) {
      const run = await a.prepareChord(members, k * (members + 1))
      const t0 = nowMs()
      await run.enqueue()
      const t1 = nowMs()
      await run.completed(TIMEOUT_MS)
      const ms = nowMs() - t0
      chords++
      const seen = await run.inspect()
      if (seen.problem) problems.push(`chord ${k}: ${seen.problem}`)
      if (k === 0) coldMs = ms
      else {
        rates.push((members + 1) / (ms / 1000))
        totalMs.push(ms)
        enqueueMs.push(t1 - t0)
        stages.push(seen.stages)
      }
      ctx.onProgress?.((k + 1) / (repeats + 1))
      await sleep(100)
    }
    // Give late duplicates a moment to show up in the ledger.
    await sleep(250)
  } finally {
    await d.stop()
  }
  const v = await ledgerVerdict(key, chords * (members + 1))
  const finished = chords === repeats + 1
  const valid = v.valid && finished && problems.length === 0
  const verdict = !finished
    ? `INVALID: ${chords} of ${repeats + 1} chords completed; ${v.detail}`
    : problems.length
      ? `INVALID: ${problems.join('; ')}; ${v.detail}`
      : `${v.detail}; ${chords} callbacks, each with ${members} results${a.name === 'taskrelay' ? ' in order' : ''}`
  const extra: Record<string, number> = {
    ms: median(totalMs),
    minMs: Math.min(...totalMs),
    maxMs: Math.max(...totalMs),
    enqueueMs: median(enqueueMs),
    coldMs,
    chords: repeats,
  }
  for (const k of new Set(stages.flatMap(Object.keys))) extra[k] = median(stages.map((s) => s[k]!).filter(Number.isFinite))
  return { value: median(rates), valid, verdict, extra }
}

/** S8's note: time to the callback and, for taskrelay, where it went. */
export function chordNote(x: Record<string, number>): string {
  const f = (v: number | undefined, d = 1) => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(d))
  const parts = [`${f(x.ms, 0)} ms to the callback (median of ${f(x.chords, 0)}; ${f(x.minMs, 0)}–${f(x.maxMs, 0)}), enqueue call ${f(x.enqueueMs)} ms, untimed first chord ${f(x.coldMs, 0)} ms`]
  if (x.membersRunMs !== undefined) {
    parts.push(
      `stages (Postgres clock): enqueue tx → first member ${f(x.toFirstMemberMs)} ms, members ${f(x.membersRunMs)} ms (${f(x.membersDirectPct, 0)} % claimed direct from Postgres), ` +
        `last member done → callback dispatched ${f(x.lastMemberToCallbackDispatchMs)} ms, → claimed ${f(x.callbackDispatchToClaimMs)} ms, → finished ${f(x.callbackClaimToFinishMs)} ms, → waitFor ${f(x.finishToWaitForMs)} ms`,
    )
  }
  return parts.join('; ')
}
