import { InvalidOptionsError } from '../errors.ts'
import type { TaskProgress } from '../task-record.ts'
import type { TaskEvents } from './task-events.ts'

/**
 * waitFor's `onProgress`: the task's 'progress' events (tr.events, with the
 * row read for its value), each new report once. Lossy as events are; the
 * final record waitFor resolves with carries the last report written.
 * Resolves once listening, with the function that stops it.
 */
export async function followProgress(
  events: TaskEvents,
  taskId: string,
  onProgress: unknown,
): Promise<() => Promise<void>> {
  if (typeof onProgress !== 'function') {
    throw new InvalidOptionsError('waitFor options', [`onProgress: expected a function (progress) => void, got ${typeof onProgress}`])
  }
  let lastAt: string | null = null
  return events.subscribe({ taskId, types: ['progress'], details: true }, (event) => {
    if (event.type !== 'progress') return
    const progress: TaskProgress | null | undefined = event.details?.progress
    // Throttled writes can be read twice (two notifications, one row): report each write once.
    if (!progress || progress.at === lastAt) return
    lastAt = progress.at
    return (onProgress as (p: TaskProgress) => unknown)(progress)
  })
}
