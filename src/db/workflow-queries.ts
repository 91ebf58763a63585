import type { Executor } from './executor.ts'
import { loadSql, plainArray } from './sql.ts'
import type { TaskState } from '../task-state.ts'

/** A compensating or error-callback task, as the sweeper enqueues it (0012 workflow_compensate). */
export interface StoredStep {
  name: string
  payload: unknown
  queue: string
  priority: number
  maxAttempts: number
}

/** One task row of a workflow, in insertion order: a row depends only on rows before it. */
export interface PlannedRow {
  name: string
  queue: string
  payloadJson: string
  priority: number
  maxAttempts: number
  delayMs: number
  /** indexes of the rows it waits for, in the order their results are listed */
  dependsOn: number[]
  /** 'result': its payload is the one predecessor's result; 'results': the list of them; null: its own payload */
  input: 'result' | 'results' | null
  compensation: StoredStep | null
}

export interface PlannedWorkflow {
  name: string
  rows: PlannedRow[]
  /** rows whose results are the workflow's (the last step, or a final group's members) */
  resultRows: number[]
  resultIsList: boolean
  onError: StoredStep | null
}

/** Insert a planned workflow and its tasks (workflow-insert.sql); task ids come back in row order. */
export async function workflowInsert(db: Executor, p: { schema: string; id: string; plan: PlannedWorkflow }): Promise<string[]> {
  const { rows, name, onError, resultRows, resultIsList } = p.plan
  const res = await db.query<{ id: string }>(loadSql('workflow-insert.sql', p.schema), [
    p.id,
    name,
    onError ? JSON.stringify(onError) : null,
    plainArray(resultRows),
    resultIsList,
    rows.map((r) => r.name),
    rows.map((r) => r.queue),
    rows.map((r) => r.payloadJson),
    rows.map((r) => `{${r.dependsOn.join(',')}}`),
    plainArray(rows.map((r) => r.priority)),
    plainArray(rows.map((r) => r.maxAttempts)),
    plainArray(rows.map((r) => r.delayMs)),
    rows.map((r) => r.input),
    rows.map((r) => (r.compensation ? JSON.stringify(r.compensation) : null)),
  ])
  return res.rows.map((r) => String(r.id))
}

/** A workflow as the workflow_status view (0012) shows it. */
export interface WorkflowRecord {
  id: string
  name: string
  state: 'running' | 'succeeded' | 'failed' | 'cancelled'
  counts: Record<TaskState, number> & { total: number }
  createdAt: Date
  finishedAt: Date | null
  failedTaskId: string | null
  failedError: string | null
  /** the steps whose results are the workflow's */
  resultTaskIds: string[]
  /** true: the workflow's result is the list of those steps' results (it ends with a group) */
  resultIsList: boolean
}

interface WorkflowRow {
  id: string
  name: string
  state: WorkflowRecord['state']
  total: number
  waiting: number
  pending: number
  dispatched: number
  running: number
  succeeded: number
  failed: number
  cancelled: number
  created_at: Date
  finished_at: Date | null
  failed_task_id: string | null
  failed_error: string | null
  result_task_ids: string[]
  result_is_list: boolean
}

export async function workflowGet(db: Executor, p: { schema: string; id: string }): Promise<WorkflowRecord | null> {
  const r = (await db.query<WorkflowRow>(loadSql('workflow-get.sql', p.schema), [p.id])).rows[0]
  if (!r) return null
  const { total, waiting, pending, dispatched, running, succeeded, failed, cancelled } = r
  return {
    id: r.id,
    name: r.name,
    state: r.state,
    counts: { total, waiting, pending, dispatched, running, succeeded, failed, cancelled },
    createdAt: r.created_at,
    finishedAt: r.finished_at,
    failedTaskId: r.failed_task_id,
    failedError: r.failed_error,
    resultTaskIds: r.result_task_ids,
    resultIsList: r.result_is_list,
  }
}

/** One task of a workflow, with what it waits for (workflow-tasks.sql). */
export interface WorkflowTask {
  id: string
  name: string
  queue: string
  state: TaskState
  attempt: number
  maxAttempts: number
  startedAt: Date | null
  finishedAt: Date | null
  error: string | null
  dependsOn: string[]
}

export async function workflowTasks(db: Executor, p: { schema: string; id: string }): Promise<WorkflowTask[]> {
  const res = await db.query<{
    id: string
    name: string
    queue: string
    state: TaskState
    attempt: number
    max_attempts: number
    started_at: Date | null
    finished_at: Date | null
    error: string | null
    depends_on: string[]
  }>(loadSql('workflow-tasks.sql', p.schema), [p.id])
  return res.rows.map((r) => ({
    id: r.id,
    name: r.name,
    queue: r.queue,
    state: r.state,
    attempt: r.attempt,
    maxAttempts: r.max_attempts,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    error: r.error,
    dependsOn: r.depends_on,
  }))
}

/** Cancel every unfinished task of a workflow (0012 cancel_workflow); returns how many. */
export async function workflowCancel(db: Executor, p: { schema: string; id: string }): Promise<number> {
  const res = await db.query<{ n: number }>(`select "${p.schema}".cancel_workflow($1::uuid) as n`, [p.id])
  return res.rows[0]!.n
}
