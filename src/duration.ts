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
