/**
 * The task life cycle, written down once. These are the only legal moves;
 * every UPDATE in src/db/sql checks the `from` state in its WHERE clause.
 *
 * ```
 * waiting ──every dependsOn task succeeded──▶ pending;   waiting ──one failed or was cancelled──▶ cancelled
 * pending ──relay──▶ dispatched ──worker claim──▶ running ──▶ succeeded
 *    ▲                   │                        │  │
 *    │◀── sweeper: not claimed within dispatchTimeout ┘  ├──▶ failed (no attempts left / NonRetryableError)
 *    │◀── retry with backoff (attempts left), lost worker (lease expired)
 *    │◀── worker shut down before finishing (handed back, attempt refunded via max_attempts+1)
 * any unfinished ──cancel──▶ cancelled;   failed | cancelled ──retry()──▶ pending
 * ```
 *
 * `attempt` counts claims and only ever grows, so (id, attempt) fences every
 * write of one attempt: a worker whose lease was taken over matches nothing.
 * A task enqueued with dependsOn starts `waiting` (unless all it names had
 * succeeded already); the finish statement and the sweeper settle it.
 */
export const TASK_STATES = ['waiting', 'pending', 'dispatched', 'running', 'succeeded', 'failed', 'cancelled'] as const
export type TaskState = (typeof TASK_STATES)[number]

export const FINAL_STATES: readonly TaskState[] = ['succeeded', 'failed', 'cancelled']

export function isFinal(state: TaskState): boolean {
  return FINAL_STATES.includes(state)
}
