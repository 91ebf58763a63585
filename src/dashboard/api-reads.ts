import type { TaskRelay } from '../task-relay.ts'
import { toTaskId } from '../task-record.ts'
import { readStats } from '../admin/stats.ts'
import { listTasks, parseListInput, type ListInput } from '../admin/task-list.ts'
import { listQueues } from '../admin/queues.ts'
import { readTaskDetail } from '../admin/task-detail.ts'
import { readCharts, type ChartRange } from '../admin/charts.ts'
import { listWorkers } from '../admin/workers.ts'
import { InvalidFiltersError } from '../errors.ts'
import { capAttemptError, capListedTask, capTask } from './caps.ts'
import { DashboardRequestError } from './request-error.ts'
import { decodeSegment } from './http.ts'

/**
 * The GET endpoints' answers, each from a read model of src/admin/ (shared
 * with the CLI). Input they cannot use is a DashboardRequestError (400/404).
 */

export const LIST_PARAMS = ['state', 'queue', 'task', 'since', 'limit', 'after', 'workflow'] as const satisfies ReadonlyArray<keyof ListInput>

export const READ_PATHS = '/api/stats, /api/queues, /api/tasks, /api/tasks/<id>, /api/charts, /api/schedules, /api/workers, /api/session'

/** The answer to GET <path>, or undefined when no read endpoint has this path. */
export async function readEndpoint(tr: TaskRelay, path: string, params: URLSearchParams): Promise<unknown> {
  switch (path) {
    case '/api/stats':
      return readStats(tr)
    case '/api/queues':
      return { queues: await listQueues(tr) }
    case '/api/tasks':
      return listPage(tr, params)
    case '/api/charts':
      return charts(tr, params)
    case '/api/schedules':
      return { schedules: await tr.schedules.list() }
    case '/api/workers':
      return { workers: await listWorkers(tr, { silent: params.get('silent') === '1' }) }
  }
  const one = /^\/api\/tasks\/([^/]+)$/.exec(path)
  if (one) return taskDetail(tr, decodeSegment(one[1]!))
  return undefined
}

async function listPage(tr: TaskRelay, params: URLSearchParams) {
  // The same filters, checks and keyset paging as `taskrelay list`, worded as query parameters.
  const input: ListInput = {}
  const unknown = [...new Set(params.keys())].filter((key) => !(LIST_PARAMS as readonly string[]).includes(key))
  if (unknown.length) {
    throw new DashboardRequestError(400, `unknown query parameter ${unknown.map((k) => `"${k.slice(0, 50)}"`).join(', ')}; /api/tasks takes ${LIST_PARAMS.join(', ')}`)
  }
  for (const key of LIST_PARAMS) {
    const value = params.get(key)
    if (value !== null && value !== '') input[key] = value
  }
  let filters
  try {
    filters = parseListInput(input)
  } catch (err) {
    if (!(err instanceof InvalidFiltersError)) throw err
    const lines = err.problems.map((p) => `  - ${p.fields.join(' and ')}: ${p.message}`)
    throw new DashboardRequestError(400, `invalid query parameter${lines.length === 1 ? '' : 's'} of GET /api/tasks:\n${lines.join('\n')}\nIt takes ${LIST_PARAMS.join(', ')}.`)
  }
  const page = await listTasks(tr, filters)
  return { ...page, tasks: page.tasks.map(capListedTask) }
}

/** A task id from a path segment; 400 when it cannot be one. */
export function parseTaskId(idText: string): string {
  const id = /^\d+$/.test(idText) ? toTaskId(idText) : null
  if (id === null) throw new DashboardRequestError(400, `"${idText.slice(0, 100)}" is not a task id (a positive whole number below 2^63)`)
  return String(id)
}

async function taskDetail(tr: TaskRelay, idText: string) {
  const id = parseTaskId(idText)
  const detail = await readTaskDetail(tr, id)
  if (!detail) throw new DashboardRequestError(404, `no task ${id} in schema "${tr.schema}"`)
  // attempts and progress arrived with attempt history; older read models lack them.
  const extra = detail as Partial<Pick<typeof detail, 'attempts' | 'progress'>>
  const task = capTask(detail.task)
  const attempts = (extra.attempts ?? []).map((a, i) => capAttemptError(a, i, task.truncated))
  return {
    ...task,
    dependsOn: detail.dependsOn,
    groupKey: detail.groupKey,
    heldBack: detail.heldBack,
    attempts,
    progress: extra.progress ?? null,
  }
}

const RANGES: readonly ChartRange[] = ['1h', '24h']

async function charts(tr: TaskRelay, params: URLSearchParams) {
  const unknown = [...params.keys()].filter((k) => k !== 'range' && k !== 'queue')
  if (unknown.length) throw new DashboardRequestError(400, `unknown query parameter "${unknown[0]!.slice(0, 50)}"; /api/charts takes range (1h or 24h) and queue`)
  const range = (params.get('range') || '1h') as ChartRange
  if (!RANGES.includes(range)) throw new DashboardRequestError(400, `range: expected 1h or 24h, got "${range.slice(0, 50)}"`)
  const queue = params.get('queue') || undefined
  return { charts: await readCharts(tr, range, queue) }
}
