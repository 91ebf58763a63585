import { Cron } from 'croner'
import type { MisfirePolicy } from './spec.ts'

/**
 * Fire-time arithmetic for schedules: validation of cron expressions, time
 * zones and intervals, the next fire time, and which fire times to fire after
 * a late tick or downtime. Pure: no I/O, the caller passes `now`.
 *
 * Cron parsing and evaluation is croner's (v11), in mode "5-or-6-parts":
 * 5 fields (minute-level, seconds = 0) or 6 fields with seconds first. Fire
 * times are whole seconds.
 *
 * ## Daylight saving time (croner's rules, shared with croner-rust and close to Vixie cron)
 *
 * A cron expression is read as wall-clock time in the schedule's `timezone`.
 * croner sorts expressions into two kinds:
 *
 * - **Fixed-time**: seconds, minutes and hours are each a single value
 *   (`30 2 * * *`, `0 30 2 * * *`).
 *   - *Gap* (spring forward, e.g. Europe/Berlin 2025-03-30 02:00 → 03:00): a
 *     time that does not exist that day fires once at the first valid time
 *     after the gap, the same day (02:30 fires at 03:00 CEST).
 *   - *Repeat* (fall back, e.g. 2025-10-26 03:00 → 02:00): a time that occurs
 *     twice fires once, at its first occurrence (02:30 CEST, not 02:30 CET).
 * - **Interval**: any wildcard, step, range or list in seconds, minutes or
 *   hours (`*\/15 * * * *`, `0 30 1,2 * * *`).
 *   - *Gap*: the missing wall-clock times are skipped (a `0 *\/30 * * * *`
 *     schedule fires 01:30 CET then 03:00 CEST; in UTC it keeps firing every 30 minutes).
 *   - *Repeat*: the repeated times fire on both occurrences (02:00 and 02:30 CEST,
 *     then 02:00 and 02:30 CET), so the schedule keeps its real-time rhythm.
 *
 * UTC (the default) has no DST. `every` intervals are plain milliseconds
 * after the previous fire time and ignore time zones altogether.
 */

/** Shortest interval (and, through cron's seconds field, shortest spacing) a schedule may have. */
export const MIN_INTERVAL_MS = 1000
/** Longest `every`: ten years. Longer periods read better as cron. */
export const MAX_INTERVAL_MS = 10 * 366 * 24 * 3600 * 1000

/** When a schedule fires: a cron expression in a zone, or a fixed interval. */
export type ScheduleTiming = { cron: string; timezone: string } | { everyMs: number }

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** An interval in ms from a number of ms or a duration such as "30s", "5m", "1h30m". */
export function parseEvery(value: unknown): { ms: number } | { problem: string } {
  let ms: number
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) return { problem: `must be a whole number of milliseconds, got ${value}` }
    ms = value
  } else if (typeof value === 'string') {
    const text = value.trim()
    if (!/^(\d+(ms|s|m|h|d))+$/.test(text)) {
      return { problem: `cannot read ${JSON.stringify(value)}: use ms or a duration like "30s", "5m", "1h30m" (units ms, s, m, h, d)` }
    }
    ms = 0
    for (const [, n, unit] of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) ms += Number(n) * UNIT_MS[unit!]!
  } else {
    return { problem: 'expected milliseconds (number) or a duration string like "30s"' }
  }
  if (ms < MIN_INTERVAL_MS) return { problem: `must be at least ${MIN_INTERVAL_MS} ms (1s), got ${ms} ms` }
  if (ms > MAX_INTERVAL_MS) return { problem: `must be at most ${MAX_INTERVAL_MS} ms (10 years), got ${ms} ms; use cron for long periods` }
  return { ms }
}

/** Why `timezone` is not a usable IANA zone name, or null when it is. */
export function timezoneProblem(timezone: unknown): string | null {
  const hint = 'use an IANA name such as "UTC", "Europe/Berlin" or "America/New_York"'
  if (typeof timezone !== 'string' || timezone.trim() === '') return `expected a time zone name; ${hint}`
  // Offsets like "+01:00" are accepted by Intl but have no DST rules: not a zone.
  if (/^[+-]\d/.test(timezone)) return `"${timezone}" is a UTC offset, not a time zone; ${hint}`
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone })
    return null
  } catch {
    return `unknown time zone "${timezone}"; ${hint}`
  }
}

const compiled = new Map<string, Cron>()

function compile(expr: string, timezone: string): Cron {
  const key = `${timezone}\u0000${expr}`
  let cron = compiled.get(key)
  if (!cron) {
    // Without a callback a Cron never starts a timer: it is only a calculator.
    cron = new Cron(expr, { timezone, mode: '5-or-6-parts', paused: true })
    if (compiled.size >= 1000) compiled.clear()
    compiled.set(key, cron)
  }
  return cron
}

/** Why `expr` is not a usable cron expression in `timezone`, or null when it is. */
export function cronProblem(expr: unknown, timezone: string, now: Date = new Date()): string | null {
  if (typeof expr !== 'string' || expr.trim() === '') return 'expected a cron expression such as "*/5 * * * *"'
  // Counted here because croner's message names 7-field and date patterns,
  // which mode "5-or-6-parts" (and a date, which croner would run once) excludes.
  const fields = expr.trim().split(/\s+/).length
  if (!expr.trim().startsWith('@') && fields !== 5 && fields !== 6) {
    return `invalid cron expression ${JSON.stringify(expr)}: expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got ${fields}`
  }
  let cron: Cron
  try {
    cron = new Cron(expr, { timezone, mode: '5-or-6-parts', paused: true })
  } catch (err) {
    return `invalid cron expression ${JSON.stringify(expr)}: ${(err as Error).message.replace(/^CronPattern: /, '')}`
  }
  try {
    if (cron.nextRun(now) === null) return `cron expression ${JSON.stringify(expr)} never fires (no matching date)`
  } catch (err) {
    return `cron expression ${JSON.stringify(expr)} cannot be evaluated: ${(err as Error).message}`
  }
  return null
}

