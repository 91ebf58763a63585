import { truncateText } from '../jsonb.ts'
import type { ListedTask } from '../admin/task-list.ts'
import type { TaskRecord } from '../task-record.ts'

/**
 * How much of one field the dashboard sends: a stored error, result or
 * payload can be megabytes, and a page of 50 such rows must not be 50 of
 * them. A field over its cap is cut (truncateText marks the cut and the full
 * length in the text) and its name listed in `truncated`; a JSON value over
 * its cap is sent as the start of its JSON text.
 */
export const LIST_FIELD_MAX_CHARS = 2_000
export const TASK_FIELD_MAX_CHARS = 64_000

export type Capped<T> = Omit<T, 'truncated'> & { truncated: string[] }

/** A text field cut to max, or a JSON value replaced by the start of its JSON text when that is longer than max. */
function capValue(value: unknown, max: number, path: string, truncated: string[]): unknown {
  if (typeof value === 'string') {
    if (value.length <= max) return value
    truncated.push(path)
    return truncateText(value, max)
  }
  if (value === null || typeof value !== 'object') return value
  const json = JSON.stringify(value)
  if (json.length <= max) return value
  truncated.push(path)
  return truncateText(json, max)
}

/** A row of the task list with every text field at most LIST_FIELD_MAX_CHARS. */
export function capListedTask(task: ListedTask): Capped<ListedTask> {
  const truncated: string[] = []
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(task)) out[key] = capValue(value, LIST_FIELD_MAX_CHARS, key, truncated)
  return { ...(out as unknown as ListedTask), truncated }
}

/** One task with payload, result, each field of lastError and every text field at most TASK_FIELD_MAX_CHARS. */
export function capTask(task: TaskRecord): Capped<TaskRecord> {
  const truncated: string[] = []
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(task)) {
    if (key === 'lastError' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
      // Cut message and stack one by one, so kind, attempt and the start of each stay readable.
      const error: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(value)) error[k] = capValue(v, TASK_FIELD_MAX_CHARS, `lastError.${k}`, truncated)
      out[key] = error
    } else {
      out[key] = capValue(value, TASK_FIELD_MAX_CHARS, key, truncated)
    }
  }
  return { ...(out as unknown as TaskRecord), truncated }
}

/** Each attempt's error fields at most ATTEMPT_ERROR_MAX_CHARS: a task may have many attempts, each with a long stack. */
export const ATTEMPT_ERROR_MAX_CHARS = 8_000

export function capAttemptError<A extends { error: unknown }>(attempt: A, index: number, truncated: string[]): A {
  const error = attempt.error
  if (error === null || typeof error !== 'object' || Array.isArray(error)) return attempt
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(error)) out[k] = capValue(v, ATTEMPT_ERROR_MAX_CHARS, `attempts.${index}.error.${k}`, truncated)
  return { ...attempt, error: out }
}
