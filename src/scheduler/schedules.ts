import type { TaskRelayContext } from '../db/context.ts'
import type { Task } from '../define-task.ts'
import { prepareTaskAwaitable } from '../enqueue.ts'
import { taskInsertMany } from '../db/task-insert.ts'
import type { Executor } from '../db/executor.ts'
import {
  scheduleDelete,
  scheduleDeleteStaleCode,
  scheduleDisable,
  scheduleEnableIfTiming,
  scheduleGetRow,
  scheduleListRows,
  scheduleSetLastTask,
  scheduleUpsertRow,
  schedulesSyncLock,
} from '../db/schedule-queries.ts'
import { nextFireAfter } from './cron.ts'
import { ScheduleError, ScheduleNotFoundError } from '../errors.ts'
import { rowTiming, toScheduleRecord, type ScheduleRow } from './schedule-row.ts'
import type { ScheduleRecord } from './spec.ts'
import type { ScheduleSpec } from '../define-task.ts'
import { resolveSchedule, sameDefinition, taskMap, type ResolvedSchedule } from './validate.ts'


/**
 * Schedules as data: create/update by name, remove, list, pause, resume,
 * run now, and the sync of schedules declared in defineTask(). Every function
 * takes a TaskRelayContext (a TaskRelay will do) first, so the facade, the
 * CLI and tests call the same code. Validation happens before any SQL: bad
 * input writes nothing.
 */

export interface ScheduleWriteOptions {
  /** Tasks a schedule may name by string (a Task handle in the spec needs none). */
  tasks?: readonly Task[]
  /** The time to compute the first fire time from; default: now. Tests pass a fixed clock. */
  now?: Date
}

export type UpsertStatus = 'created' | 'updated' | 'unchanged'

export interface UpsertResult {
  schedule: ScheduleRecord
  status: UpsertStatus
}

/**
 * Create or update a schedule by name (validated against the task's payload
 * schema). Changing the timing (cron, every, timezone) recomputes the next
 * fire time from now; changing anything else keeps it.
 *
 * @example
 * await scheduleUpsert(tr, { name: 'cleanup', task: cleanupTask, every: '15m', payload: { olderThanDays: 30 } })
 */
export async function scheduleUpsert<T extends Task>(tr: TaskRelayContext, spec: ScheduleSpec<T>, options: ScheduleWriteOptions = {}): Promise<UpsertResult> {
  const resolved = resolveSchedule(spec, { tasks: taskMap(options.tasks, 'schedule tasks'), maxPayloadBytes: tr.maxPayloadBytes, now: options.now })
  const row = await upsertResolved(tr.executor, tr.schema, resolved, options.now ?? null)
  if (row) return { schedule: toScheduleRecord(row), status: row.created ? 'created' : 'updated' }
  const existing = await scheduleGet(tr, resolved.name)
  if (!existing) throw new ScheduleNotFoundError(resolved.name) // deleted concurrently
  return { schedule: existing, status: 'unchanged' }
}

async function upsertResolved(db: Executor, schema: string, s: ResolvedSchedule, now: Date | null): Promise<(ScheduleRow & { created: boolean }) | undefined> {
  return scheduleUpsertRow<ScheduleRow>(db, {
    schema,
    name: s.name,
    taskName: s.taskName,
    cron: 'cron' in s.timing ? s.timing.cron : null,
    everyMs: 'everyMs' in s.timing ? s.timing.everyMs : null,
    timezone: 'cron' in s.timing ? s.timing.timezone : 'UTC',
    payloadJson: s.payloadJson,
    queue: s.queue,
    priority: s.priority,
    maxAttempts: s.maxAttempts,
    enabled: s.enabled,
    misfire: s.misfire,
    overlap: s.overlap,
    source: s.source,
    nextFireAt: nextFireAfter(s.timing, now ?? new Date()),
    now,
  })
}

/** Delete a schedule. Returns false when none had this name. Tasks it already enqueued stay. */
export async function scheduleRemove(tr: TaskRelayContext, name: string): Promise<boolean> {
  return scheduleDelete(tr.executor, { schema: tr.schema, name })
}

/** One schedule, or null. */
export async function scheduleGet(tr: TaskRelayContext, name: string): Promise<ScheduleRecord | null> {
  const row = await scheduleGetRow<ScheduleRow>(tr.executor, { schema: tr.schema, name })
  return row ? toScheduleRecord(row) : null
}

/** All schedules (optionally of one task), by name. */
export async function scheduleList(tr: TaskRelayContext, filter: { task?: string } = {}): Promise<ScheduleRecord[]> {
  const rows = await scheduleListRows<ScheduleRow>(tr.executor, { schema: tr.schema, taskName: filter.task ?? null })
  return rows.map(toScheduleRecord)
}

/** Stop firing a schedule (kept, and kept paused across scheduler restarts). */
export async function schedulePause(tr: TaskRelayContext, name: string): Promise<ScheduleRecord> {
  const row = await scheduleDisable<ScheduleRow>(tr.executor, { schema: tr.schema, name })
  if (!row) throw new ScheduleNotFoundError(name)
  return toScheduleRecord(row)
}

/**
 * Fire a paused schedule again, from the next fire time after now: the time
 * it was paused is not downtime, so no misfire catch-up follows a resume.
 */
