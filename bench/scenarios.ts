/**
 * The six scenarios. Each takes a producer adapter whose setup() already ran
 * and returns one measurement. Nothing here knows which system it drives.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { nowMs, percentile, runLoops, sleep, type BenchPayload, type ScenarioId } from './common.ts'
import { dropLedger, ledgerKey, ledgerRedis, verdictText, verifyLedger } from './ledger.ts'
import type { ProducerAdapter } from './systems/types.ts'

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
}

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
}

export const SCENARIO_INFO: Record<ScenarioId, { title: string; unit: string; higherIsBetter: boolean }> = {
  S1: { title: 'single enqueue, 1 producer, 1 task per tx', unit: 'tasks/s', higherIsBetter: true },
  S2: { title: 'concurrent enqueue, 16 producers', unit: 'tasks/s', higherIsBetter: true },
  S3: { title: 'bulk enqueue, batches of 1,000', unit: 'tasks/s', higherIsBetter: true },
  S4: { title: 'drain a backlog, 1 worker process, concurrency 50', unit: 'tasks/s', higherIsBetter: true },
  S5: { title: 'latency, 1 task / 10 ms, idle worker', unit: 'ms p50', higherIsBetter: false },
  S6: { title: 'sustained end to end, 16 producers, backlog < 1,000', unit: 'tasks/s', higherIsBetter: true },
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

// ---------------------------------------------------------------------------
// Worker processes

interface Child {
  proc: ChildProcess
  role: string
  count: number
  onCount: Set<() => void>
  waitFor(type: string, timeoutMs?: number): Promise<any>
  error: string | null
}

function spawnChild(role: string, a: ProducerAdapter, key: string, ctx: ScenarioContext): Child {
  const proc = fork(new URL('./worker-child.ts', import.meta.url), [JSON.stringify({ role, opts: a.workerOptions(), ledgerKey: key })], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [...(ctx.childExecArgv ?? []).map((f) => f.replace('%ROLE%', `${a.name}-${role}`))],
  })
  const waiters = new Map<string, Array<(m: any) => void>>()
  const child: Child = {
    proc,
    role,
    count: 0,
    onCount: new Set(),
    error: null,
    waitFor(type, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${a.name} ${role}: no "${type}" within ${timeoutMs} ms${child.error ? `: ${child.error}` : ''}`)), timeoutMs)
        const list = waiters.get(type) ?? []
        list.push((m) => {
          clearTimeout(timer)
          if (m.type === 'error') reject(new Error(`${a.name} ${role}: ${m.message}`))
          else resolve(m)
        })
        waiters.set(type, list)
      })
    },
  }
  proc.on('message', (m: any) => {
    if (m.type === 'count') {
      child.count = m.n
      for (const f of child.onCount) f()
      return
    }
    if (m.type === 'error') {
      child.error = m.message
      for (const list of waiters.values()) for (const w of list.splice(0)) w(m)
      return
    }
    for (const w of (waiters.get(m.type) ?? []).splice(0)) w(m)
  })
  proc.on('exit', (code) => {
    if (code && code !== 0) {
      child.error ??= `exited with code ${code}`
      for (const list of waiters.values()) for (const w of list.splice(0)) w({ type: 'error', message: child.error })
    }
  })
  return child
}

interface Delivery {
  worker: Child
  others: Child[]
  start(): Promise<void>
  /** resolves when the worker's count reaches n */
  until(n: number, timeoutMs: number): Promise<boolean>
  stop(): Promise<{ latencies: number[] }>
}

async function startDelivery(a: ProducerAdapter, key: string, ctx: ScenarioContext): Promise<Delivery> {
  const others = (a.extraRoles ?? []).map((r) => spawnChild(r, a, key, ctx))
  const worker = spawnChild('worker', a, key, ctx)
  const all = [...others, worker]
  try {
    await Promise.all(all.map((c) => c.waitFor('ready')))
  } catch (err) {
    for (const c of all) c.proc.kill('SIGKILL')
    throw err
  }
  return {
    worker,
    others,
    async start() {
      await Promise.all(
        all.map((c) => {
          const p = c.waitFor('started')
          c.proc.send({ type: 'start' })
          return p
        }),
      )
    },
    until(n, timeoutMs) {
      return new Promise((resolve) => {
        if (worker.count >= n) return resolve(true)
        const timer = setTimeout(() => {
          worker.onCount.delete(check)
          resolve(false)
        }, timeoutMs)
        const check = () => {
          if (worker.count >= n || worker.error) {
            clearTimeout(timer)
            worker.onCount.delete(check)
            resolve(worker.count >= n)
          }
        }
        worker.onCount.add(check)
      })
    },
    async stop() {
      let latencies: number[] = []
      // Worker first (it must not be left waiting on a relay that is gone), then the rest.
      for (const c of [worker, ...others]) {
        if (c.proc.exitCode !== null) continue
        try {
          const p = c.waitFor('stopped', 20_000)
          c.proc.send({ type: 'stop' })
          const m = await p
          if (c === worker) latencies = m.latencies
        } catch {
          c.proc.kill('SIGKILL')
        }
      }
      return { latencies }
    },
  }
}

async function enqueueBacklog(a: ProducerAdapter, n: number): Promise<void> {
  for (let i = 0; i < n; i += 1000) await a.enqueueBulk(payloads(i, Math.min(1000, n - i)))
}

async function ledgerVerdict(key: string, expected: number) {
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
  const key = ledgerKey(ctx.tag)
  await enqueueBacklog(a, n)
  const d = await startDelivery(a, key, ctx)
  let elapsed = NaN
  let finished = false
  try {
    const progress = () => ctx.onProgress?.(d.worker.count / n)
    d.worker.onCount.add(progress)
    const t0 = nowMs()
    await d.start()
    finished = await d.until(n, 300_000)
    elapsed = nowMs() - t0
    d.worker.onCount.delete(progress)
    // Give late duplicates a moment to show up in the ledger.
    await sleep(250)
  } finally {
    await d.stop()
  }
  const v = await ledgerVerdict(key, n)
  if (!finished) return { value: NaN, valid: false, verdict: `INVALID: only ${d.worker.count} of ${n} finished in time; ${v.detail}` }
  return { value: n / (elapsed / 1000), valid: v.valid, verdict: v.detail }
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

export const RUNNERS: Record<ScenarioId, (a: ProducerAdapter, ctx: ScenarioContext) => Promise<Measurement>> = { S1: s1, S2: s2, S3: s3, S4: s4, S5: s5, S6: s6 }
