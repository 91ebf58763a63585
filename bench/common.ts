/**
 * Shared settings and small helpers for the benchmark suite.
 * Everything here is bench-only: nothing in src/ imports it.
 */
import { performance } from 'node:perf_hooks'

export const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
/** The ledger lives in its own Redis database so no system under test can touch it. */
export const LEDGER_REDIS_DB = Number(process.env.BENCH_LEDGER_DB ?? 15)

export const SYSTEMS = ['taskrelay', 'bullmq', 'pg-boss', 'graphile-worker'] as const
/** taskrelay at another commit (--baseline <ref>); never in the default set. */
export const BASELINE_SYSTEM = 'taskrelay-baseline'
export type SystemName = (typeof SYSTEMS)[number] | typeof BASELINE_SYSTEM

// S4L (S4 with a global limit that does not bind) follows S4, so both run back to back in each round.
export const SCENARIOS = ['S1', 'S2', 'S3', 'S4', 'S4L', 'S5', 'S6', 'S7', 'S8', 'S9'] as const
export type ScenarioId = (typeof SCENARIOS)[number]

/** What every benchmark task carries: a sequence number unique within one run, and when its enqueue call began. */
export interface BenchPayload {
  /** 0..N-1 within a run: the ledger's key */
  n: number
  /** epoch ms (fractional) when the enqueue call began; S5 only */
  t?: number
  /** S9: the task's group, 0..groups-1 (taskrelay: groupKey `g<g>`) */
  g?: number
}

/** Epoch milliseconds with sub-millisecond resolution, comparable across processes on one machine. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now()
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** A figure for the tables: 3 significant-ish digits, thousands separated, "—" for none. */
export function fmt(x: number | null | undefined, digits?: number): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—'
  const d = digits ?? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2)
  return x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * s.length)
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]!
}

/** A short identifier usable in schema names, Redis prefixes and queue names. */
export function runTag(system: string, scenario: string, run: number): string {
  const sys = system.replace(/[^a-z0-9]/g, '')
  return `${sys}_${scenario.toLowerCase()}_r${run}_${process.pid}`
}

/** Run `fn` over 0..count-1 with `concurrency` loops, each awaiting its previous call. */
export async function runLoops(count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  const loop = async () => {
    for (;;) {
      const i = next++
      if (i >= count) return
      await fn(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, loop))
}
