import type { Executor } from './executor.ts'
import { loadSql, plainArray } from './sql.ts'
import type { TaskErrorRecord, TaskProgress } from '../task-record.ts'
import type { TaskState } from '../task-state.ts'

/** What tr.events adds to an event from its task's row (task-events-rows.sql). */
export interface TaskEventRow {
  id: string
  name: string
  state: TaskState
  attempt: number
  max_attempts: number
  workflow_id: string | null
  progress: TaskProgress | null
  last_error: TaskErrorRecord | null
}

/** The rows of `ids` (one notification's), by id; deleted ones are absent. */
export async function taskEventRows(db: Executor, p: { schema: string; ids: readonly string[] }): Promise<Map<string, TaskEventRow>> {
  const res = await db.query<TaskEventRow>(loadSql('task-events-rows.sql', p.schema), [plainArray(p.ids)])
  return new Map(res.rows.map((r) => [r.id, r]))
}

/** Register (or renew) a listener of task events for `ttlMs` (task-event-listener-renew.sql). */
export async function taskEventListenerRenew(db: Executor, p: { schema: string; id: string; ttlMs: number }): Promise<void> {
  await db.query(loadSql('task-event-listener-renew.sql', p.schema), [p.id, p.ttlMs])
}

/** Unregister a listener of task events (task-event-listener-remove.sql). */
export async function taskEventListenerRemove(db: Executor, p: { schema: string; id: string }): Promise<void> {
  await db.query(loadSql('task-event-listener-remove.sql', p.schema), [p.id])
}
