import type { TaskRelay } from '../task-relay.ts'
import type { Task } from '../define-task.ts'
import { retryFailed } from '../admin/bulk.ts'
import { listQueues } from '../admin/queues.ts'
import { InvalidOptionsError, ScheduleError, ScheduleNotFoundError, TaskNotFoundError } from '../errors.ts'
import { parseTaskId } from './api-reads.ts'
import { DashboardRequestError } from './request-error.ts'
import { decodeSegment } from './http.ts'

/**
 * The POST actions, each one call of the library (the same as the CLI's):
 *
 *   /api/tasks/<id>/retry | cancel
 *   /api/tasks/retry-failed        { queue?, task? }   bulk retry of a filter
 *   /api/queues/<name>/pause | resume
 *   /api/schedules/<name>/pause | resume | run
 *
 * The caller has checked the operator and the CSRF token already.
 */
export const ACTION_PATHS = '/api/tasks/<id>/retry, /api/tasks/<id>/cancel, /api/tasks/retry-failed, /api/queues/<name>/pause|resume, /api/schedules/<name>/pause|resume|run'

export interface ActionContext {
  tr: TaskRelay
  /** task definitions, for "run now" (it checks the stored payload against them) */
  tasks: readonly Task[] | undefined
}

/** The action's answer (`message` is shown to the operator), or undefined when no action has this path. */
export async function runAction(ctx: ActionContext, path: string, body: Record<string, unknown>): Promise<{ message: string; [key: string]: unknown } | undefined> {
  if (path === '/api/tasks/retry-failed') {
    const queue = optionalText(body, 'queue')
    const task = optionalText(body, 'task')
    const n = await retryFailed(ctx.tr, { queue, task })
    return { message: `${n} failed task${n === 1 ? '' : 's'} put back to pending`, retried: n }
  }
  let m = /^\/api\/tasks\/([^/]+)\/(retry|cancel)$/.exec(path)
  if (m) return taskAction(ctx.tr, decodeSegment(m[1]!), m[2] as 'retry' | 'cancel')
  m = /^\/api\/queues\/([^/]+)\/(pause|resume)$/.exec(path)
  if (m) return queueAction(ctx.tr, decodeSegment(m[1]!), m[2] as 'pause' | 'resume')
  m = /^\/api\/schedules\/([^/]+)\/(pause|resume|run)$/.exec(path)
  if (m) return scheduleAction(ctx, decodeSegment(m[1]!), m[2] as 'pause' | 'resume' | 'run')
  return undefined
}

function optionalText(body: Record<string, unknown>, key: string): string | null {
  const v = body[key]
  if (v === undefined || v === null || v === '') return null
  if (typeof v !== 'string' || v.length > 200) throw new DashboardRequestError(400, `${key}: expected a text of at most 200 characters`)
  return v
}

async function taskAction(tr: TaskRelay, idText: string, verb: 'retry' | 'cancel') {
  const id = parseTaskId(idText)
  let changed: boolean
  try {
    changed = verb === 'retry' ? await tr.retry(id) : await tr.cancel(id)
  } catch (err) {
    if (err instanceof TaskNotFoundError) throw new DashboardRequestError(404, `no task ${id} in schema "${tr.schema}"`)
    throw err
  }
  if (!changed) {
    const why = verb === 'retry' ? 'only a failed or cancelled task can be retried' : 'it has finished already'
    throw new DashboardRequestError(409, `task ${id} was not ${verb === 'retry' ? 'retried' : 'cancelled'}: ${why}`)
  }
  return { message: verb === 'retry' ? `task ${id} put back to pending` : `task ${id} cancelled` }
}

async function queueAction(tr: TaskRelay, name: string, verb: 'pause' | 'resume') {
  // Only a queue that exists: a typo must not create a paused queue nobody sees.
  if (!(await listQueues(tr)).some((q) => q.queue === name)) throw new DashboardRequestError(404, `no queue "${name.slice(0, 100)}" in schema "${tr.schema}"`)
  try {
    if (verb === 'pause') await tr.queue(name).pause()
    else await tr.queue(name).resume()
  } catch (err) {
    if (err instanceof InvalidOptionsError) throw new DashboardRequestError(400, err.message)
    throw err
  }
  return { message: `queue ${name} ${verb === 'pause' ? 'paused: nothing new starts, running tasks finish' : 'resumed'}` }
}

async function scheduleAction(ctx: ActionContext, name: string, verb: 'pause' | 'resume' | 'run') {
  try {
    if (verb === 'pause') await ctx.tr.schedules.pause(name)
    else if (verb === 'resume') await ctx.tr.schedules.resume(name)
    else {
      if (!ctx.tasks) {
        throw new DashboardRequestError(409, 'run now needs the task definitions to check the stored payload; start the dashboard with --tasks <module> (or pass tasks to createDashboardHandler)')
      }
      const { taskId } = await ctx.tr.schedules.runNow(name, { tasks: ctx.tasks })
      return { message: `schedule ${name} ran now: task ${taskId}`, taskId }
    }
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new DashboardRequestError(404, `no schedule "${name.slice(0, 100)}" in schema "${ctx.tr.schema}"`)
    if (err instanceof ScheduleError) throw new DashboardRequestError(409, err.message)
    throw err
  }
  return { message: `schedule ${name} ${verb === 'pause' ? 'paused' : 'resumed'}` }
}
