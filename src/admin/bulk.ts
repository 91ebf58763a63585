import { taskChangeMany, taskCount, type TaskFilterParams } from '../db/admin-queries.ts'
import { FINAL_STATES, TASK_STATES } from '../task-state.ts'
import type { AdminContext } from './context.ts'

/**
 * Retry or cancel every task that matches, through the schema's own retry()
 * and cancel() functions: each re-checks the state in its UPDATE, so a task
 * that moved on meanwhile is left alone and not counted.
 */
export interface BulkFilter {
  /** a task name; * matches anything */
  task?: string | null
  queue?: string | null
}

type Ctx = Pick<AdminContext, 'executor' | 'schema'>

const UNFINISHED_STATES = TASK_STATES.filter((s) => !FINAL_STATES.includes(s))

function failedFilter(f: BulkFilter & { failedWithinMs?: number | null }): TaskFilterParams {
  return { states: ['failed'], name: f.task, queue: f.queue, finishedWithinMs: f.failedWithinMs }
}

/** How many failed tasks match (what retryFailed would retry, barring races). */
export function countFailed(ctx: Ctx, f: BulkFilter & { failedWithinMs?: number | null }): Promise<number> {
  return taskCount(ctx.executor, { schema: ctx.schema, filter: failedFilter(f) })
}

/** Put every matching failed task back to pending; returns how many were retried. */
export function retryFailed(ctx: Ctx, f: BulkFilter & { failedWithinMs?: number | null }): Promise<number> {
  return taskChangeMany(ctx.executor, { schema: ctx.schema, fn: 'retry', filter: failedFilter(f) })
}

/** Cancel every matching unfinished task; returns how many were cancelled. */
export function cancelUnfinished(ctx: Ctx, f: BulkFilter): Promise<number> {
  return taskChangeMany(ctx.executor, { schema: ctx.schema, fn: 'cancel', filter: { states: UNFINISHED_STATES, name: f.task, queue: f.queue } })
}
