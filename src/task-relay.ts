import type pg from 'pg'
import type { Kysely } from 'kysely'
import type { Logger } from 'pino'
import { type Task, type PayloadOf, type ResultOf, isTask } from './define-task.ts'
import { prepareTaskAwaitable, type EnqueueItem, type EnqueueItems, type EnqueueOptions, type EnqueueResult } from './enqueue.ts'
import { QueueHandle, listQueues, type QueueInfo } from './admin/queues.ts'
import { taskInsertMany, taskInsertOne } from './db/task-insert.ts'
import { EnqueueCoalescer } from './enqueue-coalescer.ts'
import { transactionExecutor, type Executor, type Queryable } from './db/executor.ts'
import { Connections } from './db/connections.ts'
import { migrate as runMigrations, type MigrateResult } from './db/migrate.ts'
import { schemaAssertCurrent, type TaskRelayContext } from './db/context.ts'
import { channels } from './db/sql.ts'
import { ConfigError, InvalidOptionsError, TaskNotFoundError } from './errors.ts'
import { taskRelayOptionsSchema, zodProblems } from './config.ts'
import { silentLogger } from './logger.ts'
import { parseTaskId, toTaskRecord, type TaskRecord } from './task-record.ts'
import { taskAttempts, taskChangeState, taskGetRow } from './db/task-queries.ts'
import { TaskListener, type WaitForOptions } from './db/task-listener.ts'
import { followProgress } from './events/follow-progress.ts'
import { ScheduleManager } from './scheduler/schedule-manager.ts'
import { TaskEvents } from './events/task-events.ts'
import type { WorkflowNode, WorkflowOptions } from './workflow/canvas.ts'
import { cancelWorkflow, enqueueWorkflow, getWorkflow, waitForWorkflow, type WorkflowDetail } from './workflow/workflows.ts'

export type { WaitForOptions }

export interface TaskRelayOptions {
  /**
   * A pg.Pool (from any copy of pg 8), a connection string, or a Kysely
   * instance over pg. Everything works with each; over Kysely, which hides
   * its pg client, waitFor and the relay and scheduler poll instead of
   * LISTEN, and the worker's lease guard is off.
   */
  db: pg.Pool | string | Kysely<any>
  /** Postgres schema holding taskrelay's tables. Default "taskrelay". */
  schema?: string
  /** Largest accepted payload, as JSON bytes. Default 1 MiB. */
  maxPayloadBytes?: number
  /**
   * Write every state change with a synchronous commit. Default false: the
   * relay's dispatch and the worker's outcomes use synchronous_commit=off, so
   * a Postgres crash may undo their last ~0.2 s and a task runs again once its
   * lease expires (at-least-once, never concurrent). True: one more fsync per task.
   */
  durableTransitions?: boolean
  /**
   * Group commit for `enqueue(task, payload)` without a transaction: at most
   * this many such INSERTs at once; calls made meanwhile share the next one
   * and its commit. Default 2; 0 turns it off.
   */
  enqueueCoalescing?: number
  logger?: Logger
}

/**
 * The facade: enqueue (inside the caller's transaction), read, cancel, retry,
 * wait for results, migrate. Background services live in src/relay,
 * src/worker, src/sweeper and take this instance as their TaskRelayContext.
 *
 * @example
 * const tr = new TaskRelay({ db: process.env.DATABASE_URL! })
 * await db.transaction().execute(async (trx) => {
 *   const user = await trx.insertInto('users').values({ email }).returning('id').executeTakeFirstOrThrow()
 *   await tr.enqueue(trx, sendWelcome, { userId: user.id })
 * })
 */
