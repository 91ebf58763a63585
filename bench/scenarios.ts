/**
 * The scenarios: sizes, titles, S1-S3 (enqueue only) here, S4-S6 in
 * delivery-scenarios.ts, S4L and S9 (flow control, issue 16) in
 * flow-scenarios.ts, S7 in outage.ts, S8 in workflow-scenario.ts. Each takes a producer adapter whose
 * setup() already ran and returns one measurement. Nothing here knows which
 * system it drives.
 */
import { nowMs, runLoops, type BenchPayload, type ScenarioId } from './common.ts'
import { verdictText } from './ledger.ts'
import type { ProducerAdapter } from './systems/types.ts'
import { s4, s5, s6 } from './delivery-scenarios.ts'
import { S4L_CONCURRENCY, s4l, s9 } from './flow-scenarios.ts'
import { s7 } from './outage.ts'
import { s8 } from './workflow-scenario.ts'
import { MAX_WORKFLOW_STEPS } from '../src/index.ts'
import type { BenchRedis } from './redis-server.ts'

export interface Sizes {
  s1Tasks: number
  s2Tasks: number
  s2Producers: number
  s3Tasks: number
  s3Batch: number
  s4Tasks: number
  s4Concurrency: number
  s5EveryMs: number
  s5Seconds: number
  s6Producers: number
  s6Seconds: number
  s6MaxBacklog: number
  /** S7: enqueue rate (tasks/s), run length, when Redis is killed and for how long (s) */
  s7Rate: number
  s7Seconds: number
  s7OutageAt: number
  s7OutageSeconds: number
  /** S8: members of the chord (the callback is one more task), timed chords per cell (after one untimed) */
  s8Members: number
  s8Repeats: number
  /** S9: groups, tasks per group (enqueued group after group), the handler's time (ms) */
  s9Groups: number
  s9PerGroup: number
  s9HandlerMs: number
}

/**
 * Issue 15 asks for 1,000 members plus the callback, but a taskrelay
 * workflow holds at most MAX_WORKFLOW_STEPS (1,000) steps, the callback
 * included: until that changes, both systems run 999 + 1.
 */
const S8_MEMBERS = Math.min(1000, MAX_WORKFLOW_STEPS - 1)

export const FULL: Sizes = {
  s1Tasks: 5000,
  s2Tasks: 20_000,
  s2Producers: 16,
  s3Tasks: 100_000,
  s3Batch: 1000,
  s4Tasks: 50_000,
  s4Concurrency: 50,
  s5EveryMs: 10,
  s5Seconds: 10,
  s6Producers: 16,
  s6Seconds: 20,
  s6MaxBacklog: 1000,
  s7Rate: 500,
  s7Seconds: 45,
  s7OutageAt: 10,
  s7OutageSeconds: 30,
  s8Members: S8_MEMBERS,
  s8Repeats: 5,
  s9Groups: 100,
  s9PerGroup: 50,
  s9HandlerMs: 1,
}

export const QUICK: Sizes = {
  s1Tasks: 1000,
  s2Tasks: 4000,
  s2Producers: 16,
  s3Tasks: 20_000,
  s3Batch: 1000,
  s4Tasks: 10_000,
  s4Concurrency: 50,
  s5EveryMs: 10,
  s5Seconds: 2,
  s6Producers: 16,
  s6Seconds: 3,
  s6MaxBacklog: 1000,
  s7Rate: 200,
  s7Seconds: 12,
  s7OutageAt: 3,
  s7OutageSeconds: 6,
  s8Members: S8_MEMBERS,
  s8Repeats: 2,
  s9Groups: 100,
  s9PerGroup: 10,
  s9HandlerMs: 1,
}

export const SCENARIO_INFO: Record<ScenarioId, { title: string; unit: string; higherIsBetter: boolean }> = {
  S1: { title: 'single enqueue, 1 producer, 1 task per tx', unit: 'tasks/s', higherIsBetter: true },
  S2: { title: 'concurrent enqueue, 16 producers', unit: 'tasks/s', higherIsBetter: true },
  S3: { title: 'bulk enqueue, batches of 1,000', unit: 'tasks/s', higherIsBetter: true },
  S4: { title: 'drain a backlog, 1 worker process, concurrency 50', unit: 'tasks/s', higherIsBetter: true },
  S4L: { title: `S4 with a global limit that does not bind (queue concurrency ${S4L_CONCURRENCY.toLocaleString('en-US')})`, unit: 'tasks/s', higherIsBetter: true },
  S5: { title: 'latency, 1 task / 10 ms, idle worker', unit: 'ms p50', higherIsBetter: false },
  S6: { title: 'sustained end to end, 16 producers, backlog < 1,000', unit: 'tasks/s', higherIsBetter: true },
  S7: { title: 'Redis outage (30 s of 45, 500 tasks/s enqueued): done during it ÷ same window without', unit: '×', higherIsBetter: true },
  S8: { title: `chord of ${S8_MEMBERS.toLocaleString('en-US')} no-op members + callback, end to end, idle worker`, unit: 'tasks/s', higherIsBetter: true },
  S9: { title: '100 groups, at most 1 task per group at a time, 1 ms handler', unit: 'tasks/s', higherIsBetter: true },
}

