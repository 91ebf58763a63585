import { randomUUID } from 'node:crypto'
import type { Executor } from '../db/executor.ts'
import { workflowCancel, workflowGet, workflowInsert, workflowTasks, type WorkflowRecord, type WorkflowTask } from '../db/workflow-queries.ts'
import { InvalidOptionsError, InvalidWorkflowError, TaskFailedError, WaitTimeoutError, WorkflowFailedError } from '../errors.ts'
import type { WaitForOptions } from '../db/task-listener.ts'
import { isUuid, type TaskRecord } from '../task-record.ts'
import type { WorkflowNode, WorkflowOptions } from './canvas.ts'
import { planWorkflow } from './plan.ts'

/** What the workflow functions need of TaskRelay. */
export interface WorkflowHost {
  readonly schema: string
  readonly maxPayloadBytes: number
  readonly executor: Executor
  waitFor(id: string, options?: WaitForOptions): Promise<TaskRecord>
}

/** A workflow with its tasks (getWorkflow). */
export interface WorkflowDetail extends WorkflowRecord {
  tasks: WorkflowTask[]
}

/** Check, then write the workflow and all its tasks in one statement on `db`. */
export async function enqueueWorkflow(
  host: WorkflowHost,
  db: Executor,
  flow: WorkflowNode<unknown, unknown>,
  options: WorkflowOptions = {},
): Promise<{ id: string; taskIds: string[] }> {
  const plan = await planWorkflow(flow, options ?? {}, host.maxPayloadBytes)
  const addTo = options?.addTo
  if (addTo !== undefined) await checkGrowable(db, host.schema, addTo, options)
  const id = addTo ?? randomUUID()
  const taskIds = await workflowInsert(db, { schema: host.schema, id, plan })
  return { id, taskIds }
}

/** addTo: an existing workflow, still open (on `db`: inside the caller's transaction, it sees that transaction's rows). */
async function checkGrowable(db: Executor, schema: string, addTo: string, options: WorkflowOptions): Promise<void> {
  const problems: string[] = []
  if (!isWorkflowId(addTo)) problems.push(`addTo: expected a workflow id (a UUID), got ${JSON.stringify(addTo)}`)
  if (options.name !== undefined || options.onError !== undefined) problems.push('addTo: the workflow keeps its own name and onError; leave them out')
  if (problems.length === 0) {
    const row = await workflowGet(db, { schema, id: addTo })
    if (!row) problems.push(`addTo: no workflow has the id ${addTo}`)
    else if (row.finishedAt !== null || row.state === 'cancelled') problems.push(`addTo: workflow ${addTo} is ${row.state === 'cancelled' ? 'cancelled' : 'finished'}; start a new one`)
  }
  if (problems.length > 0) throw new InvalidWorkflowError(problems)
}

/** The workflow's status and its tasks, or null when no workflow has this id. */
export async function getWorkflow(host: Pick<WorkflowHost, 'schema' | 'executor'>, id: string): Promise<WorkflowDetail | null> {
  checkId(id)
  const record = await workflowGet(host.executor, { schema: host.schema, id })
  if (!record) return null
  return { ...record, tasks: await workflowTasks(host.executor, { schema: host.schema, id }) }
}

/** Cancel every unfinished task of the workflow; returns how many. */
export function cancelWorkflow(host: Pick<WorkflowHost, 'schema' | 'executor'>, id: string): Promise<number> {
  checkId(id)
  return workflowCancel(host.executor, { schema: host.schema, id })
}

/**
 * Resolve with the workflow's result (its last step's, or the list of a
 * final group's) once it succeeded; reject with WorkflowFailedError naming
 * the failed step when a step failed or the workflow was cancelled.
 */
export async function waitForWorkflow(host: WorkflowHost, id: string, options: WaitForOptions = {}): Promise<unknown> {
  checkId(id)
  const record = await workflowGet(host.executor, { schema: host.schema, id })
  if (!record) throw new InvalidOptionsError('waitForWorkflow call', [`no workflow has the id ${id}`])
  const deadline = options.timeoutMs === undefined ? null : Date.now() + options.timeoutMs
  const results: unknown[] = []
  try {
    for (const taskId of record.resultTaskIds) {
      const timeoutMs = deadline === null ? undefined : Math.max(1, deadline - Date.now())
      results.push((await host.waitFor(taskId, { signal: options.signal, ...(timeoutMs === undefined ? {} : { timeoutMs }) })).result)
    }
  } catch (err) {
    if (!(err instanceof TaskFailedError) || err instanceof WaitTimeoutError) throw err
    const now = await workflowGet(host.executor, { schema: host.schema, id })
    throw new WorkflowFailedError(id, now?.state ?? 'failed', now?.failedTaskId ?? null, now?.failedError ?? err.message)
  }
  return record.resultIsList ? results : results[0]
}

/** Whether `id` has the form of a workflow id (a UUID). */
export const isWorkflowId = isUuid

function checkId(id: string): void {
  if (!isWorkflowId(id)) throw new InvalidOptionsError('workflow id', [`expected a workflow id (a UUID), got ${JSON.stringify(id)}`])
}
