import { taskDependencyList, workerCountServing } from '../db/admin-queries.ts'
import type { TaskRecord } from '../task-record.ts'
import type { TaskState } from '../task-state.ts'
import type { AdminContext } from './context.ts'

/** One task with what it waits on. (Attempts have no history table yet; the record carries the last one.) */
export interface TaskDetail {
  task: TaskRecord
  /** the tasks it depends on, with each one's state, by id */
  dependsOn: Array<{ id: string; name: string; state: TaskState }>
}

/** The task and its dependencies, or null when no task has this id. */
export async function readTaskDetail(ctx: AdminContext, id: string): Promise<TaskDetail | null> {
  const task = await ctx.getTask(id)
  if (!task) return null
  return { task, dependsOn: await taskDependencyList(ctx.executor, { schema: ctx.schema, taskId: id }) }
}

export interface QueueWorkers {
  /** running workers serving the task's queue */
  serving: number
  /** of those, the ones that have the task's handler */
  withTask: number
}

/** Whether any running worker will take this task: a task on a queue nobody serves waits forever. */
export function readTaskWorkers(ctx: Pick<AdminContext, 'executor' | 'schema'>, task: Pick<TaskRecord, 'queue' | 'name'>): Promise<QueueWorkers> {
  return workerCountServing(ctx.executor, { schema: ctx.schema, queue: task.queue, taskName: task.name })
}
