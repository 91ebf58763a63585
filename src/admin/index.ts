/**
 * Read models and bulk actions shared by the CLI and the dashboard. They take
 * typed filters and throw library errors (src/errors.ts); each caller parses
 * its own input and words its own output.
 */
export type { AdminContext } from './context.ts'
export { readStats, readStateCounts, type QueueStats, type StatsSnapshot } from './stats.ts'
export { readCharts, type ChartPoint, type ChartRange, type QueueChart } from './charts.ts'
export { listTasks, parseListInput, type ListFilters, type ListInput, type ListedTask } from './task-list.ts'
export { readTaskDetail, readTaskWorkers, type QueueWorkers, type TaskDetail } from './task-detail.ts'
export { cancelUnfinished, countFailed, retryFailed, type BulkFilter } from './bulk.ts'
export { listWorkers, type WorkerInfo } from './workers.ts'
