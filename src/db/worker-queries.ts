import type { Executor } from './executor.ts'
import { loadSql, plainArray } from './sql.ts'

/**
 * The worker's claim, hand-back, registration and presence statements,
 * Entity + Verb, one params object each (the completer's finish batch and
 * the lease keeper's heartbeat load their .sql files beside them). Hot ones
 * send ids, attempts and tokens as plain array literals: they are digits and
 * uuids (checked where they come from), and node-pg's per-element quoting is
 * a visible share of a worker's CPU at hundreds of rows per statement.
 */

/** A row the claim returned. */
export interface ClaimedTask {
  id: string
  name: string
  queue: string
  payload: unknown
  priority: number
  attempt: number
  max_attempts: number
  /** epoch milliseconds (a float parses far cheaper than a timestamptz) */
  created_ms: number
  /** the workflow it is a step of (0012), or null */
  workflow_id: string | null
  /** its group in the queue ('' for none, 0013) */
  group_key: string
  /** the enqueuing code's trace context as stored (0016; parsed jsonb, or null when not traced) */
  trace_context?: unknown
}

/** Claim the dispatched rows whose messages were popped (task-claim-batch.sql). */
export async function taskClaimBatch(
  db: Executor,
  p: { schema: string; ids: readonly string[]; tokens: readonly string[]; leaseMs: number; workerId: string },
): Promise<ClaimedTask[]> {
  const res = await db.query<ClaimedTask>(loadSql('task-claim-batch.sql', p.schema), [plainArray(p.ids), plainArray(p.tokens), p.leaseMs, p.workerId])
  return res.rows
}

/** Postgres lane: claim due tasks of these queues straight from Postgres (task-claim-due.sql). */
export async function taskClaimDue(
  db: Executor,
  p: {
    schema: string
    queues: readonly string[]
    limit: number
    leaseMs: number
    workerId: string
    strandedAfterMs: number | null
    held: readonly string[]
    claimToken: string
    /** tasks flowTake() dispatched with claimToken, claimed first */
    flowIds: readonly string[]
  },
): Promise<ClaimedTask[]> {
  const params = [p.queues, p.limit, p.leaseMs, p.workerId, p.strandedAfterMs, plainArray(p.held), p.claimToken, plainArray(p.flowIds)]
  const res = await db.query<ClaimedTask>(loadSql('task-claim-due.sql', p.schema), params)
  return res.rows
}

/** Dispatch up to `limit` due tasks of these flow-controlled queues within their settings, with `token` (task-flow-take.sql). */
export async function flowTake(db: Executor, p: { schema: string; queues: readonly string[]; limit: number; token: string }): Promise<string[]> {
  const res = await db.query<{ id: string }>(loadSql('task-flow-take.sql', p.schema), [p.queues, p.limit, p.token])
  return res.rows.map((r) => String(r.id))
}

/** Which of `queues` have settings (queues-with-settings.sql). */
export async function queuesWithSettings(db: Executor, schema: string, queues: readonly string[]): Promise<string[]> {
  const res = await db.query<{ name: string }>(loadSql('queues-with-settings.sql', schema), [queues])
  return res.rows.map((r) => r.name)
}

/** Back to pending, runnable at once, no attempt used (task-hand-back.sql); returns the ids it matched. */
export async function taskHandBack(
  db: Executor,
  p: { schema: string; ids: readonly string[]; attempts: readonly number[]; message: string; kind: string },
): Promise<string[]> {
  const res = await db.query<{ id: string }>(loadSql('task-hand-back.sql', p.schema), [plainArray(p.ids), plainArray(p.attempts), p.message, p.kind])
  return res.rows.map((r) => String(r.id))
}

/** No handler in this worker: back to pending after a growing delay (task-defer-no-handler.sql). */
export async function taskDeferNoHandler(
  db: Executor,
  p: { schema: string; ids: readonly string[]; attempts: readonly number[]; workerId: string },
): Promise<string[]> {
  const res = await db.query<{ id: string }>(loadSql('task-defer-no-handler.sql', p.schema), [plainArray(p.ids), plainArray(p.attempts), p.workerId])
  return res.rows.map((r) => String(r.id))
}

/** Record which task types exist and their defaults (task-types-upsert.sql). */
export async function taskTypesRegister(
  db: Executor,
  p: { schema: string; names: string[]; queues: string[]; priorities: number[]; maxAttempts: number[] },
): Promise<void> {
  await db.query(loadSql('task-types-upsert.sql', p.schema), [p.names, p.queues, p.priorities, p.maxAttempts])
}

/** This worker serves these queues with these tasks for ttlMs more (worker-register.sql). */
export async function workerRegister(db: Executor, p: { schema: string; workerId: string; queues: string[]; tasks: string[]; ttlMs: number }): Promise<void> {
  await db.query(loadSql('worker-register.sql', p.schema), [p.workerId, p.queues, p.tasks, p.ttlMs])
}

/** Remove rows of workers gone for a day (workers-prune.sql); run once per worker start. */
export async function workersPrune(db: Executor, p: { schema: string }): Promise<void> {
  await db.query(loadSql('workers-prune.sql', p.schema))
}

/** This worker stopped (worker-unregister.sql). */
export async function workerUnregister(db: Executor, p: { schema: string; workerId: string }): Promise<void> {
  await db.query(loadSql('worker-unregister.sql', p.schema), [p.workerId])
}
