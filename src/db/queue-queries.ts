import type { Executor } from './executor.ts'
import { loadSql } from './sql.ts'

/** Queue settings as the queues table stores them (0013); undefined: not given (keep), null: none. */
export interface QueueSettingsRow {
  concurrency?: number | null
  rate_limit?: number | null
  rate_per_ms?: number | null
  group_concurrency?: number | null
  group_rate_limit?: number | null
  group_rate_per_ms?: number | null
}

/** One row of queue-status.sql. */
export interface QueueStatusRow {
  queue: string
  paused: boolean
  paused_groups: string[]
  concurrency: number | null
  rate_limit: number | null
  rate_per_ms: string | null
  group_concurrency: number | null
  group_rate_limit: number | null
  group_rate_per_ms: string | null
  throttled_until: Date | null
  source: 'code' | 'runtime' | 'none'
  due: number
  delayed: number
  dispatched: number
  running: number
}

/** Set the given settings of a queue (queue-configure.sql). */
export async function queueConfigure(db: Executor, p: { schema: string; queue: string; settings: QueueSettingsRow }): Promise<void> {
  await db.query(loadSql('queue-configure.sql', p.schema), [p.queue, JSON.stringify(p.settings)])
}

/** Every queue (queue null) or one, with settings and counts (queue-status.sql). */
export async function queueStatus(db: Executor, p: { schema: string; queue: string | null }): Promise<QueueStatusRow[]> {
  return (await db.query<QueueStatusRow>(loadSql('queue-status.sql', p.schema), [p.queue])).rows
}

/** Pause or resume a queue, or one group of it; resume returns false when nothing was paused. */
export async function queueSetPaused(db: Executor, p: { schema: string; queue: string; group: string | null; paused: boolean }): Promise<boolean> {
  const res = await db.query<{ resumed?: boolean }>(loadSql(p.paused ? 'queue-pause.sql' : 'queue-resume.sql', p.schema), [p.queue, p.group])
  return p.paused || res.rows[0]?.resumed === true
}

/** Sync declared settings (queues-sync-code.sql); returns the queues whose run-time settings were kept. */
export async function queuesSyncCode(db: Executor, p: { schema: string; declared: ReadonlyMap<string, QueueSettingsRow> }): Promise<string[]> {
  if (p.declared.size === 0) return []
  const rows = [...p.declared].map(([name, row]) => ({ name, ...row }))
  const res = await db.query<{ name: string }>(loadSql('queues-sync-code.sql', p.schema), [JSON.stringify(rows)])
  return res.rows.map((r) => r.name)
}

/** A task's group (null: none) and why it is not running, in words (task-flow-reason.sql), or null. */
export async function taskFlowReason(db: Executor, p: { schema: string; id: string }): Promise<{ groupKey: string | null; reason: string | null }> {
  const res = await db.query<{ group_key: string | null; reason: string | null }>(loadSql('task-flow-reason.sql', p.schema), [p.id])
  return { groupKey: res.rows[0]?.group_key ?? null, reason: res.rows[0]?.reason ?? null }
}

/** Why each of these pending tasks is held back (tasks-flow-reasons.sql), by id; tasks nothing holds are left out. */
export async function tasksFlowReasons(db: Executor, p: { schema: string; ids: readonly string[] }): Promise<Map<string, string>> {
  if (p.ids.length === 0) return new Map()
  const res = await db.query<{ id: string; reason: string }>(loadSql('tasks-flow-reasons.sql', p.schema), [p.ids])
  return new Map(res.rows.map((r) => [String(r.id), r.reason]))
}

/** Which of these queues are paused, whole (group_key null) or by group (queues-paused.sql). */
export async function queuesPaused(db: Executor, p: { schema: string; queues: readonly string[] }): Promise<Array<{ queue: string; group_key: string | null }>> {
  return (await db.query<{ queue: string; group_key: string | null }>(loadSql('queues-paused.sql', p.schema), [p.queues])).rows
}
