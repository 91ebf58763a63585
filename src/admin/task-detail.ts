import { taskDependencyList, workerCountServing } from '../db/admin-queries.ts'
import { taskFlowReason } from '../db/queue-queries.ts'
import { taskAttempts } from '../db/task-queries.ts'
import type { AttemptRecord, TaskProgress, TaskRecord } from '../task-record.ts'
import type { TaskState } from '../task-state.ts'
import type { AdminContext } from './context.ts'

/** One task with its attempts and what it waits on. */
export interface TaskDetail {
  task: TaskRecord
  /** every attempt, oldest first, the running one included (task_attempt_history) */
  attempts: AttemptRecord[]
  /** the latest ctx.progress() of the running or last attempt */
  progress: TaskProgress | null
  /** the tasks it depends on, with each one's state, by id */
  dependsOn: Array<{ id: string; name: string; state: TaskState }>
  /** its group in the queue (enqueue's groupKey), or null */
  groupKey: string | null
  /**
   * Why a pending task does not run yet, or null: "queue emails is paused",
   * "queue emails at its limit of 5", "group tenant-7 of queue imports
   * rate-limited (10 per 60000 ms) until 12:00:03", "delayed until …".
   */
  heldBack: string | null
}

/** The task and its dependencies, or null when no task has this id. */
export async function readTaskDetail(ctx: AdminContext, id: string): Promise<TaskDetail | null> {
  const task = await ctx.getTask(id)
  if (!task) return null
  const [dependsOn, flow, attempts] = await Promise.all([
    taskDependencyList(ctx.executor, { schema: ctx.schema, taskId: id }),
    taskFlowReason(ctx.executor, { schema: ctx.schema, id }),
    taskAttempts(ctx.executor, { schema: ctx.schema, id }),
  ])
  return { task, attempts, progress: task.progress, dependsOn, groupKey: flow.groupKey, heldBack: flow.reason }
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
