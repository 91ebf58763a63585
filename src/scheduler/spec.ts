/**
 * A periodic schedule, as given to defineTask({ schedules }) or tr.schedule().
 * Exactly one of `cron` or `every` must be set.
 */
export interface TaskScheduleSpec {
  /** Unique schedule name. */
  name: string
  /** Cron expression (5 or 6 fields, seconds first when 6), evaluated in `timezone`. */
  cron?: string
  /** Fixed interval in ms, or a duration string such as "30s", "5m", "1h". */
  every?: number | string
  /** IANA time zone, default "UTC". */
  timezone?: string
  payload?: unknown
  options?: { queue?: string; priority?: number; maxAttempts?: number }
  /** What to do about fire times missed while no scheduler ran. Default "skip". */
  misfire?: 'skip' | 'all' | 'none'
  /** false: do not fire while the previous fire's task has not finished. Default true. */
  overlap?: boolean
  enabled?: boolean
}
