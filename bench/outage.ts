/**
 * S7: a Redis outage under a steady enqueue rate (issue 17). Worker and relay
 * processes as in S6, against a redis-server of the scenario's own
 * (redis-server.ts). Two phases in one cell, same setup:
 *   A: s7Seconds at s7Rate tasks/s, nothing happens;
 *   B: the same, Redis SIGKILLed at s7OutageAt and restarted empty
 *      s7OutageSeconds later.
 * Figure: tasks completed during the outage window in B ÷ completed in the
 * same window of A. Each phase has its own ledger: a task whose enqueue was
 * acknowledged and never ran is lost, one that ran more than once ran twice.
 * Losing tasks in B is what S7 measures, so it does not make the cell
 * invalid (A must be clean); the counts are in the notes.
 */
import { nowMs, sleep } from './common.ts'
import { dropLedger, ledgerKey, ledgerRedis } from './ledger.ts'
import { startDelivery } from './delivery.ts'
import type { ProducerAdapter, ServiceEvent } from './systems/types.ts'
import type { Measurement, ScenarioContext } from './scenarios.ts'
import type { BenchRedis } from './redis-server.ts'

interface Phase {
  /** completions inside the window (A: untouched; B: Redis down) */
  windowDone: number
  /** enqueue calls acknowledged inside the window */
  windowAcked: number
  acked: number
  failed: number
  firstError: string
  /** enqueue calls neither acknowledged nor failed 30 s after the producers stopped */
  unsettled: number
  lost: number
  twice: number
  /** failed enqueues that ran anyway */
  failedButRan: number
  /** completions per second before / during / 10 s after the window */
  rateBefore: number
  rateAfter: number
  /** ms from the producers' stop until every acknowledged task had run (NaN: never) */
  drainMs: number
  events: ServiceEvent[]
  /** nowMs() of the kill and the restart (B), of the window's ends (A) */
  windowStart: number
  windowEnd: number
}

async function runPhase(a: ProducerAdapter, ctx: ScenarioContext, redis: BenchRedis, key: string, outage: boolean, progressBase: number): Promise<Phase> {
  const { s7Rate: rate, s7Seconds: seconds, s7OutageAt: at, s7OutageSeconds: down } = ctx.sizes
  const d = await startDelivery(a, key, { childExecArgv: ctx.childExecArgv, override: { redisUrl: redis.url } })
  const ackedN: number[] = []
  const failedN: number[] = []
  const errors = new Map<string, number>()
  const pending = new Set<Promise<void>>()
  let started = 0
  let windowStart = NaN
  let windowEnd = NaN
  let atStart = 0
  let atEnd = 0
  let ackedAtStart = 0
  let ackedAtEnd = 0
  let drainMs = NaN
  let after10 = NaN
  let events: ServiceEvent[] = []
  try {
    await d.start()
    const t0 = nowMs()
    // Steady rate: every 5 ms, start the calls that are due; none waits for another.
    const producer = setInterval(() => {
      const elapsed = nowMs() - t0
      const due = Math.min(Math.floor((elapsed / 1000) * rate), seconds * rate)
      while (started < due) {
        const n = started++
        const p: Promise<void> = a.enqueueConcurrent({ n }).then(
          () => void ackedN.push(n),
          (e: unknown) => {
            failedN.push(n)
            const msg = String((e as Error)?.message ?? e).split('\n')[0]!.slice(0, 120)
            errors.set(msg, (errors.get(msg) ?? 0) + 1)
          },
        )
        pending.add(p)
        void p.finally(() => pending.delete(p))
      }
      ctx.onProgress?.(progressBase + Math.min(0.5, elapsed / (seconds * 2000)))
    }, 5)
    const until = (s: number) => sleep(Math.max(0, t0 + s * 1000 - nowMs()))
    await until(at)
    windowStart = nowMs()
    atStart = d.worker.count
    ackedAtStart = ackedN.length
    if (outage) await redis.kill()
    await until(at + down)
    atEnd = d.worker.count
    ackedAtEnd = ackedN.length
    windowEnd = nowMs()
    if (outage) await redis.start()
    await until(Math.min(seconds, at + down + 10))
    after10 = d.worker.count
    await until(seconds)
    clearInterval(producer)
    const stoppedAt = nowMs()
    await Promise.race([Promise.allSettled([...pending]), sleep(30_000)])
    // Wait for every acknowledged task, or until nothing has run for 10 s (lost tasks never come).
    let last = -1
    let lastChange = nowMs()
    while (d.worker.count < ackedN.length && nowMs() - lastChange < 10_000 && !d.worker.error) {
      if (d.worker.count !== last) [last, lastChange] = [d.worker.count, nowMs()]
      await sleep(50)
    }
    if (d.worker.count >= ackedN.length) drainMs = nowMs() - stoppedAt
    await sleep(250) // late duplicates
  } finally {
    events = (await d.stop()).events
  }
  const ledger = await readLedger(key, ackedN, failedN)
  return {
    windowDone: atEnd - atStart,
    windowAcked: ackedAtEnd - ackedAtStart,
    acked: ackedN.length,
    failed: failedN.length,
    firstError: errors.size ? [...errors].map(([m, c]) => `${c}× "${m}"`).join(', ') : '',
    unsettled: pending.size,
    ...ledger,
    rateBefore: atStart / at,
    rateAfter: (after10 - atEnd) / Math.min(10, seconds - at - down),
    drainMs,
    events,
    windowStart,
    windowEnd,
  }
}

