import type { MisfirePolicy, ScheduleRecord, ScheduleSource } from './spec.ts'
import type { ScheduleTiming } from './cron.ts'
import type { ScheduleRow as DbScheduleRow } from '../db/schedule-queries.ts'

/** A schedules row, with the policy columns typed as the scheduler reads them. */
export interface ScheduleRow extends DbScheduleRow {
  misfire: MisfirePolicy
  source: ScheduleSource
}

export function toScheduleRecord(row: ScheduleRow): ScheduleRecord {
  return {
    id: String(row.id),
    name: row.name,
    task: row.task_name,
    cron: row.cron,
    everyMs: row.every_ms === null ? null : Number(row.every_ms),
    timezone: row.timezone,
    payload: row.payload,
    options: {
      ...(row.queue !== null ? { queue: row.queue } : {}),
      ...(row.priority !== null ? { priority: row.priority } : {}),
      ...(row.max_attempts !== null ? { maxAttempts: row.max_attempts } : {}),
    },
    enabled: row.enabled,
    misfire: row.misfire,
    overlap: row.overlap,
    source: row.source,
    lastFireAt: row.last_fire_at,
    nextFireAt: row.next_fire_at,
    lastTaskId: row.last_task_id === null ? null : String(row.last_task_id),
    lastError: row.last_error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  }
}

/** The timing columns of a row (the table's check constraint guarantees one of cron / every_ms). */
export function rowTiming(row: Pick<ScheduleRow, 'cron' | 'every_ms' | 'timezone'>): ScheduleTiming {
  return row.cron !== null ? { cron: row.cron, timezone: row.timezone } : { everyMs: Number(row.every_ms) }
}
