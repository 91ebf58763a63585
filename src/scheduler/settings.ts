/** Moved to src/config/services.ts; kept so existing imports keep working. */
export { schedulerSettingsSchema, type SchedulerSettings } from '../config.ts'