export class TaskRelay implements TaskRelayContext {
  readonly schema: string
  readonly maxPayloadBytes: number
  readonly logger: Logger
  readonly durableTransitions: boolean
  /** The caller's pool or Kysely instance, and the side pools made from a pool. */
  readonly connections: Connections
  /** Schedules from code: upsert, remove, get, list, pause, resume, runNow, sync (docs/scheduling.md). */
  readonly schedules: ScheduleManager
  /** Task state changes from every process, live: subscribe(filter, handler) (LISTEN/NOTIFY; lossy while disconnected). */
  readonly events: TaskEvents
  readonly #executor: Executor
  #listener: TaskListener | null = null
  readonly #coalescer: EnqueueCoalescer | null
  #closed = false

  constructor(options: TaskRelayOptions) {
    const parsed = taskRelayOptionsSchema.safeParse(options ?? {})
    if (!parsed.success) throw new ConfigError(zodProblems(parsed.error))
    const o = parsed.data
    this.schema = o.schema
    this.maxPayloadBytes = o.maxPayloadBytes
    this.durableTransitions = o.durableTransitions
    this.logger = o.logger ?? silentLogger()
    this.connections = new Connections(o.db, this.logger)
    this.#executor = this.connections.executor
    this.#coalescer = o.enqueueCoalescing > 0 ? new EnqueueCoalescer(this.#executor, this.schema, o.enqueueCoalescing) : null
    this.schedules = new ScheduleManager(this)
    this.events = new TaskEvents(this)
  }

  /** The pg.Pool behind db (made from a connection string, or given); null over Kysely. */
  get pool(): pg.Pool | null {
    return this.connections.pool
  }

  /** Executor over taskrelay's own pool (autocommit). */
  get executor(): Executor {
    return this.#executor
  }

  /**
   * Executor for the relay's dispatch and the worker's outcomes: a small pool
   * of its own with synchronous_commit=off (see durableTransitions). Safe
   * because nothing downstream trusts those writes before a synchronous
   * commit follows them: a worker's claim flushes the WAL up to itself, so a
   * dispatch it claims is durable; a lost outcome is retried after its lease.
   */
  get transitionExecutor(): Executor {
    return this.connections.transitionExecutor(this.durableTransitions)
  }

  /**
   * Executor for the worker's claims, heartbeats and hand-backs, the relay's
   * revert and the sweeper's settling of waiting tasks (synchronous
   * commits): a small pool of its own on which Postgres never plans a
   * sequential scan. These batch statements find their rows by primary key
   * through prepared statements, whose generic plan is made once, after five
   * calls. Made while the table was small (a new install), it seq-scanned
   * the table, and kept doing so on every batch as the table grew, until
   * autovacuum's first ANALYZE: a dispatch round of 500 tasks took 250 ms at
   * 60,000 rows instead of 10. The pools run nothing else, so turning the
   * scan off costs no other query a plan. Over a Kysely instance (no pool),
   * taskrelay's main executor.
   */
  get batchExecutor(): Executor {
    return this.connections.batchExecutor
  }

  get channels() {
    return channels(this.schema)
  }

  /** Apply pending migrations (safe to call from many processes at once). */
  async migrate(): Promise<MigrateResult> {
    return runMigrations(this.connections.database, this.schema)
  }

  /** Throw SchemaVersionError unless every shipped migration has been applied. */
  assertSchemaCurrent(): Promise<void> {
    return schemaAssertCurrent(this.connections.database, this.schema)
  }

