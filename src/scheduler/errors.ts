/** Moved to src/errors.ts with every other public error; kept so existing imports keep working. */
export { ScheduleError, ScheduleNotFoundError } from '../errors.ts'