/** The first fire time strictly after `after`, or null when the schedule never fires again. */
export function nextFireAfter(timing: ScheduleTiming, after: Date): Date | null {
  if ('everyMs' in timing) return new Date(after.getTime() + timing.everyMs)
  return compile(timing.cron, timing.timezone).nextRun(after)
}

export interface FirePlanInput {
  timing: ScheduleTiming
  /** The stored next_fire_at: the earliest fire time not yet handled (counts as a fire time). */
  nextFireAt: Date
  now: Date
  misfire: MisfirePolicy
  /** A fire time at most this old is on time and fires under every policy. */
  graceMs: number
  /** misfire "all": at most this many missed times fire (the latest ones). */
  maxCatchUp: number
}

export interface FirePlan {
  /** Fire times to enqueue now, ascending. */
  fireTimes: Date[]
  /** The first fire time after `now` (null: the cron expression never fires again). */
  nextFireAt: Date | null
  /** Missed fire times the policy dropped, as a range (for the log), or null. */
  dropped: { first: Date; last: Date } | null
}

/** The fire times of one schedule, from `from` (inclusive) on. */
interface FireSeries {
  /** Fire times in [max(from, windowStart), now], and the first one after now. */
  window(windowStart: number, now: number): { times: Date[]; next: Date | null }
  /** Up to n of the latest fire times in [from, before), ascending. */
  latest(n: number, before: number): Date[]
}

/**
 * Which fire times to fire now and where next_fire_at goes.
 *
 * Times within `graceMs` of `now` are on time (a tick a little late, a short
 * restart) and always fire. Older ones are misfires and follow the policy:
 * - skip: when nothing is on time, fire once, for the latest missed time;
 * - all: fire the latest `maxCatchUp` missed times, then the on-time ones;
 * - none: fire only the on-time ones.
 */
export function planFires(input: FirePlanInput): FirePlan {
  const from = input.nextFireAt.getTime()
  const now = input.now.getTime()
  if (from > now) return { fireTimes: [], nextFireAt: input.nextFireAt, dropped: null }
  const series = 'everyMs' in input.timing ? everySeries(from, input.timing.everyMs) : cronSeries(from, input.timing)
  const windowStart = now - input.graceMs
  const onTime = series.window(windowStart, now)
  if (from >= windowStart) return { fireTimes: onTime.times, nextFireAt: onTime.next, dropped: null }

  const range = (first: number, last: Date | undefined) => (last ? { first: new Date(first), last } : null)
  switch (input.misfire) {
    case 'all': {
      const kept = series.latest(Math.max(1, input.maxCatchUp), windowStart)
      const firstKept = kept[0]!.getTime()
      const dropped = firstKept > from ? range(from, series.latest(1, firstKept)[0]) : null
      return { fireTimes: [...kept, ...onTime.times], nextFireAt: onTime.next, dropped }
    }
    case 'skip': {
      if (onTime.times.length > 0) {
        return { fireTimes: onTime.times, nextFireAt: onTime.next, dropped: range(from, series.latest(1, windowStart)[0]) }
      }
      const latest = series.latest(1, windowStart)[0]!
      const dropped = latest.getTime() > from ? range(from, series.latest(1, latest.getTime())[0]) : null
      return { fireTimes: [latest], nextFireAt: onTime.next, dropped }
    }
    case 'none':
      return { fireTimes: onTime.times, nextFireAt: onTime.next, dropped: range(from, series.latest(1, windowStart)[0]) }
  }
}

function everySeries(from: number, every: number): FireSeries {
  const at = (i: number) => new Date(from + i * every)
  return {
    window(windowStart, now) {
      const first = from >= windowStart ? 0 : Math.ceil((windowStart - from) / every)
      const last = Math.floor((now - from) / every)
      const times: Date[] = []
      for (let i = first; i <= last; i++) times.push(at(i))
      return { times, next: at(last + 1) }
    },
    latest(n, before) {
      const end = Math.ceil((before - from) / every) // fire times with index < end are before `before`
      const times: Date[] = []
      for (let i = Math.max(0, end - n); i < end; i++) times.push(at(i))
      return times
    },
  }
}

function cronSeries(from: number, timing: { cron: string; timezone: string }): FireSeries {
  const cron = compile(timing.cron, timing.timezone)
  return {
    window(windowStart, now) {
      const times: Date[] = []
      // nextRun(t) is strictly after t, so t - 1 ms finds a run at windowStart itself.
      let t: Date | null = from >= windowStart ? new Date(from) : cron.nextRun(new Date(windowStart - 1))
      while (t !== null && t.getTime() <= now) {
        times.push(t)
        const next: Date | null = cron.nextRun(t)
        if (next !== null && next.getTime() <= t.getTime()) throw new Error(`cron ${timing.cron} did not advance past ${t.toISOString()}`)
        t = next
      }
      return { times, next: t }
    },
    latest(n, before) {
      // previousRuns is strictly before its reference; `from` itself counts
      // as a fire time even if an edited definition no longer matches it.
      const found = cron.previousRuns(n, new Date(before)).filter((t) => t.getTime() > from)
      if (found.length < n && from < before) found.push(new Date(from))
      return found.reverse()
    },
  }
}
