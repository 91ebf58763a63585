import { z } from 'zod/v4'
import { delayMs, timerMs } from '../config.ts'

/**
 * Scheduler settings (public, validated at the edge like the others in
 * src/config.ts; kept here until that file takes it over).
 */
export const schedulerSettingsSchema = z
  .strictObject({
    /** schedules claimed per tick (one transaction) */
    batchSize: z.number().int().min(1).max(1000).default(100),
    /** longest sleep between ticks; NOTIFY on schedule changes wakes earlier */
    maxSleepMs: timerMs(10).default(30_000),
    /** a fire time at most this late is on time and fires under every misfire policy */
    misfireGraceMs: delayMs(0).default(10_000),
    /** misfire "all": at most this many missed fire times per schedule are fired (the latest) */
    maxCatchUp: z.number().int().min(1).max(10_000).default(100),
    /** upsert the tasks' defineTask({ schedules }) at start and remove ones no longer declared */
    syncSchedules: z.boolean().default(true),
  })
  .default({} as never)

export type SchedulerSettings = z.output<typeof schedulerSettingsSchema>
