import type { BenchPayload, SystemName } from '../common.ts'

/**
 * One adapter per system, all with this shape. The producer half runs in the
 * orchestrator process; the worker half (and taskrelay's relay) runs in
 * forked processes (bench/worker-child.ts) so consuming never shares an
 * event loop with producing.
 */
export interface ProducerAdapter {
  readonly name: SystemName
  /** The exact package version (or taskrelay's git commit, read again for every cell: the tree may move). */
  readonly version: string
  /** Settings worth printing beside the numbers. */
  readonly settings: string
  /** Create this run's own schema / prefix / queue. Not timed. `redisUrl`: a Redis of the scenario's own (S7) instead of the bench's. */
  setup(tag: string, o?: { redisUrl?: string }): Promise<void>
  /** Remove everything setup() created and close connections. Not timed. */
  teardown(): Promise<void>
  /** S1: enqueue one task as its own durable unit (one transaction / one call); calls never overlap. */
  enqueueOne(p: BenchPayload): Promise<void>
  /** S2, S6: the same, safe to call from many producer loops at once. */
  enqueueConcurrent(p: BenchPayload): Promise<void>
  /** The system's bulk API, one call for all of `ps`. */
  enqueueBulk(ps: BenchPayload[]): Promise<void>
  /** How many tasks the system stores, and how many distinct bench sequence numbers among them. */
  countStored(): Promise<{ total: number; distinct: number }>
  /** Serializable options for the worker (and relay) processes of this run. */
  workerOptions(): WorkerOptions
  /** S1 only (taskrelay): the caller's business transaction without the enqueue, for the overhead figure. */
  businessOnly?(p: BenchPayload): Promise<void>
  /** S5 (taskrelay): medians of the pipeline's stages from the task rows' own timestamps, in ms. */
  stageBreakdown?(): Promise<Record<string, number>>
  /** Processes besides the worker this system needs for delivery (taskrelay: 'relay'). */
  readonly extraRoles?: readonly string[]
  /**
   * S8: a chord (taskrelay) / flow (BullMQ) of `members` no-op tasks with n =
   * base..base+members-1 and a callback / parent with n = base+members fed
   * their results, built here (not timed). Systems without one skip S8.
   */
  prepareChord?(members: number, base: number): Promise<ChordRun>
  /**
   * S4L, S9 (taskrelay, issue 16): the bench queue's flow settings in the
   * system's own store. set() is partial (null clears a setting); read()
   * gives them back (null: the queue has no settings); reset() removes them
   * altogether, so the queue is not flow-controlled any more.
   */
  queueSettings?: {
    set(s: BenchQueueSettings): Promise<void>
    read(): Promise<BenchQueueSettings | null>
    reset(): Promise<void>
  }
  /**
   * S9: how the system runs at most one task at a time per group, in words
   * (absent: it has no such open feature and S9 is skipped). enqueueBulk puts
   * a payload with `g` into group g; the worker gets `perGroupLimit: 1` in
   * its options.
   */
  readonly perGroupLimit?: string
  /** S9: why not, when the system has no perGroupLimit (shown as the skip reason) */
  readonly noPerGroupLimit?: string
}

/** A queue's flow settings as the bench uses them (taskrelay's QueueSettings, in part). */
export interface BenchQueueSettings {
  concurrency?: number | null
  groupConcurrency?: number | null
}

/** One S8 chord: enqueue() is the timed call; completed() resolves when the system says the callback finished. */
export interface ChordRun {
  enqueue(): Promise<void>
  completed(timeoutMs: number): Promise<void>
  /** after the clock: what the system's own records say (a problem, or null) and stage timings in ms */
  inspect(): Promise<{ problem: string | null; stages: Record<string, number> }>
}

export interface WorkerOptions {
  system: SystemName
  tag: string
  concurrency: number
  /** S7: the scenario's own Redis; absent: the bench's (REDIS_URL) */
  redisUrl?: string
  /** S9: the handler sleeps this long (ms) before it records the task; absent: a no-op */
  handlerMs?: number
  /** S9: at most this many tasks of one group at a time (for systems that set it on the worker: pg-boss) */
  perGroupLimit?: number
  [k: string]: unknown
}

export interface Stoppable {
  stop(): Promise<void>
}

/** Something a service reported while it ran (taskrelay: lane switches, stale messages, re-dispatches), for S7. */
export interface ServiceEvent {
  /** the event's name, e.g. 'worker:lane' */
  type: string
  /** nowMs() when it was emitted */
  at: number
  /** its count field, or 1 */
  count: number
  /** e.g. the lane switched to, or a re-dispatch's reason */
  detail?: string
}

/** A prepared worker or role: start, stop, and optionally what it reported. */
export interface PreparedService extends Stoppable {
  start(): Promise<void>
  events?(): ServiceEvent[]
}

/** What a worker module exports (loaded inside the child process). */
export interface WorkerModule {
  /** Connect and get ready, but take no task before start() is called. */
  prepareWorker(opts: WorkerOptions, onTask: (p: BenchPayload) => void | Promise<void>): Promise<PreparedService>
  /** Other roles (taskrelay's relay). */
  prepareRole?(role: string, opts: WorkerOptions): Promise<PreparedService>
}
