import type { Logger } from 'pino'
import type { TaskEventFields, TaskRelayEvents } from './events.ts'

/**
 * Per-task log lines, written from the typed events (never by the code that
 * emits them), with the same fields everywhere: taskId, task, queue, attempt.
 * Two subscribers, so a library user who embeds a Worker is not flooded at
 * info: outcomes that need attention (every Worker attaches this to its own
 * logger), and progress (the CLI attaches it too).
 */
function fields(e: TaskEventFields) {
  return { taskId: e.id, task: e.name, queue: e.queue, attempt: e.attempt }
}

/** Retries (warn), failures (error) and discarded outcomes (warn) of one worker's attempts. */
export function logTaskOutcomes(events: TaskRelayEvents, log: Logger, workerId: string): void {
  const mine = (e: TaskEventFields) => e.workerId === workerId
  events.on('task:retried', (e) => {
    if (mine(e)) log.warn({ ...fields(e), durationMs: e.durationMs, delayMs: e.delayMs, err: e.error }, 'task failed; will retry')
  })
  events.on('task:failed', (e) => {
    if (mine(e)) log.error({ ...fields(e), durationMs: e.durationMs, err: e.error, kind: e.kind }, 'task failed')
  })
  events.on('task:lease-lost', (e) => {
    if (mine(e)) log.warn(fields(e), 'outcome discarded: this attempt no longer owns the task (lease lost or cancelled)')
  })
}

/** Starts, successes and hand-backs at info: what a process of the CLI shows (the relay logs its batches itself). */
export function logTaskProgress(events: TaskRelayEvents, log: Logger): void {
  events.on('task:started', (e) => log.info({ component: 'worker', ...fields(e) }, 'task started'))
  events.on('task:succeeded', (e) => log.info({ component: 'worker', ...fields(e), durationMs: e.durationMs }, 'task succeeded'))
  events.on('task:handed-back', (e) => log.info({ component: 'worker', ...fields(e) }, 'task handed back'))
}
