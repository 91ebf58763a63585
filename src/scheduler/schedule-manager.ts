import type { TaskRelayContext } from '../db/context.ts'
import type { ScheduleSpec, Task } from '../define-task.ts'
import type { ScheduleRecord } from './spec.ts'
import {
  scheduleGet,
  scheduleList,
  schedulePause,
  scheduleRemove,
  scheduleResume,
  scheduleRunNow,
  scheduleUpsert,
  syncTaskSchedules,
  type ScheduleWriteOptions,
  type SyncResult,
  type UpsertResult,
} from './schedules.ts'

/**
 * Schedules from code: `tr.schedules`, the one way to create, change, pause,
 * resume, run, list and remove them (the CLI's `taskrelay schedules` and SQL
 * reach the same rows). Validation happens before any SQL: bad input writes
 * nothing. See docs/scheduling.md.
 *
 * @example
 * await tr.schedules.upsert({ name: 'nightly-report', task: report, cron: '0 3 * * *', timezone: 'Europe/Berlin', payload: {} })
 * await tr.schedules.pause('nightly-report')
 */
export class ScheduleManager {
  readonly #ctx: TaskRelayContext

  constructor(ctx: TaskRelayContext) {
    this.#ctx = ctx
  }

  /** Create or update a schedule by name, validated against the task's payload schema. */
  upsert<T extends Task>(spec: ScheduleSpec<T>, options?: ScheduleWriteOptions): Promise<UpsertResult> {
    return scheduleUpsert(this.#ctx, spec, options)
  }

  /** Delete a schedule; false when none had this name. Tasks it already enqueued stay. */
  remove(name: string): Promise<boolean> {
    return scheduleRemove(this.#ctx, name)
  }

  /** One schedule, or null. */
  get(name: string): Promise<ScheduleRecord | null> {
    return scheduleGet(this.#ctx, name)
  }

  /** All schedules by name (optionally of one task). */
  list(filter?: { task?: string }): Promise<ScheduleRecord[]> {
    return scheduleList(this.#ctx, filter)
  }

  /** Stop firing a schedule (kept, and kept paused across scheduler restarts). */
  pause(name: string): Promise<ScheduleRecord> {
    return schedulePause(this.#ctx, name)
  }

  /** Fire a paused schedule again, from the next fire time after now (no catch-up for the pause). */
  resume(name: string, options?: { now?: Date }): Promise<ScheduleRecord> {
    return scheduleResume(this.#ctx, name, options)
  }

  /** Enqueue the schedule's task once, now, outside its fire times. */
  runNow(name: string, options: { tasks: readonly Task[]; now?: Date }): Promise<{ taskId: string }> {
    return scheduleRunNow(this.#ctx, name, options)
  }

  /** Upsert the schedules declared in defineTask({ schedules }) of `tasks` and remove ones no longer declared (schedulers do this at start). */
  sync(tasks: readonly Task[], options?: { now?: Date }): Promise<SyncResult> {
    return syncTaskSchedules(this.#ctx, tasks, options)
  }
}
