import type { TaskState } from './task-state.ts'
import { InvalidOptionsError } from './errors.ts'

/** The error stored in `last_error` when an attempt fails. */
export interface TaskErrorRecord {
  message: string
  name?: string
  stack?: string
  attempt: number
  at: string
  /** 'error' | 'timeout' | 'lost_worker' | 'no_handler' | 'invalid_payload' | 'shutdown' | ... */
  kind?: string
}

/** A task row as getTask/waitFor return it. Ids are strings (Postgres bigint). */
export interface TaskRecord<P = unknown, R = unknown> {
  id: string
  name: string
  queue: string
  state: TaskState
  payload: P
  priority: number
  attempt: number
  maxAttempts: number
  runAt: Date
  createdAt: Date
  dispatchedAt: Date | null
  startedAt: Date | null
  finishedAt: Date | null
  leaseExpiresAt: Date | null
  workerId: string | null
  result: R | null
  lastError: TaskErrorRecord | null
  idempotencyKey: string | null
  /** the running (or last) attempt's latest ctx.progress(), or null */
  progress: TaskProgress | null
  /** every attempt, oldest first: only when asked for (getTask(id, { attempts: true })) */
  attempts?: AttemptRecord[]
}

/** What a handler last reported with ctx.progress(value, info). */
export interface TaskProgress {
  /** 0 to 100 */
  value: number
  /** the JSON given with it, or null */
  info: unknown
  /** when the worker wrote it (reports are throttled: at most one write per second per worker) */
  at: string
}

/** How an attempt ended: 'retry' failed with another attempt to come, 'throttled' (ctx.rateLimited) does not count, 'lost' its worker died or its lease expired. */
export type AttemptOutcomeName = 'running' | 'succeeded' | 'failed' | 'retry' | 'throttled' | 'lost' | 'cancelled'

/** One attempt of a task (the task_attempt_history view; getTask(id, { attempts: true })). */
export interface AttemptRecord {
  attempt: number
  workerId: string | null
  startedAt: Date | null
  /** null while it runs */
  finishedAt: Date | null
  outcome: AttemptOutcomeName
  error: TaskErrorRecord | null
  /** finishedAt − startedAt; null while it runs */
  durationMs: number | null
}

export interface TaskRow {
  id: string
  name: string
  queue: string
  state: TaskState
  payload: unknown
  priority: number
  attempt: number
  max_attempts: number
  run_at: Date
  created_at: Date
  dispatched_at: Date | null
  started_at: Date | null
  finished_at: Date | null
  lease_expires_at: Date | null
  dispatch_token: string | null
  worker_id: string | null
  result: unknown
  last_error: TaskErrorRecord | null
  idempotency_key: string | null
  progress: TaskProgress | null
}

/**
 * The columns of TaskRow, for selects that read a whole row. Listed, never
 * `*`: a prepared `select *` is refused after a migration adds a column
 * ("cached plan must not change result type") until it is prepared again.
 */
export const TASK_ROW_COLUMNS = [
  'id', 'name', 'queue', 'state', 'payload', 'priority', 'attempt', 'max_attempts', 'run_at', 'created_at',
  'dispatched_at', 'started_at', 'finished_at', 'lease_expires_at', 'dispatch_token', 'worker_id', 'result',
  'last_error', 'idempotency_key', 'progress',
] as const satisfies ReadonlyArray<keyof TaskRow>

/** TASK_ROW_COLUMNS as a select list. */
export const TASK_ROW_SELECT = TASK_ROW_COLUMNS.join(', ')

export function toTaskRecord(row: TaskRow): TaskRecord {
  return {
    id: String(row.id),
    name: row.name,
    queue: row.queue,
    state: row.state,
    payload: row.payload,
    priority: row.priority,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    runAt: row.run_at,
    createdAt: row.created_at,
    dispatchedAt: row.dispatched_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    leaseExpiresAt: row.lease_expires_at,
    workerId: row.worker_id,
    result: row.result ?? null,
    lastError: row.last_error,
    idempotencyKey: row.idempotency_key,
    progress: row.progress ?? null,
  }
}

/** A task id as Postgres stores it (bigint, 1 .. 2^63-1), or null when `id` is none. */
export function toTaskId(id: unknown): bigint | null {
  if (typeof id !== 'string' && typeof id !== 'number' && typeof id !== 'bigint') return null
  try {
    const n = BigInt(id)
    return n > 0n && n < 2n ** 63n ? n : null
  } catch {
    return null // not an integer (BigInt throws on '1.5', 'abc', NaN)
  }
}

/** A task id given to the facade (getTask, cancel, waitFor...), or InvalidOptionsError. */
export function parseTaskId(id: string | number | bigint): bigint {
  const n = toTaskId(id)
  if (n !== null) return n
  throw new InvalidOptionsError('task id', [`expected a positive integer, got ${JSON.stringify(String(id))}`])
}

/** Whether `value` is a UUID in its text form: Redis message tokens, workflow ids. */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)
}
