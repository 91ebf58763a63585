import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { TaskRelayContext } from '../db/context.ts'
import type { Wakeups } from '../db/poller.ts'
import { loadSql } from '../db/sql.ts'
import { tasksNextDueInMs } from '../db/task-queries.ts'
import { flowTake, queuesWithSettings, taskClaimDue, type ClaimedTask } from '../db/worker-queries.ts'
import { TaskReadyWakeups } from '../wake-timer.ts'

/** Safety-net poll of the Postgres lane when no NOTIFY comes (a Kysely db cannot LISTEN; a notification lost in a reconnect). */
const POLL_MS = 1000
/**
 * A dispatched task whose message waited this long may sit in a Redis this
 * worker cannot reach: the Postgres lane claims it too. Long enough that
 * workers still reading Redis normally claim their own messages first.
 */
export const STRANDED_AFTER_MS = 2000
/** How long the lane trusts its list of queues with settings: a queue given settings is honoured within this. */
const FLOW_QUEUES_TTL_MS = 500
/** Renew the lane's row in relays this often: relays starting up delete rows not seen for a day. */
const REREGISTER_MS = 3_600_000

/**
 * The worker's Postgres lane: due tasks claimed straight from Postgres
 * (task-claim-due.sql, SKIP LOCKED, the same fenced claim as messages from
 * Redis), woken by the task_ready NOTIFY that enqueues and retries send.
 * Open for the worker's whole run (lanes "auto" and "postgres"): it is
 * registered in the relays table as something to wake, so enqueues notify
 * even when no relay runs, and an idle worker on the Redis lane hears them.
 */
export class PostgresLane {
  readonly #tr: TaskRelayContext
  readonly #queues: string[]
  readonly #workerId: string
  readonly #leaseMs: number
  readonly #log: Logger
  #listener: Wakeups | null = null
  #registered = false
  /** Date.now() of the last (re)registration: relay-register.sql drops rows not seen for a day */
  #registeredAt = 0
  /** the queue to serve first next time: queues take turns */
  #turn = 0
  /** the token of a claim that failed (it may have committed): the next claim sends it again */
  #retryToken: string | null = null
  /** the tasks flow_take() gave the failed claim: sent again with its token */
  #retryFlowIds: string[] = []
  /** this worker's queues that have settings, as of #flowCheckedAt (Date.now()) */
  #flowQueues: string[] = []
  #flowCheckedAt = -Infinity
  /** the claim under way: claims go one at a time, so two never adopt the same rows */
  #claiming: Promise<unknown> = Promise.resolve()
  #wake: (() => void) | null = null
  /** a wake-up that came while nobody waited: the next wait returns at once */
  #woken = false
  readonly #wakeups = new TaskReadyWakeups(() => this.wake())
  /** called on every "due now" NOTIFY (an enqueue), whether or not the lane is in use: an idle worker may claim at once */
  onEnqueued: (() => void) | null = null

  constructor(tr: TaskRelayContext, o: { queues: readonly string[]; workerId: string; leaseMs: number; log: Logger }) {
    this.#tr = tr
    this.#queues = [...o.queues]
    this.#workerId = o.workerId
    this.#leaseMs = o.leaseMs
    this.#log = o.log
  }

