import type { Executor } from './executor.ts'
import { quoteIdent } from './sql.ts'

/**
 * Calls into the schema's SQL API (migrations 0001, 0008) for tools that have
 * no task definition at hand, such as `taskrelay enqueue <name>`: the same
 * functions psql users call, with the task types' registered defaults.
 */

export interface TaskEnqueueBySqlParams {
  schema: string
  name: string
  /** any JSON value; sent as its JSON text */
  payload: unknown
  queue?: string | undefined
  priority?: number | undefined
  runAt?: Date | undefined
  delayMs?: number | undefined
  maxAttempts?: number | undefined
  idempotencyKey?: string | undefined
  dependsOn?: ReadonlyArray<string | number | bigint> | undefined
}

/** enqueue() or, with dependsOn, enqueue_after(); returns the task id. Its argument checks fail with SQLSTATE 22023. */
export async function taskEnqueueBySql(db: Executor, p: TaskEnqueueBySqlParams): Promise<string> {
  const [fn, after] = p.dependsOn ? ['enqueue_after', 'depends_on => $9::bigint[], '] : ['enqueue', '']
  const res = await db.query<{ id: string }>(
    `select ${quoteIdent(p.schema)}.${fn}(${after}
       task_name => $1, payload => $2::jsonb, queue => $3, priority => $4, run_at => $5,
       delay => $6 * interval '1 millisecond', max_attempts => $7, idempotency_key => $8) as id`,
    [
      p.name,
      JSON.stringify(p.payload),
      p.queue ?? null,
      p.priority ?? null,
      p.runAt ?? null,
      p.delayMs ?? null,
      p.maxAttempts ?? null,
      p.idempotencyKey ?? null,
      ...(p.dependsOn ? [p.dependsOn.map(String)] : []),
    ],
  )
  return String(res.rows[0]!.id)
}

/** Whether any worker registered a task type of this name (task-types-upsert.sql). */
export async function taskTypeExists(db: Executor, p: { schema: string; name: string }): Promise<boolean> {
  const res = await db.query(`select 1 from ${quoteIdent(p.schema)}.task_types where name = $1`, [p.name])
  return res.rows.length > 0
}

/** The queue a task was put on, or null when there is no such task. */
export async function taskGetQueue(db: Executor, p: { schema: string; id: string }): Promise<string | null> {
  const res = await db.query<{ queue: string }>(`select queue from ${quoteIdent(p.schema)}.tasks where id = $1`, [p.id])
  return res.rows[0]?.queue ?? null
}
