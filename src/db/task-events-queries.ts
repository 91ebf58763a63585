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
