import type { Executor } from './executor.ts'
import { loadSql, quoteIdent } from './sql.ts'
import { TASK_ROW_SELECT, type AttemptOutcomeName, type AttemptRecord, type TaskErrorRecord, type TaskRow } from '../task-record.ts'

/** Single-task reads and changes behind the facade's getTask, cancel and retry. */

/** One task row by id (its columns listed, never `*`: see TASK_ROW_SELECT). */
export async function taskGetRow(db: Executor, p: { schema: string; id: string }): Promise<TaskRow | undefined> {
  const res = await db.query<TaskRow>(`select ${TASK_ROW_SELECT} from ${quoteIdent(p.schema)}.tasks where id = $1`, [p.id])
  return res.rows[0]
}

interface AttemptRow {
  attempt: number
  worker_id: string | null
  started_at: Date | null
  finished_at: Date | null
  outcome: AttemptOutcomeName
  error: TaskErrorRecord | null
  duration_ms: number | null
}

/** A task's attempts, oldest first, the running one included (task_attempt_history, 0016). */
export async function taskAttempts(db: Executor, p: { schema: string; id: string }): Promise<AttemptRecord[]> {
  const res = await db.query<AttemptRow>(loadSql('task-attempts.sql', p.schema), [p.id])
  return res.rows.map((r) => ({
    attempt: r.attempt,
    workerId: r.worker_id,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    outcome: r.outcome,
    error: r.error,
    durationMs: r.duration_ms === null ? null : Number(r.duration_ms),
  }))
}

/** The SQL API's cancel(id) or retry(id) (migrations): true when the task changed. */
export async function taskChangeState(db: Executor, p: { schema: string; id: string; change: 'cancel' | 'retry' }): Promise<boolean> {
  const res = await db.query<{ ok: boolean }>(`select ${quoteIdent(p.schema)}.${p.change}($1) as ok`, [p.id])
  return res.rows[0]?.ok === true
}

/** Milliseconds until the earliest delayed task falls due, or null (relay-next-due.sql): idle relays and Postgres lanes wake then. */
export async function tasksNextDueInMs(db: Executor, p: { schema: string }): Promise<number | null> {
  const res = await db.query<{ due_in_ms: number | null }>(loadSql('relay-next-due.sql', p.schema))
  return res.rows[0]?.due_in_ms ?? null
}