export interface Measurement {
  /** the headline figure (tasks/s, or p50 ms for S5) */
  value: number
  valid: boolean
  verdict: string
  extra?: Record<string, number>
}

export interface ScenarioContext {
  sizes: Sizes
  tag: string
  /** progress inside a cell, 0..1 */
  onProgress?: (fraction: number) => void
  /** extra node flags for forked processes (profiling) */
  childExecArgv?: string[]
  /** S7: the scenario's own Redis, which it kills and restarts (the suite starts it before setup) */
  redis?: BenchRedis
}

const payloads = (from: number, count: number): BenchPayload[] => Array.from({ length: count }, (_, i) => ({ n: from + i }))

async function verifyStored(a: ProducerAdapter, expected: number): Promise<{ valid: boolean; verdict: string }> {
  const { total, distinct } = await a.countStored()
  const duplicated = total - distinct
  const missing = expected - distinct
  const valid = duplicated === 0 && missing === 0
  return { valid, verdict: verdictText(valid, Math.max(0, missing), duplicated, Math.max(0, -missing), expected, 'stored') }
}

export async function s1(a: ProducerAdapter, ctx: ScenarioContext): Promise<Measurement> {
  const n = ctx.sizes.s1Tasks
  if (!a.businessOnly) {
    const t0 = nowMs()
    for (let i = 0; i < n; i++) {
      await a.enqueueOne({ n: i })
      if ((i & 127) === 0) ctx.onProgress?.(i / n)
    }
    const rate = n / ((nowMs() - t0) / 1000)
    return { value: rate, ...(await verifyStored(a, n)) }
  }
  // taskrelay: alternate chunks of "business tx + enqueue" and "business tx alone"
  // on the same connection, so drift on the shared machine hits both alike.
  const chunks = 10
  const per = Math.ceil(n / chunks)
  let withMs = 0
  let aloneMs = 0
  let done = 0
  for (let c = 0; c < chunks; c++) {
    const from = c * per
    const count = Math.min(per, n - from)
    if (count <= 0) break
    let t = nowMs()
    for (let i = 0; i < count; i++) await a.businessOnly({ n: from + i })
    aloneMs += nowMs() - t
    t = nowMs()
    for (let i = 0; i < count; i++) await a.enqueueOne({ n: from + i })
    withMs += nowMs() - t
    done += count
    ctx.onProgress?.(done / n)
  }
  const rate = done / (withMs / 1000)
  const baseline = done / (aloneMs / 1000)
  return {
    value: rate,
    ...(await verifyStored(a, done)),
    extra: {
      businessTxPerSec: baseline,
      overheadMsPerTx: (withMs - aloneMs) / done,
      overheadPct: (1 - rate / baseline) * 100,
    },
  }
}

export async function s2(a: ProducerAdapter, ctx: ScenarioContext): Promise<Measurement> {
  const n = ctx.sizes.s2Tasks
  let done = 0
  const t0 = nowMs()
  await runLoops(n, ctx.sizes.s2Producers, async (i) => {
    await a.enqueueConcurrent({ n: i })
    if ((++done & 255) === 0) ctx.onProgress?.(done / n)
  })
  const rate = n / ((nowMs() - t0) / 1000)
  return { value: rate, ...(await verifyStored(a, n)) }
}

export async function s3(a: ProducerAdapter, ctx: ScenarioContext): Promise<Measurement> {
  const n = ctx.sizes.s3Tasks
  const b = ctx.sizes.s3Batch
  // Payload objects are built before the clock starts: the figure is the system's, not the array's.
  const batches: BenchPayload[][] = []
  for (let i = 0; i < n; i += b) batches.push(payloads(i, Math.min(b, n - i)))
  const t0 = nowMs()
  for (let k = 0; k < batches.length; k++) {
    await a.enqueueBulk(batches[k]!)
    ctx.onProgress?.((k + 1) / batches.length)
  }
  const rate = n / ((nowMs() - t0) / 1000)
  return { value: rate, ...(await verifyStored(a, n)) }
}

export const RUNNERS: Record<ScenarioId, (a: ProducerAdapter, ctx: ScenarioContext) => Promise<Measurement>> = { S1: s1, S2: s2, S3: s3, S4: s4, S4L: s4l, S5: s5, S6: s6, S7: s7, S8: s8, S9: s9 }
