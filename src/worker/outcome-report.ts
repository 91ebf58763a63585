import type { Logger } from 'pino'
import type { TaskEventFields, TaskRelayEvents } from '../events.ts'
import type { Attempt } from './attempt.ts'
import type { AttemptOutcome } from './run-attempt.ts'

export function eventFields(attempt: Attempt): TaskEventFields {
  return { id: attempt.id, name: attempt.claimed.name, queue: attempt.claimed.queue, attempt: attempt.attempt }
}

/** The log line and event of an outcome the completer wrote (or found fenced off). Quiet for successes. */
export function reportOutcome(events: TaskRelayEvents, log: Logger, attempt: Attempt, outcome: AttemptOutcome, recorded: boolean): void {
  const durationMs = Math.round(performance.now() - attempt.startedAt)
  if (!recorded) {
    log.warn({ durationMs }, 'outcome discarded: this attempt no longer owns the task (lease lost or cancelled)')
    events.emit('task:lease-lost', eventFields(attempt))
  } else if (outcome.state === 'succeeded') {
    if (events.listenerCount('task:succeeded') > 0) events.emit('task:succeeded', { ...eventFields(attempt), durationMs })
  } else if (outcome.state === 'pending') {
    log.warn({ durationMs, delayMs: outcome.delayMs, err: outcome.error.message }, 'task failed; will retry')
    events.emit('task:retried', { ...eventFields(attempt), durationMs, delayMs: outcome.delayMs, error: outcome.error.message })
  } else {
    log.error({ durationMs, err: outcome.error.message, kind: outcome.error.kind }, 'task failed')
    events.emit('task:failed', { ...eventFields(attempt), durationMs, error: outcome.error.message })
  }
}