/** The ledger against what was acknowledged; then dropped. */
async function readLedger(key: string, acked: number[], failed: number[]): Promise<{ lost: number; twice: number; failedButRan: number }> {
  const redis = ledgerRedis()
  try {
    const counts = new Map(Object.entries(await redis.hgetall(key)).map(([n, c]) => [Number(n), Number(c)]))
    let lost = 0
    let twice = 0
    for (const n of acked) {
      const c = counts.get(n) ?? 0
      if (c === 0) lost++
      else if (c > 1) twice++
    }
    return { lost, twice, failedButRan: failed.filter((n) => counts.has(n)).length }
  } finally {
    await dropLedger(redis, key)
    redis.disconnect()
  }
}

const sum = (es: ServiceEvent[], type: string, from: number) => es.filter((e) => e.type === type && e.at >= from).reduce((n, e) => n + e.count, 0)
const firstLane = (es: ServiceEvent[], lane: string, from: number) => es.find((e) => e.type === 'worker:lane' && e.detail === lane && e.at >= from)

export async function s7(a: ProducerAdapter, ctx: ScenarioContext): Promise<Measurement> {
  if (!ctx.redis) throw new Error('S7 needs the scenario Redis (ctx.redis), started by the suite')
  const base = ledgerKey(ctx.tag)
  const A = await runPhase(a, ctx, ctx.redis, `${base}:a`, false, 0)
  const B = await runPhase(a, ctx, ctx.redis, `${base}:b`, true, 0.5)
  const windowS = ctx.sizes.s7OutageSeconds
  const toPg = firstLane(B.events, 'postgres', B.windowStart)
  const back = firstLane(B.events, 'redis', B.windowEnd)
  const aClean = A.lost === 0 && A.twice === 0 && A.failed === 0 && A.unsettled === 0
  const bText = [
    `outage: ${B.acked} acknowledged, ${B.lost} lost, ${B.twice} ran twice`,
    B.failed ? `${B.failed} enqueue calls failed (${B.firstError})${B.failedButRan ? `, ${B.failedButRan} of them ran anyway` : ''}` : '',
    B.unsettled ? `${B.unsettled} enqueue calls still unanswered 30 s after the producers stopped` : '',
  ]
    .filter(Boolean)
    .join('; ')
  const aText = aClean ? `no outage: all ${A.acked} ran exactly once` : `INVALID (no-outage run): ${A.lost} lost, ${A.twice} ran twice, ${A.failed} enqueue errors ${A.firstError}, ${A.unsettled} unanswered`
  return {
    value: A.windowDone > 0 ? B.windowDone / A.windowDone : NaN,
    valid: aClean,
    verdict: `${aText}; ${bText}`,
    extra: {
      rateA: A.windowDone / windowS,
      rateB: B.windowDone / windowS,
      enqueuedB: B.windowAcked / windowS,
      beforeB: B.rateBefore,
      afterB: B.rateAfter,
      lostB: B.lost,
      twiceB: B.twice,
      failedB: B.failed,
      unsettledB: B.unsettled,
      drainAfterStopMs: B.drainMs,
      toPostgresMs: toPg ? toPg.at - B.windowStart : NaN,
      backToRedisMs: back ? back.at - B.windowEnd : NaN,
      // NaN for a system that reports no such events (BullMQ)
      staleAfterRestart: B.events.length ? sum(B.events, 'worker:stale-messages', B.windowEnd) : NaN,
      redispatchedAfterRestart: B.events.length ? sum(B.events, 'relay:redispatch', B.windowEnd) : NaN,
      staleA: A.events.length ? sum(A.events, 'worker:stale-messages', 0) : NaN,
    },
  }
}
