import { TaskRelayError } from '../errors.ts'

/**
 * A schedule definition is invalid (cron, time zone, interval, payload,
 * unknown task, conflicting declarations). Nothing was written.
 *
 * @example
 * try { await tr.schedule({ name: 'nightly', task: report, cron: '0 61 * * *' }) }
 * catch (err) { if (err instanceof ScheduleError) console.log(err.scheduleName, err.problems) }
 */
export class ScheduleError extends TaskRelayError {
  /** The schedule's name, or null when it had none. */
  readonly scheduleName: string | null
  readonly problems: readonly string[]
  constructor(scheduleName: string | null, problems: readonly string[], options?: { cause?: unknown }) {
    const which = scheduleName === null ? 'schedule (unnamed)' : `schedule "${scheduleName}"`
    super('SCHEDULE_INVALID', `invalid ${which}:\n${problems.map((p) => `  - ${p}`).join('\n')}`, options)
    this.scheduleName = scheduleName
    this.problems = problems
  }
}

/** No schedule has this name. */
export class ScheduleNotFoundError extends TaskRelayError {
  readonly scheduleName: string
  constructor(scheduleName: string) {
    super('SCHEDULE_NOT_FOUND', `schedule "${scheduleName}" does not exist`)
    this.scheduleName = scheduleName
  }
}