export async function scheduleResume(tr: TaskRelayContext, name: string, options: { now?: Date } = {}): Promise<ScheduleRecord> {
  for (let attempt = 0; ; attempt++) {
    const row = await scheduleGetRow<ScheduleRow>(tr.executor, { schema: tr.schema, name })
    if (!row) throw new ScheduleNotFoundError(name)
    if (row.enabled) return toScheduleRecord(row)
    let next: Date | null
    try {
      next = nextFireAfter(rowTiming(row), options.now ?? new Date())
    } catch (err) {
      throw new ScheduleError(name, [`stored definition cannot be evaluated: ${(err as Error).message}`], { cause: err })
    }
    if (next === null) throw new ScheduleError(name, [`cron expression ${JSON.stringify(row.cron)} never fires again`])
    // Only if the timing is still the one `next` was computed from.
    const updated = await scheduleEnableIfTiming<ScheduleRow>(tr.executor, {
      schema: tr.schema,
      id: row.id,
      nextFireAt: next,
      cron: row.cron,
      everyMs: row.every_ms,
      timezone: row.timezone,
      now: options.now ?? null,
    })
    if (updated) return toScheduleRecord(updated)
    if (attempt >= 2) throw new Error(`schedule "${name}" kept changing while being resumed; try again`)
  }
}

/**
 * Enqueue the schedule's task once, now, with its payload and options,
 * outside the regular fire times (next_fire_at is unchanged). Recorded as the
 * schedule's last task, so `overlap: false` waits for it too.
 */
export async function scheduleRunNow(tr: TaskRelayContext, name: string, options: { tasks: readonly Task[]; now?: Date }): Promise<{ taskId: string }> {
  const tasks = taskMap(options.tasks, 'scheduleRunNow tasks')
  return tr.connections.transaction(async (db) => {
    const row = await scheduleGetRow<ScheduleRow>(db, { schema: tr.schema, name, forUpdate: true })
    if (!row) throw new ScheduleNotFoundError(name)
    const task = tasks.get(row.task_name)
    if (!task) throw new ScheduleError(name, [`task: unknown task "${row.task_name}"; pass it in tasks`])
    let prepared
    try {
      prepared = await prepareTaskAwaitable(
        task,
        row.payload,
        {
          ...(row.queue !== null ? { queue: row.queue } : {}),
          ...(row.priority !== null ? { priority: row.priority } : {}),
          ...(row.max_attempts !== null ? { maxAttempts: row.max_attempts } : {}),
          ...(options.now ? { runAt: options.now } : {}),
        },
        tr.maxPayloadBytes,
      )
    } catch (err) {
      throw new ScheduleError(name, [`stored payload no longer fits task "${task.name}": ${(err as Error).message}`], { cause: err })
    }
    const [taskId] = await taskInsertMany(db, tr.schema, [prepared])
    await scheduleSetLastTask(db, { schema: tr.schema, id: row.id, taskId: taskId! })
    return { taskId: taskId! }
  })
}

export interface SyncResult {
  created: string[]
  updated: string[]
  unchanged: string[]
  /** Code-declared schedules of these tasks that the code no longer declares. */
  removed: string[]
}

/**
 * Validate every schedule declared in defineTask({ schedules }) of `tasks`
 * (all of them, before writing anything), then upsert them and remove the
 * ones of these tasks the code no longer declares, in one transaction.
 * Schedulers call this at start; concurrent syncs are serialized by an
 * advisory lock. An unchanged declaration keeps its next fire time, so
 * restarts do not hide misfires.
 */
export async function syncTaskSchedules(tr: TaskRelayContext, tasks: readonly Task[], options: { now?: Date } = {}): Promise<SyncResult> {
  const declared = resolveDeclaredSchedules(tasks, tr.maxPayloadBytes, options.now)
  const names = [...declared.keys()]
  return tr.connections.transaction(async (db) => {
    await schedulesSyncLock(db, { schema: tr.schema })
    const result: SyncResult = { created: [], updated: [], unchanged: [], removed: [] }
    for (const s of declared.values()) {
      const row = await upsertResolved(db, tr.schema, s, options.now ?? null)
      result[row ? (row.created ? 'created' : 'updated') : 'unchanged'].push(s.name)
    }
    const taskNames = [...taskMap(tasks, 'scheduler tasks').keys()]
    result.removed = await scheduleDeleteStaleCode(db, { schema: tr.schema, taskNames, declared: names })
    return result
  })
}

/** All schedules declared on `tasks`, validated; a name declared twice differently is an error. */
export function resolveDeclaredSchedules(tasks: readonly Task[], maxPayloadBytes: number, now?: Date): Map<string, ResolvedSchedule> {
  const byName = taskMap(tasks, 'scheduler tasks')
  const declared = new Map<string, { schedule: ResolvedSchedule; task: string }>()
  for (const task of byName.values()) {
    for (const spec of task.schedules ?? []) {
      const schedule = resolveSchedule(spec, { tasks: byName, maxPayloadBytes, declaredBy: task, now })
      const seen = declared.get(schedule.name)
      if (seen && !sameDefinition(seen.schedule, schedule)) {
        const where = seen.task === task.name ? `twice in task "${task.name}"` : `in tasks "${seen.task}" and "${task.name}"`
        throw new ScheduleError(schedule.name, [`declared ${where} with different definitions; schedule names must be unique`])
      }
      declared.set(schedule.name, { schedule, task: task.name })
    }
  }
  return new Map([...declared].map(([name, d]) => [name, d.schedule]))
}
