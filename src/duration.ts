/**
 * The one rule for durations and delays in taskrelay.
 *
 * - A duration that drives a timer in this process (intervals, leases,
 *   heartbeats, timeouts, grace periods) is at most {@link MAX_TIMER_MS}:
 *   Node's setTimeout treats anything larger as 1 ms, which turns a long
 *   interval into a hot loop and a long timeout into an instant failure.
 * - A delay that only moves a row's run_at in Postgres (enqueue delays,
 *   retry backoff) is at most {@link MAX_DELAY_MS}, far inside the range of
 *   Postgres' timestamptz and bigint.
 */

/** Node's largest timer delay: 2^31 − 1 ms, about 24.8 days. */
export const MAX_TIMER_MS = 2_147_483_647

/** Longest delay before a task runs or retries: 10 years. */
export const MAX_DELAY_MS = 10 * 365 * 24 * 3600 * 1000

/** A delay as Postgres can store it: finite, rounded, within 0..MAX_DELAY_MS. */
export function clampDelayMs(ms: number): number {
  if (Number.isNaN(ms)) return 0
  return Math.min(MAX_DELAY_MS, Math.max(0, Math.round(ms)))
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/**
 * The one duration parser: "1500", "500ms", "30s", "5m", "1h30m", "7d" into
 * milliseconds; a bare number is milliseconds. Returns null for anything else
 * (callers say what was expected, with the setting's name).
 */
export function parseDuration(text: string): number | null {
  const s = text.trim().toLowerCase()
  if (/^\d+$/.test(s)) return Number(s)
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d|w))+$/.test(s)) return null
  let total = 0
  for (const [, n, unit] of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) total += Number(n) * UNIT_MS[unit!]!
  return Math.round(total)
}

/** 1234 → "1.2s", 90_000 → "1m30s", 0 → "0ms". */
export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : ''
  let rest = Math.abs(Math.round(ms))
  if (rest < 1000) return `${sign}${rest}ms`
  if (rest < 60_000) return `${sign}${(rest / 1000).toFixed(rest < 10_000 ? 1 : 0)}s`
  const parts: string[] = []
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
    if (parts.length === 2) break
  }
  return sign + parts.join('')
}
