import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { EventMap, TaskRelayEvents } from './events.ts'
import type { TaskRelayContext } from './db/context.ts'
import { loadSql } from './db/sql.ts'
import { InvalidOptionsError } from './errors.ts'
import { MAX_TIMER_MS } from './duration.ts'

export interface MetricsOptions {
  /** The events of the services to count (the TaskRelayEvents passed to them as `events`). */
  events: TaskRelayEvents
  /**
   * Also report tasks by queue and state, read from Postgres when scraped
   * (one grouped count through the state indexes, at most every
   * queueDepthCacheMs). Omit it in all but one process per deployment if the
   * backlog is large: every process that has it runs the count.
   */
  tr?: TaskRelayContext
  /** Default 5000. */
  queueDepthCacheMs?: number
  /** Register into this registry instead of a new one. */
  registry?: Registry
  /** Node process metrics (CPU, memory, event-loop lag). Default true. */
  processMetrics?: boolean
  /**
   * Series labelled with a queue are removed once that queue had no
   * unfinished task and no event for this long, so queue names used once do
   * not add series forever. Until then they read 0. Default 15 minutes.
   */
  staleSeriesMs?: number
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
  const staleSeriesMs = options.staleSeriesMs ?? 15 * 60_000
  if (!Number.isSafeInteger(staleSeriesMs) || staleSeriesMs < 0 || staleSeriesMs > MAX_TIMER_MS) {
    throw new InvalidOptionsError('metrics options', [`staleSeriesMs: expected an integer from 0 to ${MAX_TIMER_MS} (milliseconds), got ${String(staleSeriesMs)}`])
  }
  const registry = options.registry ?? new Registry()
  const registers = [registry]
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry })
  const series = new QueueSeries(staleSeriesMs)
  /** Each queue-labelled metric drops the series of idle queues before it is read. */
  const collect = () => series.removeStale()

  const started = new Counter({ name: 'taskrelay_tasks_started_total', help: 'Attempts whose handler this process started.', labelNames: ['queue', 'task'], registers, collect })
  const finished = new Counter({
    name: 'taskrelay_tasks_finished_total',
    help: 'Attempts this process ended, by outcome: succeeded, failed (no retry left), retried, lease_lost (outcome discarded), handed_back (shutdown).',
    labelNames: ['queue', 'task', 'outcome'],
    registers,
    collect,
  })
  const duration = new Histogram({
    name: 'taskrelay_task_duration_seconds',
    help: 'Handler run time of attempts that succeeded, failed or will be retried.',
    labelNames: ['queue', 'task', 'outcome'],
    buckets: DURATION_BUCKETS,
    registers,
    collect,
  })
  const dispatched = new Counter({ name: 'taskrelay_relay_dispatched_total', help: 'Tasks the relay pushed to Redis.', labelNames: ['queue'], registers, collect })
  const redispatched = new Counter({
    name: 'taskrelay_redispatched_total',
    help: 'Tasks put back to pending to be pushed again, by reason: redis-reconnect, redis-data-lost, push-failed, dispatch-timeout (sweeper).',
    labelNames: ['reason'],
    registers,
  })
  const leasesReclaimed = new Counter({ name: 'taskrelay_sweeper_leases_reclaimed_total', help: 'Attempts of lost workers the sweeper retried or failed.', registers })
  const pruned = new Counter({ name: 'taskrelay_sweeper_pruned_total', help: 'Finished tasks deleted after retentionMs.', registers })
  const stale = new Counter({ name: 'taskrelay_worker_stale_messages_total', help: 'Redis messages whose claim matched nothing (duplicates, or re-dispatched since).', registers })
  // 1 while Redis cannot be reached: the relay waits, workers on lane auto take tasks from Postgres.
  const redisDown = new Gauge({ name: 'taskrelay_redis_unreachable', help: '1 while this process cannot reach Redis (relay not dispatching, or a worker on the Postgres lane).', labelNames: ['component'], registers })
  const onPostgresLane = new Gauge({ name: 'taskrelay_worker_postgres_lane', help: '1 while this worker takes tasks straight from Postgres.', registers })
  const errors = new Counter({ name: 'taskrelay_service_errors_total', help: 'Loop iterations that failed (retried with backoff).', labelNames: ['component'], registers })

  const seconds = (ms: number) => ms / 1000
  const count = (outcome: string, e: { queue: string; name: string }) => {
    const labels = { queue: e.queue, task: e.name, outcome }
    finished.inc(series.touch(finished, labels))
    return labels
  }
  const timed = (outcome: string, e: { queue: string; name: string; durationMs: number }) =>
    duration.observe(series.touch(duration, count(outcome, e)), seconds(e.durationMs))
  const { events } = options
  const listeners: { [K in keyof EventListeners]?: EventListeners[K] } = {
    'task:started': (e) => started.inc(series.touch(started, { queue: e.queue, task: e.name })),
    'task:succeeded': (e) => timed('succeeded', e),
    'task:failed': (e) => timed('failed', e),
    'task:retried': (e) => timed('retried', e),
    'task:lease-lost': (e) => void count('lease_lost', e),
    'task:handed-back': (e) => void count('handed_back', e),
    'relay:batch': (e) => {
      for (const [queue, n] of Object.entries(e.byQueue)) dispatched.inc(series.touch(dispatched, { queue }), n)
    },
    'relay:redispatch': (e) => redispatched.inc({ reason: e.reason }, e.count),
    'sweeper:run': (e) => {
      if (e.redispatched > 0) redispatched.inc({ reason: 'dispatch-timeout' }, e.redispatched)
      if (e.leasesReclaimed > 0) leasesReclaimed.inc(e.leasesReclaimed)
      if (e.pruned > 0) pruned.inc(e.pruned)
    },
    'worker:stale-messages': (e) => stale.inc(e.count),
    'worker:lane': (e) => {
      onPostgresLane.set(e.lane === 'postgres' ? 1 : 0)
      redisDown.set({ component: 'worker' }, e.lane === 'postgres' && e.reason === 'redis-unreachable' ? 1 : 0)
    },
    'relay:redis': (e) => redisDown.set({ component: 'relay' }, e.reachable ? 0 : 1),
    'service:error': (e) => errors.inc({ component: e.component }),
  }
  for (const [name, fn] of Object.entries(listeners)) events.on(name as keyof EventListeners, fn as never)

  if (options.tr) registerQueueDepth(options.tr, registry, options.queueDepthCacheMs ?? 5000, series)

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
 * gauge's collect in turn). Series of queues that emptied read 0 until
 * QueueSeries removes them.
 */
