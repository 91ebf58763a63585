import type { Logger } from 'pino'
import type { Task } from '../define-task.ts'
import { RESERVED_KEY_PREFIX, prepareTaskAwaitable } from '../enqueue.ts'
import type { PreparedTask } from '../db/task-insert.ts'
import { taskInsertMany } from '../db/task-insert.ts'
import type { Executor } from '../db/executor.ts'
import { loadSql } from '../db/sql.ts'
import { isFinal, type TaskState } from '../task-state.ts'
import { nextFireAfter, planFires } from './cron.ts'
import { rowTiming, type ScheduleRow } from './schedule-row.ts'

/** One fire: a schedule at one fire time, and the task it produced. */
export interface ScheduleFire {
  schedule: string
  fireAt: Date
  taskId: string
}

export interface FireDueParams {
  schema: string
  /** The injected clock's time, or null to use the database clock. */
  now: Date | null
  /** Tasks this scheduler can enqueue; schedules of other tasks are not claimed. */
  tasks: ReadonlyMap<string, Task>
  batchSize: number
  graceMs: number
  maxCatchUp: number
  maxPayloadBytes: number
  log: Logger
  /** Test seam: runs after the task rows are inserted, before the schedules advance and commit. */
  beforeCommit?: (fires: readonly ScheduleFire[]) => Promise<void> | void
}

export interface FireDueResult {
  /** Schedules claimed (due) in this tick. */
  claimed: number
  /** Tasks enqueued. */
  fired: number
  fires: ScheduleFire[]
  /** Schedules not fired because the previous fire's task is unfinished (overlap: false). */
  skippedOverlap: number
  /** Schedules whose fire failed (payload no longer valid, definition unreadable). */
  failed: number
  /** Earliest next fire time among this scheduler's enabled schedules. */
  nextFireAt: Date | null
  /** Milliseconds from now until nextFireAt (<= 0: due already, e.g. locked by another replica). */
  dueInMs: number | null
}

interface DueRow extends Pick<
  ScheduleRow,
  'id' | 'name' | 'task_name' | 'cron' | 'every_ms' | 'timezone' | 'payload' | 'queue' | 'priority' | 'max_attempts' | 'misfire' | 'overlap' | 'next_fire_at' | 'last_task_id'
> {
  last_task_state: TaskState | null
  now: Date
}

interface Advance {
  id: string
  nextFireAt: Date | null
  lastFireAt: Date | null
  lastTaskId: string | null
  lastError: string | null
  disable: boolean
}

/**
 * The idempotency key of a fire: one task per (schedule, fire time), whoever
 * inserts it. Its prefix is reserved (enqueue refuses callers' keys with it),
 * so no user's key can take a fire's place.
 */
export function fireKey(schedule: string, fireAt: Date): string {
  return `${RESERVED_KEY_PREFIX}${schedule}:${fireAt.toISOString()}`
}

/**
 * One scheduler tick, on an executor inside the caller's transaction: claim
 * due schedules (FOR UPDATE SKIP LOCKED), insert their task rows, advance
 * next_fire_at. Commit makes all of it visible at once; a crash before commit
 * leaves nothing, and the same fire times are fired again by the next tick
 * under the same idempotency keys.
 */
