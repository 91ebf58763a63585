import { z } from 'zod/v4'
import { InvalidOptionsError } from '../errors.ts'
import { queueNameSchema, strictOptions, zodProblems } from '../config.ts'
import { isUuid, toTaskId, type TaskErrorRecord, type TaskProgress } from '../task-record.ts'
import type { TaskState } from '../task-state.ts'

/**
 * Task events as Postgres announces them on `<schema>.task_events` (0016):
 * one word per state change, written by the statement that makes it.
 */
export const TASK_EVENT_TYPES = ['enqueued', 'started', 'progress', 'retried', 'succeeded', 'failed', 'cancelled'] as const
export type TaskEventType = (typeof TASK_EVENT_TYPES)[number]

/** What a task's row says, read once per notification (see TaskEventFilter.details). */
export interface TaskEventDetails {
  name: string
  /** the row's state when read, which may already be past the event */
  state: TaskState
  attempt: number
  maxAttempts: number
  workflowId: string | null
  /** the latest ctx.progress() of the running attempt, or null */
  progress: TaskProgress | null
  /** the error behind a 'retried', 'failed' or 'cancelled' event; null for the others */
  error: TaskErrorRecord | null
}

/** One state change of one task, from whichever process made it. */
export interface TaskEvent {
  type: TaskEventType
  taskId: string
  queue: string
  /** when this process received the notification (Postgres sends it at commit) */
  at: Date
  /** with `details: true` or a `name`/`workflowId` filter: the row, or null when it was deleted meanwhile */
  details?: TaskEventDetails | null
}

/**
 * Events were lost: the LISTEN connection was down (everything committed
 * meanwhile), or the rows of one notification could not be read. Re-read
 * the rows you care about; the tasks table is the truth, events are hints.
 */
export interface TaskEventGap {
  type: 'gap'
  at: Date
  reason: 'reconnected' | 'read-failed'
}

/** What subscribe() calls; a promise it returns is not awaited (a rejection is logged, as a throw is). */
export type TaskEventHandler = (event: TaskEvent | TaskEventGap) => unknown

/** Which events a subscriber gets: each key given must match (all of them when none is). */
export interface TaskEventFilter {
  /** one task, by id */
  taskId?: string | number | bigint
  queue?: string
  /** task name; `*` matches anything (`email.*`). Reads the rows, as `details` does */
  name?: string
  /** tasks of one workflow (its UUID). Reads the rows, as `details` does */
  workflowId?: string
  /** only these event types (a gap is always delivered) */
  types?: readonly TaskEventType[]
  /** add `details` (name, state, attempt, workflow, progress, error) to each event: one batched read per notification */
  details?: boolean
}

/** A filter checked and normalized: what the dispatcher matches against. */
export interface ParsedFilter {
  taskId: string | null
  queue: string | null
  name: RegExp | null
  workflowId: string | null
  types: ReadonlySet<TaskEventType> | null
  /** whether events need their row: for details, or to match name/workflow */
  needsRow: boolean
  details: boolean
}

const filterSchema = strictOptions({
  taskId: z.union([z.string(), z.number(), z.bigint()]).optional(),
  queue: queueNameSchema.optional(),
  name: z.string().regex(/^[A-Za-z0-9_.:/*-]{1,200}$/, 'use 1-200 characters from A-Z a-z 0-9 _ . : / - and * (matches anything)').optional(),
  workflowId: z.string().refine(isUuid, 'expected a workflow id (a UUID)').optional(),
  types: z.array(z.enum(TASK_EVENT_TYPES)).min(1).optional(),
  details: z.boolean().optional(),
})

/** Check a filter; InvalidOptionsError listing every problem. */
export function parseFilter(filter: unknown): ParsedFilter {
  const parsed = filterSchema.safeParse(filter ?? {})
  if (!parsed.success) throw new InvalidOptionsError('tr.events filter', zodProblems(parsed.error))
  const f = parsed.data
  const taskId = f.taskId === undefined ? null : toTaskId(f.taskId)
  if (f.taskId !== undefined && taskId === null) {
    throw new InvalidOptionsError('tr.events filter', [`taskId: expected a task id (a positive integer), got ${JSON.stringify(String(f.taskId))}`])
  }
  const name = f.name === undefined ? null : namePattern(f.name)
  const workflowId = f.workflowId?.toLowerCase() ?? null
  const details = f.details === true
  return {
    taskId: taskId === null ? null : taskId.toString(),
    queue: f.queue ?? null,
    name,
    workflowId,
    types: f.types ? new Set(f.types) : null,
    needsRow: details || name !== null || workflowId !== null,
    details,
  }
}

function namePattern(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((part) => part.replace(/[.]/g, '\\.')).join('.*')}$`)
}

/** A notification's payload, "<event> <queue> <id>,<id>,…"; null when it is not one (a newer version's word). */
export function parseNotification(payload: string): { type: TaskEventType; queue: string; ids: string[] } | null {
  const [type, queue, list, extra] = payload.split(' ')
  if (extra !== undefined || !queue || !list || !(TASK_EVENT_TYPES as readonly string[]).includes(type!)) return null
  const ids = list.split(',')
  if (!ids.every((id) => /^\d{1,19}$/.test(id))) return null
  return { type: type as TaskEventType, queue, ids }
}

/** Whether the filter takes the event before any row is read. */
export function matchesEvent(f: ParsedFilter, type: TaskEventType, queue: string, taskId: string): boolean {
  return (f.types === null || f.types.has(type)) && (f.queue === null || f.queue === queue) && (f.taskId === null || f.taskId === taskId)
}

/** Whether the filter takes an event whose row (or its absence) is known. */
export function matchesRow(f: ParsedFilter, details: TaskEventDetails | null): boolean {
  if (f.name === null && f.workflowId === null) return true
  if (details === null) return false
  return (f.name === null || f.name.test(details.name)) && (f.workflowId === null || details.workflowId === f.workflowId)
}