  /**
   * Enqueue one task. With `trx` (a Kysely Transaction or a pg client after
   * BEGIN) the row commits or rolls back with the caller's work; without it,
   * it commits at once on taskrelay's pool.
   */
  enqueue<T extends Task>(trx: Queryable, task: T, payload: PayloadOf<T>, options?: EnqueueOptions): Promise<EnqueueResult>
  enqueue<T extends Task>(task: T, payload: PayloadOf<T>, options?: EnqueueOptions): Promise<EnqueueResult>
  async enqueue(...args: unknown[]): Promise<EnqueueResult> {
    const [executor, task, payload, options] = this.#splitArgs(args, 'enqueue')
    let prepared = prepareTaskAwaitable(task, payload, options as EnqueueOptions | undefined, this.maxPayloadBytes)
    // Awaited only when the schema is async: a call made before close() must reach the coalescer first.
    if (prepared instanceof Promise) prepared = await prepared
    // Only taskrelay's own autocommit writes are shared; a task with dependencies (a missing one must not
    // fail its neighbours) or a key (its INSERT waits on transactions holding the key) is written alone.
    const keyed = prepared.dependsOn !== null || prepared.idempotencyKey !== null || prepared.keyed !== null
    if (executor === this.#executor && this.#coalescer && !this.#closed && !keyed) {
      return { id: await this.#coalescer.add(prepared), outcome: 'created' }
    }
    return taskInsertOne(executor, this.schema, prepared)
  }

  /** A queue's flow settings and state: configure(), pause(), resume(), info(). */
  queue(name: string): QueueHandle {
    return new QueueHandle(this, name)
  }

  /** Every queue with tasks, settings or registered task types, with its settings and counts. */
  queues(): Promise<QueueInfo[]> {
    return listQueues(this)
  }

  /** Enqueue many tasks in one INSERT statement; ids come back in input order. */
  enqueueMany<const T extends readonly Task<any, any>[]>(trx: Queryable, items: EnqueueItems<T>): Promise<{ ids: string[] }>
  enqueueMany<const T extends readonly Task<any, any>[]>(items: EnqueueItems<T>): Promise<{ ids: string[] }>
  async enqueueMany(a: unknown, b?: unknown): Promise<{ ids: string[] }> {
    const [executor, items] = b === undefined ? [this.#executor, a] : [transactionExecutor(a as Queryable), b]
    if (!Array.isArray(items)) throw new InvalidOptionsError('enqueueMany call', ['items: expected an array of { task, payload, options? }'])
    const prepared = await Promise.all(
      items.map(async (item: EnqueueItem, index) => {
        if (!isTask(item?.task)) throw new InvalidOptionsError('enqueueMany call', [`items.${index}.task: expected a task from defineTask()`])
        return prepareTaskAwaitable(item.task, item.payload, item.options, this.maxPayloadBytes)
      }),
    )
    return { ids: await taskInsertMany(executor, this.schema, prepared) }
  }

  /** The task row, or null when no task has this id; with `{ attempts: true }` its `attempts` too, oldest first. */
  async getTask(id: string | number | bigint, options: { attempts?: boolean } = {}): Promise<TaskRecord | null> {
    const p = { schema: this.schema, id: String(parseTaskId(id)) }
    const [row, attempts] = await Promise.all([taskGetRow(this.#executor, p), options.attempts ? taskAttempts(this.#executor, p) : undefined])
    if (!row) return null
    return attempts ? { ...toTaskRecord(row), attempts } : toTaskRecord(row)
  }

  /** Cancel a task that has not finished. Returns false when it already finished. */
  cancel(id: string | number | bigint): Promise<boolean> {
    return this.#change('cancel', id)
  }

  /** Run a failed or cancelled task again. Returns false when it is not failed/cancelled. */
  retry(id: string | number | bigint): Promise<boolean> {
    return this.#change('retry', id)
  }

  /** The SQL function `fn` (cancel, retry) on one task; TaskNotFoundError when there is none. */
  async #change(fn: 'cancel' | 'retry', id: string | number | bigint): Promise<boolean> {
    if (await taskChangeState(this.#executor, { schema: this.schema, id: String(parseTaskId(id)), change: fn })) return true
    if (!(await this.getTask(id))) throw new TaskNotFoundError(String(id))
    return false
  }

  /**
   * Resolve with the task once it succeeded; reject with TaskFailedError when it
   * failed or was cancelled, WaitTimeoutError after timeoutMs, or the signal's
   * reason when aborted. Woken by LISTEN/NOTIFY (over Kysely: polls every 200 ms).
   * Given the task first, the record's payload and result are typed from it.
   *
   * @example
   * const { id } = await tr.enqueue(report, { day: '2025-06-01' })
   * const { result } = await tr.waitFor(report, id)   // typed as report's handler returns
   */
  waitFor<T extends Task>(task: T, id: string | number | bigint, options?: WaitForOptions): Promise<TaskRecord<PayloadOf<T>, ResultOf<T>>>
  waitFor(id: string | number | bigint, options?: WaitForOptions): Promise<TaskRecord>
  async waitFor(...args: unknown[]): Promise<TaskRecord> {
    const [task, id, options = {}] = (isTask(args[0]) ? args : [null, ...args]) as [Task | null, string | number | bigint, WaitForOptions?]
    const taskId = String(parseTaskId(id))
    options.signal?.throwIfAborted()
    this.#listener ??= new TaskListener(this.connections, this.schema, this.channels.taskFinished, this.logger)
    const stopProgress = options.onProgress !== undefined ? await followProgress(this.events, taskId, options.onProgress) : null
    try {
      return await this.#listener.waitFor(taskId, () => this.getTask(taskId).then((record) => checkTaskName(record, task)), options)
    } finally {
      await stopProgress?.()
    }
  }

  /**
   * Enqueue a workflow (chain, group, chord, nested; src/workflow/canvas.ts)
   * in one statement: with `trx`, in the caller's transaction. Everything is
   * checked first (InvalidWorkflowError, nothing written). Returns the
   * workflow's id, which every one of its tasks carries, and the task ids.
   */
  enqueueWorkflow(trx: Queryable, flow: WorkflowNode<unknown, unknown>, options?: WorkflowOptions): Promise<{ id: string; taskIds: string[] }>
  enqueueWorkflow(flow: WorkflowNode<unknown, unknown>, options?: WorkflowOptions): Promise<{ id: string; taskIds: string[] }>
  enqueueWorkflow(...args: unknown[]): Promise<{ id: string; taskIds: string[] }> {
    const own = typeof args[0] === 'object' && args[0] !== null && 'kind' in args[0]
    const [db, flow, options] = own ? [this.#executor, ...args] : [transactionExecutor(args[0] as Queryable), ...args.slice(1)]
    return enqueueWorkflow(this, db as Executor, flow as WorkflowNode<unknown, unknown>, options as WorkflowOptions | undefined)
  }

  /** A workflow's state, counts per state, failed step and tasks; null when there is none. */
  getWorkflow(id: string): Promise<WorkflowDetail | null> {
    return getWorkflow(this, id)
  }

  /** Resolve with the workflow's result; WorkflowFailedError when a step failed or it was cancelled. */
  waitForWorkflow(id: string, options?: WaitForOptions): Promise<unknown> {
    return waitForWorkflow(this, id, options)
  }

  /** Cancel every unfinished task of a workflow; returns how many were cancelled. */
  cancelWorkflow(id: string): Promise<number> {
    return cancelWorkflow(this, id)
  }

  /** Close what this instance opened (its pool when it made one, its listener). */
  async close(): Promise<void> {
    this.#closed = true
    await this.events.close()
    await this.#coalescer?.drain()
    await this.#listener?.close()
    this.#listener = null
    await this.connections.close()
  }

  #splitArgs(args: unknown[], call: string): [Executor, Task, unknown, unknown] {
    if (isTask(args[0])) return [this.#executor, args[0], args[1], args[2]]
    if (!isTask(args[1])) {
      throw new InvalidOptionsError(`${call} call`, ['expected (trx, task, payload, options?) or (task, payload, options?) with a task from defineTask()'])
    }
    if (args.length > 4) throw new InvalidOptionsError(`${call} call`, [`too many arguments (${args.length})`])
    return [transactionExecutor(args[0] as Queryable), args[1], args[2], args[3]]
  }
}

/** waitFor(task, id) on a task of another kind: refused at the first read, not after it finished. */
function checkTaskName(record: TaskRecord | null, task: Task | null): TaskRecord | null {
  if (!task || !record || record.name === task.name) return record
  throw new InvalidOptionsError('waitFor call', [`task ${record.id} is a "${record.name}" task, not "${task.name}"; its result has another type`])
}
