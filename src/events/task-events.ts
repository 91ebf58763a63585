import type pg from 'pg'
import type { Logger } from 'pino'
import { ConfigError, InvalidOptionsError, TaskRelayError } from '../errors.ts'
import type { Executor } from '../db/executor.ts'
import { PgListener } from '../db/listener.ts'
import { ListenerRegistration } from './listener-registration.ts'
import { taskEventRows, type TaskEventRow } from '../db/task-events-queries.ts'
import {
  matchesEvent,
  matchesRow,
  parseFilter,
  parseNotification,
  type ParsedFilter,
  type TaskEvent,
  type TaskEventDetails,
  type TaskEventFilter,
  type TaskEventGap,
  type TaskEventHandler,
  type TaskEventType,
} from './task-event-types.ts'

/** What TaskEvents needs of its TaskRelay. */
export interface TaskEventsHost {
  readonly schema: string
  readonly logger: Logger
  /**
   * Where rows are read: the batch pool, which never plans a sequential scan.
   * On the main pool the prepared read's generic plan, made while the table
   * was small, scanned it and tested each row against all 350 ids: 22 ms a
   * read at 11,000 rows instead of 2, growing with the table until ANALYZE.
   */
  readonly batchExecutor: Executor
  readonly pool: pg.Pool | null
}

interface Subscriber {
  readonly filter: ParsedFilter
  readonly handler: TaskEventHandler
  active: boolean
}

/** The NOTIFY channel of task events (migration 0016). */
export function taskEventsChannel(schema: string): string {
  return `${schema}.task_events`
}

/**
 * `tr.events`: task state changes from every process, live. One LISTEN
 * connection per TaskRelay, shared by every subscriber: opened by the first
 * subscribe(), closed when the last one unsubscribes or the TaskRelay closes.
 *
 * Delivery is LISTEN/NOTIFY's: at most once, in commit order, nothing while
 * the connection is down. After a reconnect every subscriber gets a `gap`
 * event; what changed meanwhile is in the rows, never replayed. Read state
 * from the rows (getTask, the dashboard do); use events to know when to look.
 */
export class TaskEvents {
  readonly #host: TaskEventsHost
  readonly #log: Logger
  readonly #subs = new Set<Subscriber>()
  #listener: PgListener | null = null
  /** present while #listener is: the statements announce events only while it is registered (0019) */
  #registration: ListenerRegistration | null = null
  // Notifications are handled one at a time, in arrival order: a row read for
  // one must not let the next one overtake it.
  #queue: Promise<void> = Promise.resolve()
  #closed = false

  constructor(host: TaskEventsHost) {
    this.#host = host
    this.#log = host.logger.child({ component: 'task-events' })
  }

  /** How many subscriptions are open. */
  get subscriptions(): number {
    return this.#subs.size
  }

