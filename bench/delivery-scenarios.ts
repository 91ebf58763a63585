/**
 * The delivery scenarios S4-S6: a worker process (and taskrelay's relay
 * process, delivery.ts) taking tasks, every one checked in the ledger.
 * S7 (a Redis outage) is in outage.ts.
 */
import { nowMs, percentile, sleep, type BenchPayload } from './common.ts'
import { dropLedger, ledgerKey, ledgerRedis, verifyLedger } from './ledger.ts'
import { startDelivery, type GroupStats } from './delivery.ts'
import type { ProducerAdapter, WorkerOptions } from './systems/types.ts'
import type { Measurement, ScenarioContext } from './scenarios.ts'

const payloads = (from: number, count: number): BenchPayload[] => Array.from({ length: count }, (_, i) => ({ n: from + i }))

export async function enqueueBacklog(a: ProducerAdapter, n: number): Promise<void> {
  for (let i = 0; i < n; i += 1000) await a.enqueueBulk(payloads(i, Math.min(1000, n - i)))
}

export async function ledgerVerdict(key: string, expected: number) {
  const redis = ledgerRedis()
  try {
    return await verifyLedger(redis, key, expected)
  } finally {
    await dropLedger(redis, key)
    redis.disconnect()
  }
}

export async function s4(a: ProducerAdapter, ctx: ScenarioContext): Promise<Measurement> {
  const n = ctx.sizes.s4Tasks
  await enqueueBacklog(a, n)
  const r = await drain(a, ctx, n)
  return r.measurement
}

/**
 * S4's clock (also S4L's and S9's, flow-scenarios.ts): the backlog of n tasks
 * is in; start the worker (and relay), run until the ledger counts n, check
 * the ledger. `override` goes to the worker processes (S9: handlerMs).
 */
export async function drain(a: ProducerAdapter, ctx: ScenarioContext, n: number, override?: Partial<WorkerOptions>): Promise<{ measurement: Measurement; t0: number; groups: Record<string, GroupStats> }> {
  const key = ledgerKey(ctx.tag)
  const d = await startDelivery(a, key, { childExecArgv: ctx.childExecArgv, ...(override ? { override } : {}) })
  let elapsed = NaN
  let finished = false
  let t0 = NaN
  let groups: Record<string, GroupStats> = {}
  try {
    const progress = () => ctx.onProgress?.(d.worker.count / n)
    d.worker.onCount.add(progress)
    t0 = nowMs()
    await d.start()
    finished = await d.until(n, 300_000)
    elapsed = nowMs() - t0
    d.worker.onCount.delete(progress)
    // Give late duplicates a moment to show up in the ledger.
    await sleep(250)
  } finally {
    groups = (await d.stop()).groups
  }
  const v = await ledgerVerdict(key, n)
  if (!finished) return { t0, groups, measurement: { value: NaN, valid: false, verdict: `INVALID: only ${d.worker.count} of ${n} finished in time; ${v.detail}` } }
  return { t0, groups, measurement: { value: n / (elapsed / 1000), valid: v.valid, verdict: v.detail } }
}

export async function s5(a: ProducerAdapter, ctx: ScenarioContext): Promise<Measurement> {
  const key = ledgerKey(ctx.tag)
  const every = ctx.sizes.s5EveryMs
  const n = Math.round((ctx.sizes.s5Seconds * 1000) / every)
  const d = await startDelivery(a, key, ctx)
  let latencies: number[] = []
  let finished = false
  const errors: string[] = []
  try {
    await d.start()
    await sleep(500) // idle and ready
    const t0 = nowMs()
    const calls: Promise<void>[] = []
    for (let i = 0; i < n; i++) {
      const due = t0 + i * every
      const wait = due - nowMs()
      if (wait > 1) await sleep(wait)
      calls.push(a.enqueueConcurrent({ n: i, t: nowMs() }).catch((e) => void errors.push(String(e))))
      if ((i & 15) === 0) ctx.onProgress?.(i / n)
    }
    await Promise.all(calls)
    finished = await d.until(n, 30_000)
    await sleep(250)
  } finally {
    latencies = (await d.stop()).latencies
  }
  const stages = a.stageBreakdown ? await a.stageBreakdown().catch(() => ({})) : {}
  const v = await ledgerVerdict(key, n)
  const valid = v.valid && finished && errors.length === 0
  const verdict = errors.length ? `INVALID: ${errors.length} enqueue errors (${errors[0]})` : v.detail
  return {
    value: percentile(latencies, 50),
    valid,
    verdict,
    extra: { p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99), max: Math.max(...latencies), ...stages },
  }
}

export async function s6(a: ProducerAdapter, ctx: ScenarioContext): Promise<Measurement> {
  const key = ledgerKey(ctx.tag)
  const { s6Producers, s6Seconds, s6MaxBacklog } = ctx.sizes
  const d = await startDelivery(a, key, ctx)
  let started = 0
  let enqueued = 0
  let stop = false
  const errors: string[] = []
  let windowCount = 0
  let finished = false
  // Sampled every 100 ms: tells a drain-bound run (backlog near the bound)
  // from an enqueue-bound one (backlog near zero).
  let backlogSum = 0
  let backlogSamples = 0
  const room = () => started - d.worker.count < s6MaxBacklog
  const waitForRoom = () =>
    new Promise<void>((resolve) => {
      if (room() || stop) return resolve()
      const f = () => {
        if (room() || stop) {
          d.worker.onCount.delete(f)
          resolve()
        }
      }
      d.worker.onCount.add(f)
    })
  try {
    await d.start()
    const t0 = nowMs()
    const startCount = d.worker.count
    const loops = Array.from({ length: s6Producers }, async () => {
      while (!stop) {
        if (!room()) {
          await waitForRoom()
          continue
        }
        const i = started++
        try {
          await a.enqueueConcurrent({ n: i })
          enqueued++
        } catch (e) {
          errors.push(String(e))
        }
      }
    })
    const ticker = setInterval(() => {
      backlogSum += started - d.worker.count
      backlogSamples++
      ctx.onProgress?.(Math.min(1, (nowMs() - t0) / (s6Seconds * 1000)))
    }, 100)
    await sleep(s6Seconds * 1000)
    windowCount = d.worker.count - startCount
    stop = true
    clearInterval(ticker)
    for (const f of [...d.worker.onCount]) f()
    await Promise.all(loops)
    finished = await d.until(started, 60_000)
    await sleep(250)
  } finally {
    await d.stop()
  }
  const v = await ledgerVerdict(key, started)
  const valid = v.valid && finished && errors.length === 0
  const verdict = errors.length ? `INVALID: ${errors.length} enqueue errors (${errors[0]})` : !finished ? `INVALID: backlog not drained; ${v.detail}` : v.detail
  return { value: windowCount / s6Seconds, valid, verdict, extra: { enqueued, enqueuePerSec: enqueued / s6Seconds, meanBacklog: backlogSamples ? backlogSum / backlogSamples : 0 } }
}