export async function scheduleFireDue(db: Executor, p: FireDueParams): Promise<FireDueResult> {
  const names = [...p.tasks.keys()]
  const claimed = await db.query<DueRow>(loadSql('schedule-claim-due.sql', p.schema), [p.now, names, p.batchSize])
  const advances: Advance[] = []
  const toInsert: Array<{ prepared: PreparedTask; schedule: string; fireAt: Date; advance: Advance }> = []
  let skippedOverlap = 0
  let failed = 0

  for (const row of claimed.rows) {
    const advance: Advance = { id: String(row.id), nextFireAt: row.next_fire_at, lastFireAt: null, lastTaskId: null, lastError: null, disable: false }
    advances.push(advance)
    const log = p.log.child({ schedule: row.name, task: row.task_name })
    let fireTimes: Date[]
    try {
      if (row.next_fire_at === null) {
        // Written by hand without a next fire time: start from now, fire nothing yet.
        advance.nextFireAt = nextFireAfter(rowTiming(row), row.now)
        fireTimes = []
      } else {
        const plan = planFires({ timing: rowTiming(row), nextFireAt: row.next_fire_at, now: row.now, misfire: row.misfire, graceMs: p.graceMs, maxCatchUp: p.maxCatchUp })
        if (plan.dropped) log.warn({ policy: row.misfire, firstMissed: plan.dropped.first, lastMissed: plan.dropped.last }, 'missed fire times dropped by misfire policy')
        advance.nextFireAt = plan.nextFireAt
        fireTimes = plan.fireTimes
      }
      if (advance.nextFireAt === null) throw new Error('the cron expression has no fire time after now')
    } catch (err) {
      // Only reachable for rows written around validation (SQL): turn the
      // schedule off rather than fail every tick, and say why.
      failed++
      advance.disable = true
      advance.lastError = `disabled: definition cannot be evaluated: ${(err as Error).message}`
      log.error({ err }, 'schedule disabled: its definition cannot be evaluated')
      continue
    }
    if (fireTimes.length === 0) continue
    if (!row.overlap) {
      if (row.last_task_state !== null && !isFinal(row.last_task_state)) {
        skippedOverlap++
        log.info({ lastTaskId: row.last_task_id, lastTaskState: row.last_task_state, skipped: fireTimes.map((t) => t.toISOString()) }, 'fire skipped: previous task unfinished (overlap: false)')
        continue
      }
      fireTimes = fireTimes.slice(-1) // one at a time: catch-up fires would overlap each other
    }
    const task = p.tasks.get(row.task_name)!
    try {
      const prepared = await Promise.all(fireTimes.map(async (fireAt) => ({
        // The key is set after validation: its prefix is reserved, and callers' keys are refused it.
        prepared: {
          ...(await prepareTaskAwaitable(
            task,
            row.payload,
            {
              ...(row.queue !== null ? { queue: row.queue } : {}),
              ...(row.priority !== null ? { priority: row.priority } : {}),
              ...(row.max_attempts !== null ? { maxAttempts: row.max_attempts } : {}),
              runAt: fireAt,
            },
            p.maxPayloadBytes,
          )),
          idempotencyKey: fireKey(row.name, fireAt),
        },
        schedule: row.name,
        fireAt,
        advance,
      })))
      toInsert.push(...prepared)
    } catch (err) {
      // The task's schema changed since the schedule was written. Skip these
      // fire times (retrying each tick would fail the same way) and say why.
      failed++
      advance.lastError = `fire at ${fireTimes.at(-1)!.toISOString()} skipped: ${(err as Error).message}`
      log.error({ err }, 'fire skipped: stored payload no longer valid for the task')
    }
  }

  const ids = await taskInsertMany(db, p.schema, toInsert.map((x) => x.prepared))
  const fires = toInsert.map((x, i) => {
    x.advance.lastFireAt = x.fireAt
    x.advance.lastTaskId = ids[i]!
    return { schedule: x.schedule, fireAt: x.fireAt, taskId: ids[i]! }
  })
  await p.beforeCommit?.(fires)
  if (advances.length > 0) {
    await db.query(loadSql('schedule-advance.sql', p.schema), [
      advances.map((a) => a.id),
      advances.map((a) => a.nextFireAt),
      advances.map((a) => a.lastFireAt),
      advances.map((a) => a.lastTaskId),
      advances.map((a) => a.lastError),
      advances.map((a) => a.disable),
    ])
  }
  const due = await db.query<{ next_fire_at: Date | null; due_in_ms: number | null }>(loadSql('schedule-next-due.sql', p.schema), [p.now, names])
  return {
    claimed: claimed.rows.length,
    fired: fires.length,
    fires,
    skippedOverlap,
    failed,
    nextFireAt: due.rows[0]?.next_fire_at ?? null,
    dueInMs: due.rows[0]?.due_in_ms ?? null,
  }
}