  /**
   * Call `handler` for every event `filter` takes, until the returned
   * function is called. Resolves once listening: what commits after that is
   * delivered. A handler that throws or rejects is logged; the others still
   * get the event. InvalidOptionsError for a bad filter; ConfigError over a
   * Kysely instance (it hides the pg client LISTEN needs).
   *
   * @example
   * const stop = await tr.events.subscribe({ queue: 'emails', types: ['failed'] }, (e) => {
   *   if (e.type === 'gap') return resync()   // events were lost: re-read the rows
   *   alert(`task ${e.taskId} failed`)
   * })
   */
  async subscribe(filter: TaskEventFilter, handler: TaskEventHandler): Promise<() => Promise<void>> {
    const parsed = parseFilter(filter)
    if (typeof handler !== 'function') throw new InvalidOptionsError('tr.events.subscribe call', ['handler: expected a function (event) => void'])
    if (this.#closed) throw new TaskRelayError('CLOSED', 'tr.events: this TaskRelay was closed; subscribe on an open one')
    const pool = this.#host.pool
    if (!pool) throw new ConfigError(['tr.events needs LISTEN, which a Kysely instance hides: pass db as a pg.Pool or a connection string'])
    const sub: Subscriber = { filter: parsed, handler, active: true }
    this.#subs.add(sub)
    this.#listener ??= new PgListener(
      pool,
      [taskEventsChannel(this.#host.schema)],
      (_channel, payload) => this.#enqueue((at) => this.#dispatch(payload, at)),
      this.#log,
      () => this.#enqueue((at) => this.#broadcast({ type: 'gap', at, reason: 'reconnected' })),
    )
    const unsubscribe = async () => {
      if (!sub.active) return
      sub.active = false
      this.#subs.delete(sub)
      if (this.#subs.size === 0) await this.#stopListening()
    }
    this.#registration ??= new ListenerRegistration(this.#host.batchExecutor, this.#host.schema, this.#log)
    try {
      // Registered first: a statement that starts after subscribe() resolves announces its events.
      await this.#registration.start()
      await this.#listener.ready()
    } catch (err) {
      await unsubscribe()
      throw err
    }
    return unsubscribe
  }

  /** End every subscription and the LISTEN connection; subscribe() is refused after. */
  async close(): Promise<void> {
    this.#closed = true
    for (const sub of this.#subs) sub.active = false
    this.#subs.clear()
    await this.#stopListening()
    await this.#queue
  }

  async #stopListening(): Promise<void> {
    const listener = this.#listener
    const registration = this.#registration
    this.#listener = null
    this.#registration = null
    await Promise.all([listener?.close(), registration?.stop()])
  }

  #enqueue(step: (at: Date) => Promise<void> | void): void {
    const at = new Date()
    this.#queue = this.#queue.then(() => step(at)).catch((err: unknown) => this.#log.error({ err }, 'task event dispatch failed'))
  }

  async #dispatch(payload: string, at: Date): Promise<void> {
    const n = parseNotification(payload)
    if (!n) return void this.#log.warn({ payload: payload.slice(0, 80) }, 'not a task event notification; skipped')
    const targets = [...this.#subs]
    const wanted = n.ids.filter((id) => targets.some((s) => s.filter.needsRow && matchesEvent(s.filter, n.type, n.queue, id)))
    let rows: Map<string, TaskEventRow> | null = null
    if (wanted.length > 0) {
      try {
        rows = await taskEventRows(this.#host.batchExecutor, { schema: this.#host.schema, ids: wanted })
      } catch (err) {
        this.#log.warn({ err, ids: wanted.length }, 'could not read the rows of task events; their subscribers get a gap')
      }
    }
    const gapped = new Set<Subscriber>()
    for (const taskId of n.ids) {
      const plain: TaskEvent = Object.freeze({ type: n.type, taskId, queue: n.queue, at })
      const row = rows?.get(taskId)
      const details = row ? toDetails(row, n.type) : null
      let detailed: TaskEvent | null = null
      for (const sub of targets) {
        if (!sub.active || !matchesEvent(sub.filter, n.type, n.queue, taskId)) continue
        if (sub.filter.needsRow && rows === null) {
          if (!gapped.has(sub)) this.#deliver(sub, Object.freeze({ type: 'gap', at, reason: 'read-failed' }))
          gapped.add(sub)
          continue
        }
        if (!matchesRow(sub.filter, details)) continue
        this.#deliver(sub, sub.filter.details ? (detailed ??= Object.freeze({ ...plain, details })) : plain)
      }
    }
  }

  #broadcast(event: TaskEventGap): void {
    const frozen = Object.freeze(event)
    for (const sub of [...this.#subs]) if (sub.active) this.#deliver(sub, frozen)
  }

  /** Call one handler; what it throws (or rejects with) is logged and goes no further. */
  #deliver(sub: Subscriber, event: TaskEvent | TaskEventGap): void {
    const failed = (err: unknown) =>
      this.#log.error({ err, event: { type: event.type, taskId: 'taskId' in event ? event.taskId : undefined } }, 'task event subscriber threw; the others still get the event')
    try {
      const result = sub.handler(event)
      if (typeof (result as PromiseLike<void> | undefined)?.then === 'function') (result as PromiseLike<void>).then(undefined, failed)
    } catch (err) {
      failed(err)
    }
  }
}

function toDetails(row: TaskEventRow, type: TaskEventType): TaskEventDetails {
  return Object.freeze({
    name: row.name,
    state: row.state,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    workflowId: row.workflow_id,
    progress: row.progress ?? null,
    // last_error outlives the attempt it describes (a retry that then succeeded keeps it).
    error: type === 'retried' || type === 'failed' || type === 'cancelled' ? (row.last_error ?? null) : null,
  })
}
