import { z } from 'zod/v4'
import { delayMs, queueNameSchema, strictOptions, timerMs } from './fields.ts'

/** Settings of the background services: relay, worker, sweeper, scheduler. */

const positive = z.number().int().min(1)

/** Where a worker takes tasks from (WorkerSettings.lane). */
export const WORKER_LANES = ['auto', 'redis', 'postgres'] as const
export type WorkerLane = (typeof WORKER_LANES)[number]

export const relaySettingsSchema = strictOptions({
  /** rows claimed per round trip */
  batchSize: positive.max(10_000).default(500),
  /** safety-net poll when no NOTIFY arrives */
  pollIntervalMs: timerMs(10).default(1000),
  /** at most this many dispatched-but-unclaimed tasks per queue sit in Redis */
  maxBacklogPerQueue: positive.default(5000),
  /** after its last dispatch, a relay keeps polling every 2 ms for this long (enqueues skip NOTIFY meanwhile) */
  lingerMs: timerMs(0, 10_000).default(100),
  /** on a Redis failover/reconnect, tasks dispatched this recently are re-dispatched */
  failoverWindowMs: delayMs(0).default(10_000),
}).default({} as never)

export const workerSettingsSchema = strictOptions({
  queues: z.array(queueNameSchema).min(1).default(['default']),
  /** hard cap on handlers running at once in this process */
  concurrency: positive.max(10_000).default(10),
  /** a running task whose lease expires is presumed lost */
  leaseMs: timerMs(100).default(30_000),
  /** renew leases of all in-flight tasks this often (one UPDATE) */
  heartbeatMs: timerMs(50).default(10_000),
  /** on SIGTERM, how long in-flight tasks may finish before being handed back */
  shutdownGraceMs: timerMs(0).default(10_000),
  /** how long one blocking Redis read waits */
  blockMs: timerMs(10).default(2000),
  /** tasks claimed ahead of free slots, so the next batch is ready when handlers finish (leased like running ones) */
  prefetch: z.number().int().min(0).max(10_000).optional(),
  /** group commit: outcomes are flushed at most this late */
  flushIntervalMs: timerMs(0).default(2),
  /**
   * where tasks come from: "auto" takes them from Redis and straight from
   * Postgres while Redis is unreachable; "redis" waits for Redis; "postgres"
   * never uses Redis (run no relay then)
   */
  lane: z.enum(WORKER_LANES).default('auto'),
  /** how often this worker renews its row in the workers table (one UPDATE per worker, not per task) */
  presenceMs: timerMs(50).default(1000),
  /** a worker whose row was not renewed for this long is presumed dead: the sweeper retries its tasks */
  lostAfterMs: timerMs(200).default(5000),
})
  .default({} as never)
  .superRefine((w, ctx) => {
    if (w.lostAfterMs <= 2 * w.presenceMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['lostAfterMs'],
        message: `must be more than twice presenceMs (${w.presenceMs}), got ${w.lostAfterMs}, or one slow renewal makes a live worker look dead`,
      })
    }
    if (w.leaseMs <= 2 * w.heartbeatMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['leaseMs'],
        message: `must be more than twice heartbeatMs (${w.heartbeatMs}), got ${w.leaseMs}, or one slow heartbeat loses the lease`,
      })
    }
  })

export const sweeperSettingsSchema = strictOptions({
  intervalMs: timerMs(10).default(2000),
  /** a dispatched task not claimed within this goes back to pending */
  dispatchTimeoutMs: delayMs(100).default(30_000),
  /** finished tasks older than this are deleted */
  retentionMs: delayMs(0).default(7 * 24 * 3600 * 1000),
  /** rows deleted per statement while pruning */
  pruneBatchSize: positive.max(100_000).default(1000),
  /** delay before retrying a task whose worker was lost */
  lostWorkerRetryDelayMs: delayMs(0).default(1000),
}).default({} as never)

export const schedulerSettingsSchema = strictOptions({
  /** schedules claimed per tick (one transaction) */
  batchSize: z.number().int().min(1).max(1000).default(100),
  /** longest sleep between ticks; NOTIFY on schedule changes wakes earlier */
  maxSleepMs: timerMs(10).default(30_000),
  /** a fire time at most this late is on time and fires under every misfire policy */
  misfireGraceMs: delayMs(0).default(10_000),
  /** misfire "all": at most this many missed fire times per schedule are fired (the latest) */
  maxCatchUp: z.number().int().min(1).max(10_000).default(100),
  /** upsert the tasks' defineTask({ schedules }) at start and remove ones no longer declared */
  syncSchedules: z.boolean().default(true),
}).default({} as never)

export type RelaySettings = z.output<typeof relaySettingsSchema>
export type WorkerSettings = z.output<typeof workerSettingsSchema>
export type SweeperSettings = z.output<typeof sweeperSettingsSchema>
export type SchedulerSettings = z.output<typeof schedulerSettingsSchema>
