import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { EventMap, TaskRelayEvents } from './events.ts'
import type { TaskRelay } from './task-relay.ts'
import { loadSql } from './db/sql.ts'

export interface MetricsOptions {
  /** The events of the services to count (the TaskRelayEvents passed to them as `events`). */
  events: TaskRelayEvents
  /**
   * Also report tasks by queue and state, read from Postgres when scraped
   * (one grouped count through the state indexes, at most every
   * queueDepthCacheMs). Omit it in all but one process per deployment if the
   * backlog is large: every process that has it runs the count.
   */
  tr?: TaskRelay
  /** Default 5000. */
  queueDepthCacheMs?: number
  /** Register into this registry instead of a new one. */
  registry?: Registry
  /** Node process metrics (CPU, memory, event-loop lag). Default true. */
  processMetrics?: boolean
}

export interface TaskRelayMetrics {
  readonly registry: Registry
  /** Stop counting (unsubscribes from the events). */
  close(): void
}

/** Seconds, for handler durations: 1 ms to 10 min. */
const DURATION_BUCKETS = [0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 120, 600]

/**
 * Prometheus metrics for taskrelay's services, fed by their events, plus
 * queue depth read from Postgres at scrape time. Serve `registry.metrics()`
 * on your own HTTP endpoint, or run the CLI with --health-port, which serves
 * it on /metrics.
 */
export function createMetrics(options: MetricsOptions): TaskRelayMetrics {
  const registry = options.registry ?? new Registry()
  const registers = [registry]
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry })

  const started = new Counter({ name: 'taskrelay_tasks_started_total', help: 'Attempts whose handler this process started.', labelNames: ['queue', 'task'], registers })
  const finished = new Counter({
    name: 'taskrelay_tasks_finished_total',
    help: 'Attempts this process ended, by outcome: succeeded, failed (no retry left), retried, lease_lost (outcome discarded), handed_back (shutdown).',
    labelNames: ['queue', 'task', 'outcome'],
    registers,
  })
  const duration = new Histogram({
    name: 'taskrelay_task_duration_seconds',
    help: 'Handler run time of attempts that succeeded, failed or will be retried.',
    labelNames: ['queue', 'task', 'outcome'],
    buckets: DURATION_BUCKETS,
    registers,
  })
  const dispatched = new Counter({ name: 'taskrelay_relay_dispatched_total', help: 'Tasks the relay pushed to Redis.', labelNames: ['queue'], registers })
  const redispatched = new Counter({
    name: 'taskrelay_redispatched_total',
    help: 'Tasks put back to pending to be pushed again, by reason: redis-reconnect, redis-data-lost, push-failed, dispatch-timeout (sweeper).',
    labelNames: ['reason'],
    registers,
  })
  const leasesReclaimed = new Counter({ name: 'taskrelay_sweeper_leases_reclaimed_total', help: 'Attempts of lost workers the sweeper retried or failed.', registers })
  const pruned = new Counter({ name: 'taskrelay_sweeper_pruned_total', help: 'Finished tasks deleted after retentionMs.', registers })
  const stale = new Counter({ name: 'taskrelay_worker_stale_messages_total', help: 'Redis messages whose claim matched nothing (duplicates, or re-dispatched since).', registers })
  const errors = new Counter({ name: 'taskrelay_service_errors_total', help: 'Loop iterations that failed (retried with backoff).', labelNames: ['component'], registers })

  const seconds = (ms: number) => ms / 1000
  const { events } = options
  const listeners: { [K in keyof EventListeners]?: EventListeners[K] } = {
    'task:started': (e) => started.inc({ queue: e.queue, task: e.name }),
    'task:succeeded': (e) => {
      finished.inc({ queue: e.queue, task: e.name, outcome: 'succeeded' })
      duration.observe({ queue: e.queue, task: e.name, outcome: 'succeeded' }, seconds(e.durationMs))
    },
    'task:failed': (e) => {
      finished.inc({ queue: e.queue, task: e.name, outcome: 'failed' })
      duration.observe({ queue: e.queue, task: e.name, outcome: 'failed' }, seconds(e.durationMs))
    },
    'task:retried': (e) => {
      finished.inc({ queue: e.queue, task: e.name, outcome: 'retried' })
      duration.observe({ queue: e.queue, task: e.name, outcome: 'retried' }, seconds(e.durationMs))
    },
    'task:lease-lost': (e) => finished.inc({ queue: e.queue, task: e.name, outcome: 'lease_lost' }),
    'task:handed-back': (e) => finished.inc({ queue: e.queue, task: e.name, outcome: 'handed_back' }),
    'relay:batch': (e) => {
      for (const [queue, n] of Object.entries(e.byQueue)) dispatched.inc({ queue }, n)
    },
    'relay:redispatch': (e) => redispatched.inc({ reason: e.reason }, e.count),
    'sweeper:run': (e) => {
      if (e.redispatched > 0) redispatched.inc({ reason: 'dispatch-timeout' }, e.redispatched)
      if (e.leasesReclaimed > 0) leasesReclaimed.inc(e.leasesReclaimed)
      if (e.pruned > 0) pruned.inc(e.pruned)
    },
    'worker:stale-messages': (e) => stale.inc(e.count),
    'service:error': (e) => errors.inc({ component: e.component }),
  }
  for (const [name, fn] of Object.entries(listeners)) events.on(name as keyof EventListeners, fn as never)

  if (options.tr) registerQueueDepth(options.tr, registry, options.queueDepthCacheMs ?? 5000)

  return {
    registry,
    close() {
      for (const [name, fn] of Object.entries(listeners)) events.off(name as keyof EventListeners, fn as never)
    },
  }
}

