import { taskList } from '../db/admin-queries.ts'
import { tasksFlowReasons } from '../db/queue-queries.ts'
import { InvalidFiltersError } from '../errors.ts'
import { storableText } from '../jsonb.ts'
import { MAX_DELAY_MS, formatDuration, parseDuration } from '../duration.ts'
import { TASK_STATES, type TaskState } from '../task-state.ts'
import type { AdminContext } from './context.ts'
import { isWorkflowId } from '../workflow/workflows.ts'

/** Which tasks to list, and which page: newest first, by offset or by keyset cursor (`after`). */
export interface ListFilters {
  states: TaskState[] | null
  /** a task name; * matches anything */
  task: string | null
  queue: string | null
  sinceMs: number | null
  olderThanMs: number | null
  limit: number
  offset: number
  /** only tasks older than this id (keyset paging) */
  after: string | null
  /** only tasks of this workflow */
  workflow: string | null
}

/** The filter fields as text, as a command line or a query string gives them. */
export type ListInput = Partial<Record<'state' | 'task' | 'queue' | 'since' | 'olderThan' | 'limit' | 'offset' | 'after' | 'workflow', string>>

export interface ListedTask {
  id: string
  name: string
  queue: string
  state: TaskState
  attempt: number
  maxAttempts: number
  priority: number
  createdAt: Date
  runAt: Date
  startedAt: Date | null
  finishedAt: Date | null
  workerId: string | null
  error: string | null
  /** a pending task's reason to wait: delayed, or held back by its queue's settings ("queue emails at its limit of 5"); null otherwise */
  heldBack: string | null
}

const MAX_TASK_ID = 2n ** 63n - 1n

/**
 * Check and convert filter text; InvalidFiltersError lists every problem by
 * field name, so each caller can name the field in its own words.
 */
export function parseListInput(input: ListInput): ListFilters {
  const problems: Array<{ fields: string[]; message: string }> = []
  const problem = (message: string, ...fields: string[]) => void problems.push({ fields, message })
  const str = (k: keyof ListInput) => input[k] ?? null
  // Bounded so that now() - age stays inside Postgres' interval and timestamp range.
  const age = (k: 'since' | 'olderThan') => {
    const v = str(k)
    if (v === null) return null
    const ms = parseDuration(v)
    if (ms === null) problem(`expected an age such as 30m, 1h or 7d, got "${v}"`, k)
    else if (ms > MAX_DELAY_MS) problem(`at most ${formatDuration(MAX_DELAY_MS)} (leave it out to include every age), got "${v}"`, k)
    return ms
  }
  const int = (k: 'limit' | 'offset', min: number, max: number) => {
    const v = str(k)
    if (v === null) return null
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) problem(`expected a whole number from ${min} to ${max}, got "${v}"`, k)
    return Number(v)
  }
  // Postgres refuses NUL in text (and the driver a lone surrogate): say so instead of failing the query.
  const text = (k: 'task' | 'queue') => {
    const v = str(k)
    if (v !== null && storableText(v) !== v) {
      const what = v.includes('\u0000') ? 'the NUL character (\\u0000)' : 'a lone UTF-16 surrogate'
      problem(`contains ${what}, which no task name or queue can contain`, k)
    }
    return v
  }
  let states: TaskState[] | null = null
  const stateText = str('state')
  if (stateText !== null) {
    states = stateText.split(',').map((x) => x.trim()).filter(Boolean) as TaskState[]
    const bad = states.filter((x) => !TASK_STATES.includes(x))
    if (bad.length) problem(`unknown state ${bad.map((b) => `"${b}"`).join(', ')}; use ${TASK_STATES.join(', ')}`, 'state')
  }
  const filters: ListFilters = {
    states,
    task: text('task'),
    queue: text('queue'),
    sinceMs: age('since'),
    olderThanMs: age('olderThan'),
    limit: int('limit', 1, 1000) ?? 50,
    offset: int('offset', 0, 10_000_000) ?? 0,
    after: null,
    workflow: null,
  }
  const workflow = str('workflow')
  if (workflow !== null) {
    if (!isWorkflowId(workflow)) problem(`expected a workflow id (a UUID), got "${workflow}"`, 'workflow')
    else filters.workflow = workflow
  }
  const after = str('after')
  if (after !== null) {
    if (!/^\d{1,19}$/.test(after) || BigInt(after) > MAX_TASK_ID) problem(`expected a task id (a whole number up to ${MAX_TASK_ID}), got "${after}"`, 'after')
    else filters.after = after
  }
  if (filters.after !== null && str('offset') !== null) problem('use one way of paging, not both', 'after', 'offset')
  if (problems.length) throw new InvalidFiltersError(problems)
  return filters
}

/** Newest first (id desc), so `after: <last id>` is a stable cursor while tasks keep arriving. */
export async function listTasks(ctx: Pick<AdminContext, 'executor' | 'schema'>, f: ListFilters): Promise<{ tasks: ListedTask[]; nextAfter: string | null }> {
  const rows = await taskList(ctx.executor, {
    schema: ctx.schema,
    // An empty name or queue means no filter, as an empty query parameter does.
    filter: { states: f.states, name: f.task || null, queue: f.queue || null, createdWithinMs: f.sinceMs, createdBeforeMs: f.olderThanMs, beforeId: f.after, workflowId: f.workflow },
    // One more than asked tells whether there is a next page.
    limit: f.limit + 1,
    offset: f.offset,
  })
  const page = rows.slice(0, f.limit)
  const pending = page.filter((r) => r.state === 'pending').map((r) => String(r.id))
  const heldBack = await tasksFlowReasons(ctx.executor, { schema: ctx.schema, ids: pending })
  return {
    tasks: page.map((r) => ({
      id: String(r.id),
      name: r.name,
      queue: r.queue,
      state: r.state,
      attempt: r.attempt,
      maxAttempts: r.max_attempts,
      priority: r.priority,
      createdAt: r.created_at,
      runAt: r.run_at,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
      workerId: r.worker_id,
      error: r.error,
      heldBack: heldBack.get(String(r.id)) ?? null,
    })),
    nextAfter: rows.length > f.limit ? String(page.at(-1)!.id) : null,
  }
}
