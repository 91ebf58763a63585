
/** What to do about fire times missed while no scheduler ran (see docs/scheduling.md). */
export type MisfirePolicy = 'skip' | 'all' | 'none'

export const MISFIRE_POLICIES: readonly MisfirePolicy[] = ['skip', 'all', 'none']

/** Enqueue options a schedule may set; each left out takes the task's default at fire time. */
export interface ScheduleTaskOptions {
  queue?: string
  priority?: number
  maxAttempts?: number
}

/**
 * A periodic schedule, as given to defineTask({ schedules }) or tr.schedules.upsert().
 * Exactly one of `cron` or `every` must be set.
 *
 * @example
 * defineTask({
 *   name: 'report.daily', payload: z.object({ kind: z.string() }), run,
 *   schedules: [{ name: 'daily-report', cron: '30 2 * * *', timezone: 'Europe/Berlin', payload: { kind: 'sales' } }],
 * })
 */
export interface TaskScheduleSpec {
  /** Unique schedule name: 1-200 of A-Z a-z 0-9 _ . : / - */
  name: string
  /** Cron expression (5 fields, or 6 with seconds first), evaluated in `timezone`. */
  cron?: string
  /** Fixed interval in ms (at least 1000), or a duration such as "30s", "5m", "1h30m". */
  every?: number | string
  /** IANA time zone for `cron`, default "UTC". Not allowed with `every`. */
  timezone?: string
  /** Checked against the task's payload schema; default `{}`. */
  payload?: unknown
  options?: ScheduleTaskOptions
  /** What to do about fire times missed while no scheduler ran. Default "skip". */
  misfire?: MisfirePolicy
  /** false: do not fire while the previous fire's task has not finished. Default true. */
  overlap?: boolean
  /** Left out: true for a new schedule, unchanged for an existing one (a pause survives restarts). */
  enabled?: boolean
}


/** Where a schedule comes from: defineTask (kept in sync by schedulers) or by hand. */
export type ScheduleSource = 'code' | 'manual'

/** A row of the schedules table, as scheduleList()/scheduleGet() return it. */
export interface ScheduleRecord {
  id: string
  name: string
  task: string
  cron: string | null
  everyMs: number | null
  timezone: string
  payload: unknown
  options: ScheduleTaskOptions
  enabled: boolean
  misfire: MisfirePolicy
  overlap: boolean
  source: ScheduleSource
  lastFireAt: Date | null
  nextFireAt: Date | null
  lastTaskId: string | null
  lastError: string | null
  createdAt: Date
  updatedAt: Date
}