function registerQueueDepth(tr: TaskRelayContext, registry: Registry, cacheMs: number, series: QueueSeries): void {
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
      const rows = await read()
      // While Postgres cannot be read, queues cannot be seen in use: keep their series.
      series.hold = rows === null
      this.set(rows ? 1 : 0)
    },
  })
  const depth = new Gauge({
    name: 'taskrelay_tasks',
    help: 'Unfinished tasks by queue and state (waiting, pending, dispatched, running), read from Postgres; held_back: the due pending tasks a queue setting holds now (paused, at its limit, out of rate tokens).',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      const rows = await read()
      if (rows) series.setAll(depth, rows.map((r) => [{ queue: r.queue, state: r.state }, r.tasks]))
      series.removeStale()
    },
  })
  const age = new Gauge({
    name: 'taskrelay_oldest_due_pending_seconds',
    help: "Age of each queue's oldest pending task that is due (0 when none waits).",
    labelNames: ['queue'],
    registers: [registry],
    async collect() {
      const rows = await read()
      if (rows) {
        const due = rows.filter((r) => r.state === 'pending' && r.oldest_due_seconds !== null)
        series.setAll(age, due.map((r) => [{ queue: r.queue }, Math.max(0, r.oldest_due_seconds!)]))
        // A queue with unfinished tasks is in use, due or not.
        for (const r of rows) series.touchQueue(r.queue)
      }
      series.removeStale()
    },
  })
}

type Labels = Record<string, string>

interface Removable {
  remove(labels: Labels): void
}

/**
 * The series of each queue, and when the queue was last in use (an event,
 * or unfinished tasks in a depth read): removeStale() drops every series of
 * queues idle for longer than staleMs. Counters that come back start again
 * from 0, which Prometheus reads as a counter reset.
 */
class QueueSeries {
  readonly #staleMs: number
  readonly #queues = new Map<string, { at: number; series: Map<string, { metric: Removable; labels: Labels }> }>()
  /** true while the depth read fails: nothing is removed */
  hold = false

  constructor(staleMs: number) {
    this.#staleMs = staleMs
  }

  touchQueue(queue: string): Map<string, { metric: Removable; labels: Labels }> {
    let q = this.#queues.get(queue)
    if (!q) this.#queues.set(queue, (q = { at: 0, series: new Map() }))
    q.at = Date.now()
    return q.series
  }

  /** Note a series of `labels.queue` in use now; returns the labels. */
  touch<L extends Labels & { queue: string }>(metric: Removable, labels: L): L {
    const key = JSON.stringify(labels)
    const series = this.touchQueue(labels.queue)
    // One entry per metric and label set (a histogram's are shared with its counter's).
    series.set(`${metricKey(metric)}${key}`, { metric, labels })
    return labels
  }

  /** Set each series of `gauge`; its other series of known queues read 0 until removed. */
  setAll(gauge: Gauge, values: Array<[Labels & { queue: string }, number]>): void {
    const now = new Set<string>()
    for (const [labels, value] of values) {
      gauge.set(this.touch(gauge, labels), value)
      now.add(`${metricKey(gauge)}${JSON.stringify(labels)}`)
    }
    for (const q of this.#queues.values()) {
      for (const [key, s] of q.series) if (s.metric === gauge && !now.has(key)) gauge.set(s.labels, 0)
    }
  }

  removeStale(): void {
    if (this.hold) return
    const before = Date.now() - this.#staleMs
    for (const [queue, q] of this.#queues) {
      if (q.at >= before) continue
      for (const { metric, labels } of q.series.values()) metric.remove(labels)
      this.#queues.delete(queue)
    }
  }
}

const metricIds = new WeakMap<object, number>()
let lastMetricId = 0
/** A key prefix per metric object, so equal label sets of two metrics stay apart. */
function metricKey(metric: object): string {
  let id = metricIds.get(metric)
  if (id === undefined) metricIds.set(metric, (id = ++lastMetricId))
  return `${id}:`
}
