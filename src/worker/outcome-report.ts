import type { TaskEventFields, TaskRelayEvents } from '../events.ts'
import type { Attempt } from './attempt.ts'
import type { AttemptOutcome } from './run-attempt.ts'

export function eventFields(attempt: Attempt, workerId: string): TaskEventFields {
  return { id: attempt.id, name: attempt.claimed.name, queue: attempt.claimed.queue, attempt: attempt.attempt, workerId }
}

/** The event of an outcome the completer wrote (or found fenced off); src/task-log.ts turns it into a log line. */
export function reportOutcome(events: TaskRelayEvents, workerId: string, attempt: Attempt, outcome: AttemptOutcome, recorded: boolean): void {
  const durationMs = Math.round(performance.now() - attempt.startedAt)
  if (!recorded) {
    events.emit('task:lease-lost', eventFields(attempt, workerId))
  } else if (outcome.state === 'succeeded') {
    if (events.listenerCount('task:succeeded') > 0) events.emit('task:succeeded', { ...eventFields(attempt, workerId), durationMs })
  } else if (outcome.state === 'pending' || outcome.state === 'throttled') {
    events.emit('task:retried', { ...eventFields(attempt, workerId), durationMs, delayMs: outcome.delayMs, error: outcome.error.message })
  } else {
    events.emit('task:failed', { ...eventFields(attempt, workerId), durationMs, error: outcome.error.message, kind: outcome.error.kind })
  }
}