  /** Listen for task_ready and register to be woken by enqueues (idempotent). */
  async open(): Promise<void> {
    if (!this.#registered) await this.#register()
    this.#listener ??= this.#tr.connections.listen(
      [this.#tr.channels.taskReady],
      {
        onNotify: (_channel, payload) => {
          if (payload === '') this.onEnqueued?.()
          this.#wakeups.onNotify(payload)
        },
        onCatchUp: () => this.wake(),
      },
      this.#log,
      POLL_MS,
    )
    await this.#listener.ready()
  }

  /** Stop being woken (the worker stops). */
  async close(): Promise<void> {
    this.#wakeups.clear()
    const listener = this.#listener
    this.#listener = null
    await listener?.close()
    if (this.#registered) {
      this.#registered = false
      await this.#tr.executor.query(loadSql('relay-unregister.sql', this.#tr.schema), [this.#relayRowId]).catch((err: unknown) => {
        this.#log.warn({ err }, 'could not unregister the postgres lane from the relays table; its row expires by itself')
      })
    }
    this.wake()
  }

  async #register(): Promise<void> {
    await this.#tr.executor.query(loadSql('relay-register.sql', this.#tr.schema), [this.#relayRowId])
    this.#registered = true
    this.#registeredAt = Date.now()
  }

  get #relayRowId(): string {
    return `worker:${this.#workerId}`
  }

  /**
   * Claim up to `limit` due tasks of this worker's queues, queues taking
   * turns at being first; `held`: ids this worker holds. `stranded`: also
   * dispatched tasks whose message waited past STRANDED_AFTER_MS (only
   * while Redis is unreachable: otherwise they are on their way).
   */
  async claim(limit: number, held: readonly string[], stranded = true): Promise<ClaimedTask[]> {
    const claim = this.#claiming.then(() => this.#claimNow(limit, held, stranded))
    this.#claiming = claim.catch(() => {})
    return claim
  }

  async #claimNow(limit: number, held: readonly string[], stranded: boolean): Promise<ClaimedTask[]> {
    if (this.#registered && Date.now() - this.#registeredAt > REREGISTER_MS) await this.#register()
    const start = this.#turn++ % this.#queues.length
    const queues = [...this.#queues.slice(start), ...this.#queues.slice(0, start)]
    // A failed claim may have committed with its reply lost: its token, sent again, gets its rows back.
    const claimToken = this.#retryToken ?? randomUUID()
    let flowIds = this.#retryFlowIds
    try {
      if (flowIds.length === 0) flowIds = await this.#flowTake(queues, limit, claimToken)
      const rows = await taskClaimDue(this.#tr.batchExecutor, {
        schema: this.#tr.schema,
        queues,
        limit,
        leaseMs: this.#leaseMs,
        workerId: this.#workerId,
        strandedAfterMs: stranded ? STRANDED_AFTER_MS : null,
        held,
        claimToken,
        flowIds,
      })
      this.#retryToken = null
      this.#retryFlowIds = []
      return rows
    } catch (err) {
      this.#retryToken = claimToken
      this.#retryFlowIds = flowIds
      throw err
    }
  }

  /** Queues with settings go through flow_take() first (task-flow-take.sql), in this claim's queue order. */
  async #flowTake(queues: readonly string[], limit: number, token: string): Promise<string[]> {
    if (Date.now() - this.#flowCheckedAt >= FLOW_QUEUES_TTL_MS) {
      this.#flowQueues = await queuesWithSettings(this.#tr.executor, this.#tr.schema, this.#queues)
      this.#flowCheckedAt = Date.now()
    }
    const flow = queues.filter((q) => this.#flowQueues.includes(q))
    if (flow.length === 0) return []
    return flowTake(this.#tr.batchExecutor, { schema: this.#tr.schema, queues: flow, limit, token })
  }

  /** Nothing due now: wake when the earliest delayed task falls due, if before the next poll. */
  async wakeForNextDelayed(): Promise<void> {
    this.#wakeups.nextDueIn(await tasksNextDueInMs(this.#tr.executor, this.#tr), POLL_MS)
  }

  /** Wait for a task_ready NOTIFY, a wake(), or the safety-net poll. */
  async waitForWork(signal: AbortSignal): Promise<void> {
    if (this.#woken || signal.aborted) {
      this.#woken = false
      return
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        this.#wake = null
        resolve()
      }
      const timer = setTimeout(done, POLL_MS)
      signal.addEventListener('abort', done, { once: true })
      this.#wake = done
    })
    this.#woken = false
  }

  /** End the current wait (a NOTIFY, Redis back, stop). */
  wake(): void {
    if (this.#wake) this.#wake()
    else this.#woken = true
  }
}
