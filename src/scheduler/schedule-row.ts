import type { MisfirePolicy, ScheduleRecord, ScheduleSource } from './spec.ts'
import type { ScheduleTiming } from './cron.ts'

/** A schedules row as pg returns it (bigints as strings). */
export interface ScheduleRow {
  id: string
  name: string
  task_name: string
  cron: string | null
  every_ms: string | null
  timezone: string
  payload: unknown
  queue: string | null
  priority: number | null
  max_attempts: number | null
  enabled: boolean
  misfire: MisfirePolicy
  overlap: boolean
  source: ScheduleSource
  last_fire_at: Date | null
  next_fire_at: Date | null
  last_task_id: string | null
  last_error: string | null
  created_at: Date
  updated_at: Date
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
