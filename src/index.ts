/**
 * taskrelay's public API. Everything exported here is documented and covered
 * by semver; anything else is internal.
 */
export { TaskRelay } from './task-relay.ts'
export type { TaskRelayOptions, WaitForOptions } from './task-relay.ts'
export { defineTask } from './define-task.ts'
export type { Task, TaskDefinition, TaskContext, TaskPolicy, BackoffPolicy, PayloadOf, ResultOf, StandardSchemaV1, InferInput, InferOutput } from './define-task.ts'
export type { EnqueueOptions, EnqueueItem, EnqueueItems, EnqueueResult } from './enqueue.ts'
export type { QueueSettings, RateLimit } from './queue-settings.ts'
export { QueueHandle } from './admin/queues.ts'
export type { QueueInfo, StoredRateLimit } from './admin/queues.ts'
export type { TaskRecord, TaskErrorRecord, AttemptRecord, AttemptOutcomeName, TaskProgress } from './task-record.ts'
export { TASK_STATES, FINAL_STATES } from './task-state.ts'
export type { TaskState } from './task-state.ts'
export type { Queryable } from './db/executor.ts'
export type { MigrateResult } from './db/migrate.ts'
export {
  TaskRelayError,
  PayloadValidationError,
  PayloadTooLargeError,
  PayloadNotSerializableError,
  InvalidOptionsError,
  ConfigError,
  TransactionRequiredError,
  SchemaVersionError,
  TaskNotFoundError,
  DependencyNotFoundError,
  TaskFailedError,
  WaitTimeoutError,
  NonRetryableError,
  LeaseLostError,
  TaskTimeoutError,
  ScheduleError,
  ScheduleNotFoundError,
  ShutdownError,
  InvalidWorkflowError,
  WorkflowFailedError,
  RateLimitedError,
} from './errors.ts'
export { step, chain, group, chord, previousResult } from './workflow/canvas.ts'
export type { WorkflowNode, StepNode, ChainNode, GroupNode, StepOptions, WorkflowOptions } from './workflow/canvas.ts'
export type { WorkflowDetail } from './workflow/workflows.ts'
export type { WorkflowRecord, WorkflowTask } from './db/workflow-queries.ts'
export { MAX_WORKFLOW_STEPS } from './workflow/plan.ts'
export { createLogger } from './logger.ts'
export { createDashboardHandler } from './dashboard/handler.ts'
export type { DashboardHandler, DashboardHandlerOptions } from './dashboard/handler.ts'
export type { DashboardAuth, DashboardCredentials } from './dashboard/auth.ts'
export type { HostPolicy } from './dashboard/guard.ts'
export { createMetrics } from './metrics.ts'
export type { MetricsOptions, TaskRelayMetrics } from './metrics.ts'
export { Relay } from './relay/relay.ts'
export type { RelayOptions, RelayRoundResult } from './relay/relay.ts'
export { Worker } from './worker/worker.ts'
export type { WorkerOptions } from './worker/worker.ts'
export type { TaskMiddleware, MiddlewareContext } from './worker/middleware.ts'
export type { TraceCarrier } from './otel/carrier.ts'
export { traceLogFields } from './otel/log-fields.ts'
export { Sweeper } from './sweeper/sweeper.ts'
export type { SweeperOptions, SweepResult } from './sweeper/sweeper.ts'
export type { RedisConfig, RedisSettings } from './redis/connection.ts'
export { TaskRelayEvents } from './events.ts'
export type { EventMap } from './events.ts'
export { TaskEvents } from './events/task-events.ts'
export { TASK_EVENT_TYPES } from './events/task-event-types.ts'
export type { TaskEvent, TaskEventType, TaskEventGap, TaskEventDetails, TaskEventFilter, TaskEventHandler } from './events/task-event-types.ts'
export type { RelaySettings, WorkerSettings, SweeperSettings, SchedulerSettings } from './config.ts'
export { Scheduler } from './scheduler/scheduler.ts'
export type { SchedulerOptions, SchedulerRunResult } from './scheduler/scheduler.ts'
export { ScheduleManager } from './scheduler/schedule-manager.ts'
export type { UpsertResult, UpsertStatus, ScheduleWriteOptions, SyncResult } from './scheduler/schedules.ts'
export type { TaskScheduleSpec, ScheduleRecord, ScheduleTaskOptions, MisfirePolicy, ScheduleSource } from './scheduler/spec.ts'
export type { ScheduleSpec } from './define-task.ts'
export type { ScheduleFire } from './scheduler/fire.ts'