type EventListeners = { [K in keyof EventMap]: (...args: EventMap[K]) => void }

interface DepthRow {
  queue: string
  state: string
  tasks: number
  oldest_due_seconds: number | null
}

/**
 * taskrelay_tasks{queue,state} and taskrelay_oldest_due_pending_seconds{queue},
 * from one query per scrape (cached briefly: Prometheus may scrape each
 * gauge's collect in turn). Series of queues that emptied read 0, not gone.
 */
function registerQueueDepth(tr: TaskRelay, registry: Registry, cacheMs: number): void {
  let cached: { at: number; rows: Promise<DepthRow[] | null> } | null = null
  // null when Postgres could not be read: the scrape still succeeds, with
  // every other metric, since an outage is when they matter most.
  const read = (): Promise<DepthRow[] | null> => {
    if (!cached || Date.now() - cached.at > cacheMs) {
      const rows = tr.executor.query<DepthRow>(loadSql('metrics-queue-depth.sql', tr.schema)).then(
        (r) => r.rows,
        () => {
          cached = null // not cached: the next scrape tries again
          return null
        },
      )
      cached = { at: Date.now(), rows }
    }
    return cached.rows
  }
  new Gauge({
    name: 'taskrelay_queue_depth_up',
    help: '1 when this scrape read queue depth from Postgres, 0 when it could not (the depth gauges then keep their last values).',
    registers: [registry],
    async collect() {
      this.set((await read()) ? 1 : 0)
    },
  })
  const depth = new Gauge({
    name: 'taskrelay_tasks',
    help: 'Unfinished tasks by queue and state (waiting, pending, dispatched, running), read from Postgres.',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      const rows = await read()
      if (rows) setSeen(depth, seenDepth, rows.map((r) => [{ queue: r.queue, state: r.state }, r.tasks]))
    },
  })
  const age = new Gauge({
    name: 'taskrelay_oldest_due_pending_seconds',
    help: "Age of each queue's oldest pending task that is due (0 when none waits).",
    labelNames: ['queue'],
    registers: [registry],
    async collect() {
      const rows = await read()
      if (!rows) return
      const due = rows.filter((r) => r.state === 'pending' && r.oldest_due_seconds !== null)
      setSeen(age, seenAge, due.map((r) => [{ queue: r.queue }, Math.max(0, r.oldest_due_seconds!)]))
    },
  })
  const seenDepth = new Map<string, Labels>()
  const seenAge = new Map<string, Labels>()
}

type Labels = Record<string, string>

/** Set each series; series seen before but absent now read 0 instead of vanishing. */
function setSeen(gauge: Gauge, seen: Map<string, Labels>, values: Array<[Labels, number]>): void {
  const now = new Set<string>()
  for (const [labels, value] of values) {
    const key = JSON.stringify(labels)
    gauge.set(labels, value)
    now.add(key)
    seen.set(key, labels)
  }
  for (const [key, labels] of seen) if (!now.has(key)) gauge.set(labels, 0)
}
