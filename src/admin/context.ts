import type { Executor } from '../db/executor.ts'
import type { TaskRecord } from '../task-record.ts'

/**
 * What the read models and bulk actions need: an executor, the schema, and
 * the task lookup. `TaskRelay` satisfies it, and so does anything narrower.
 */
export interface AdminContext {
  readonly executor: Executor
  readonly schema: string
  getTask(id: string): Promise<TaskRecord | null>
}
