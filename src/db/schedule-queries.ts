import type { Executor } from './executor.ts'
import { loadSql, quoteIdent } from './sql.ts'

/**
 * The schedules table's statements, Entity + Verb, one params object each
 * (the scheduler's hot ones, claim and advance, are in .sql files beside).
 */

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
  /** a MisfirePolicy (src/scheduler/spec.ts) */
  misfire: string
  overlap: boolean
  /** a ScheduleSource (src/scheduler/spec.ts) */
  source: string
  last_fire_at: Date | null
  next_fire_at: Date | null
  last_task_id: string | null
  last_error: string | null
  created_at: Date
  updated_at: Date
}

/**
 * The columns of ScheduleRow. Listed, never `*`: a prepared `select *` is
 * refused after a migration adds a column, until it is prepared again.
 */
const SCHEDULE_COLUMNS = (
  [
    'id', 'name', 'task_name', 'cron', 'every_ms', 'timezone', 'payload', 'queue', 'priority', 'max_attempts', 'enabled',
    'misfire', 'overlap', 'source', 'last_fire_at', 'next_fire_at', 'last_task_id', 'last_error', 'created_at', 'updated_at',
  ] as const satisfies ReadonlyArray<keyof ScheduleRow>
).join(', ')

const table = (schema: string) => `${quoteIdent(schema)}.schedules`

export interface ScheduleUpsertParams {
  schema: string
  name: string
  taskName: string
  cron: string | null
  everyMs: number | null
  timezone: string
  payloadJson: string
  queue: string | null
  priority: number | null
  maxAttempts: number | null
  /** null: keep the stored value (a new schedule starts enabled) */
  enabled: boolean | null
  misfire: string
  overlap: boolean | null
  source: string
  nextFireAt: Date | null
  now: Date | null
}

/** Insert or update by name (schedule-upsert.sql); undefined when nothing changed. */
export async function scheduleUpsertRow<R extends ScheduleRow = ScheduleRow>(db: Executor, p: ScheduleUpsertParams): Promise<(R & { created: boolean }) | undefined> {
  const res = await db.query<R & { created: boolean }>(loadSql('schedule-upsert.sql', p.schema), [
    p.name, p.taskName, p.cron, p.everyMs, p.timezone, p.payloadJson, p.queue, p.priority, p.maxAttempts,
    p.enabled, p.misfire, p.overlap, p.source, p.nextFireAt, p.now,
  ])
  return res.rows[0]
}

export async function scheduleDelete(db: Executor, p: { schema: string; name: string }): Promise<boolean> {
  const res = await db.query(`delete from ${table(p.schema)} where name = $1`, [p.name])
  return res.rowCount > 0
}

/** One schedule by name; `forUpdate` locks it until the transaction ends. */
export async function scheduleGetRow<R extends ScheduleRow = ScheduleRow>(db: Executor, p: { schema: string; name: string; forUpdate?: boolean }): Promise<R | undefined> {
  const lock = p.forUpdate ? ' for update' : ''
  const res = await db.query<R>(`select ${SCHEDULE_COLUMNS} from ${table(p.schema)} where name = $1${lock}`, [p.name])
  return res.rows[0]
}

export async function scheduleListRows<R extends ScheduleRow = ScheduleRow>(db: Executor, p: { schema: string; taskName: string | null }): Promise<R[]> {
  const res = await db.query<R>(
    `select ${SCHEDULE_COLUMNS} from ${table(p.schema)} where $1::text is null or task_name = $1 order by name`,
    [p.taskName],
  )
  return res.rows
}

export async function scheduleDisable<R extends ScheduleRow = ScheduleRow>(db: Executor, p: { schema: string; name: string }): Promise<R | undefined> {
  const res = await db.query<R>(
    `update ${table(p.schema)} set enabled = false, updated_at = now() where name = $1 returning ${SCHEDULE_COLUMNS}`,
    [p.name],
  )
  return res.rows[0]
}

/** Enable a paused schedule, only if its timing is still the one `nextFireAt` was computed from. */
export async function scheduleEnableIfTiming<R extends ScheduleRow = ScheduleRow>(
  db: Executor,
  p: { schema: string; id: string; nextFireAt: Date; cron: string | null; everyMs: string | null; timezone: string; now: Date | null },
): Promise<R | undefined> {
  const res = await db.query<R>(
    `update ${table(p.schema)}
        set enabled = true, next_fire_at = $2, last_error = null, updated_at = coalesce($6::timestamptz, now())
      where id = $1 and not enabled and cron is not distinct from $3 and every_ms is not distinct from $4 and timezone = $5
      returning ${SCHEDULE_COLUMNS}`,
    [p.id, p.nextFireAt, p.cron, p.everyMs, p.timezone, p.now],
  )
  return res.rows[0]
}

export async function scheduleSetLastTask(db: Executor, p: { schema: string; id: string; taskId: string }): Promise<void> {
  await db.query(`update ${table(p.schema)} set last_task_id = $2 where id = $1`, [p.id, p.taskId])
}

/** Serialise syncs of code-declared schedules until the transaction ends. */
export async function schedulesSyncLock(db: Executor, p: { schema: string }): Promise<void> {
  await db.query('select pg_advisory_xact_lock(hashtext($1))', [`taskrelay.schedules-sync:${p.schema}`])
}

/** Remove code-declared schedules of these tasks that the code no longer declares (schedule-delete-stale-code.sql). */
export async function scheduleDeleteStaleCode(db: Executor, p: { schema: string; taskNames: string[]; declared: string[] }): Promise<string[]> {
  const res = await db.query<{ name: string }>(loadSql('schedule-delete-stale-code.sql', p.schema), [p.taskNames, p.declared])
  return res.rows.map((r) => r.name)
}

/** Enabled schedules of tasks other than these (a scheduler that cannot fire them says so). */
export async function scheduleListOfOtherTasks(db: Executor, p: { schema: string; taskNames: string[] }): Promise<Array<{ name: string; task_name: string }>> {
  const res = await db.query<{ name: string; task_name: string }>(
    `select name, task_name from ${table(p.schema)} where enabled and not (task_name = any($1::text[])) order by name limit 100`,
    [p.taskNames],
  )
  return res.rows
}
