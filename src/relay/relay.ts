import { randomBytes, randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import type { Redis } from 'ioredis'
import { Service, type ServiceDeps } from '../service.ts'
import type { TaskRelayContext } from '../db/context.ts'
import { parseSettings, relaySettingsSchema, type RelaySettings } from '../config.ts'
import { InvalidOptionsError } from '../errors.ts'
import { loadSql, withIntegers } from '../db/sql.ts'
import type { Wakeups } from '../db/poller.ts'
import { createRedis, checkEvictionPolicy, closeRedis, type RedisConfig } from '../redis/connection.ts'
import { encodeMessage, redisKeys, type Keys } from '../redis/keys.ts'
import { StaleMessageCollector, StaleMessageSchedule, type StaleMessagesResult } from './stale-messages.ts'
import { TaskReadyWakeups } from '../wake-timer.ts'
import { tasksNextDueInMs } from '../db/task-queries.ts'
import { redispatchWindow } from './after-reconnect.ts'

export interface RelayOptions extends Partial<RelaySettings> {
  redis: RedisConfig
  /** Redis key prefix shared by relays and workers. Default "taskrelay". */
  keyPrefix?: string
}

export interface RelayRoundResult {
  dispatched: number
  /** the batch was full: more due rows are likely waiting */
  more: boolean
  saturatedQueues: string[]
}

/** In push order: best first (relay-dispatch-batch.sql sorts them). */
interface DispatchedRow {
  id: string
  queue: string
  /** the queue this round's walk ended on (the same in every row) */
  last_queue: string
}

/**
 * A round that finds this many rows means enqueues arrive faster than the
 * relay's round trip: it lingers and enqueues stop notifying. One row per
 * round is a trickle, where a NOTIFY per enqueue is cheap and fastest.
 */
const BUSY_ROUND_ROWS = 2

const POLL_WITHOUT_LISTEN_MS = 200 // over a Kysely instance (no LISTEN): how often to look for due rows
/** How often the relay goes through every queue's Redis list for stale messages (in the background). */
const STALE_MESSAGES_EVERY_MS = 30_000
/**
 * Moves due pending rows from Postgres to Redis. Wakes on the NOTIFY that
 * enqueue statements send while no relay is busy (wake-idle-relays.sql) and
 * when the earliest delayed task or retry falls due (a timer), polls every
 * pollIntervalMs as a safety net, and goes again at once while batches come
 * back full.
 */
export class Relay extends Service<RelayRoundResult> {
  readonly settings: Readonly<RelaySettings>
  readonly #tr: TaskRelayContext
  readonly #redisConfig: RedisConfig
  readonly #keys: Keys
  #redis: Redis | null = null
  #listener: Wakeups | null = null
  /** queue -> list length after our last push, for queues at or over the backlog bound */
  readonly #saturated = new Map<string, number>()
  #everReady = false
  /** Redis was found unreachable at the last round (said once, see #sayReachable) */
  #unreachable = false
  #lostAt: number | null = null // performance.now() of the earliest connection loss not yet followed by a re-dispatch
  #closes = 0
  /** identifies this relay's row in the relays table */
  readonly relayId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
  /** until when this relay polls on its own (advertised in the relays table) */
  #lingerUntil = 0
  /** relay-dispatch-batch.sql with this relay's batch size written in */
  #dispatchSql: string | undefined
  /** the queue the last round ended on: the next round's walk starts after it */
  #lastQueue = ''
  /** wakes the loop on task_ready, and when the earliest announced retry or delayed task is due */
  readonly #wakeups = new TaskReadyWakeups(() => this.wake())
  readonly #staleCollector: StaleMessageCollector
  readonly #staleSchedule: StaleMessageSchedule

  constructor(tr: TaskRelayContext, options: RelayOptions, deps: ServiceDeps = {}) {
    super('relay', { logger: tr.logger, ...deps })
    const { redis, keyPrefix, ...settings } = options
    if (!redis) throw new InvalidOptionsError('relay options', ['redis: required (a redis:// URL or sentinel settings)'])
    this.settings = parseSettings(relaySettingsSchema, settings, 'relay options', (w, p) => new InvalidOptionsError(w, p))
    this.#tr = tr
    this.#redisConfig = redis
    this.#keys = redisKeys(keyPrefix ?? 'taskrelay')
    // Housekeeping: a failed pass is logged, dispatching goes on, the next cycle tries again.
    this.#staleCollector = new StaleMessageCollector(tr.batchExecutor, tr.schema, this.#keys)
    const onError = (err: unknown) => this.log.warn({ err }, 'could not remove stale Redis messages')
    this.#staleSchedule = new StaleMessageSchedule(STALE_MESSAGES_EVERY_MS, onError)
  }

  protected override async onStart(): Promise<void> {
    await this.#tr.assertSchemaCurrent()
    await this.#tr.executor.query(loadSql('relay-register.sql', this.#tr.schema), [this.relayId])
    const redis = createRedis(this.#redisConfig, { role: 'commands', commandTimeoutMs: 5000 }, this.log)
    // The replication window to re-dispatch ends when the primary was lost,
    // not when we got through to the new one (seconds later with Sentinel).
    redis.on('close', () => {
      this.#closes++
      this.#lostAt ??= performance.now()
    })
    // Every (re)connection may follow a failover or a Redis restart.
    redis.on('ready', () => {
      const first = !this.#everReady
      this.#everReady = true
      void this.#afterRedisReady(first)
    })
    this.#redis = redis
    await redis.connect().catch((err) => this.log.debug({ err }, 'redis not reachable yet; will keep retrying'))
    await checkEvictionPolicy(redis, this.log)
    this.#listener = this.#tr.connections.listen(
      [this.#tr.channels.taskReady],
      { onNotify: (_channel, payload) => this.#wakeups.onNotify(payload), onCatchUp: () => this.wake() },
      this.log,
      Math.min(this.settings.pollIntervalMs, POLL_WITHOUT_LISTEN_MS),
    )
    await this.#listener.ready()
    this.log.info({ settings: this.settings }, 'relay started')
  }

  protected override async onStop(): Promise<void> {
    await this.#listener?.close()
    this.#listener = null
    this.#wakeups.clear()
    closeRedis(this.#redis)
    this.#redis = null
    await this.#staleSchedule.settled() // a pass on the closed connection fails at once
    await this.#tr.executor
      .query(loadSql('relay-unregister.sql', this.#tr.schema), [this.relayId])
      .catch((err) => this.log.warn({ err }, 'could not unregister relay; its row expires by itself'))
    this.log.info('relay stopped')
  }

  /**
   * Go again at once while rounds find work; after a round that found
   * several rows (load), linger: poll every 2 ms for lingerMs, as advertised
   * in the relays table; otherwise sleep until a NOTIFY or the safety-net poll.
   */
  protected delayAfter(result: RelayRoundResult): number {
    if (result.dispatched > 0) return 0
    if (performance.now() < this.#lingerUntil) return 2
    return this.settings.pollIntervalMs
  }

  async runOnce(): Promise<RelayRoundResult> {
    const redis = this.#requireRedis()
    // Dispatching into a Redis that cannot be reached only churns rows: they stay pending, for the Postgres lane.
    if (!this.#sayReachable(redis.status === 'ready')) return { dispatched: 0, more: false, saturatedQueues: [] }
    const round = await this.#dispatchRound(redis)
    this.#staleSchedule.maybeStart(this.clock.now().getTime(), () => this.pruneStaleMessages())
    return round
  }

  /** Why the relay is degraded (null: it is not): Redis cannot be reached. */
  get degraded(): string | null {
    return this.#unreachable ? 'redis unreachable: not dispatching; tasks stay in Postgres for workers on the Postgres lane' : null
  }

  /** One line and one event when Redis becomes unreachable or reachable again; returns `reachable`. */
  #sayReachable(reachable: boolean): boolean {
    if (reachable === !this.#unreachable) return reachable
    this.#unreachable = !reachable
    this.events.emit('relay:redis', { reachable })
    if (reachable) this.log.info('redis is reachable again: dispatching')
    else this.log.warn('redis is unreachable: not dispatching until it is back; workers take due tasks straight from Postgres meanwhile')
    return reachable
  }

  /** Resolves once the background stale-message pass started by runOnce() (if any) is over. */
  housekeepingSettled(): Promise<void> {
    return this.#staleSchedule.settled()
  }

  /**
   * One bounded pass over the queues' Redis lists (StaleMessageCollector):
   * removes messages whose task is no longer dispatched with their token, so
   * a queue that no worker reads does not gain a message per re-dispatch,
   * and its key goes once it has no dispatched task. runOnce() makes a full
   * cycle of passes every 30 s.
   */
  async pruneStaleMessages(): Promise<StaleMessagesResult> {
    const pass = await this.#staleCollector.runPass(this.#requireRedis())
    if (pass.messagesRemoved > 0) this.log.info(pass, 'removed stale redis messages')
    return pass
  }

  async #dispatchRound(redis: Redis): Promise<RelayRoundResult> {
    const started = performance.now()
    await this.#refreshSaturated(redis)
    // Full queues cost the dispatch query one index probe each (0006), so it
    // can look for other queues' work on every round.
    const saturated = [...this.#saturated.keys()]
    const token = randomUUID()
    this.#dispatchSql ??= withIntegers(loadSql('relay-dispatch-batch.sql', this.#tr.schema), { batch_size: this.settings.batchSize })
    const res = await this.#tr.transitionExecutor.query<DispatchedRow>(this.#dispatchSql, [
      token,
      saturated,
      this.settings.lingerMs,
      this.relayId,
      BUSY_ROUND_ROWS,
      this.#lastQueue,
    ])
    const rows = res.rows
    if (rows.length === 0) {
      // Going idle: wake when the next delayed task falls due, not at the next poll.
      if (performance.now() >= this.#lingerUntil) this.#wakeups.nextDueIn(await tasksNextDueInMs(this.#tr.executor, this.#tr), this.settings.pollIntervalMs)
      return { dispatched: 0, more: false, saturatedQueues: saturated }
    }
    if (rows.length >= BUSY_ROUND_ROWS) this.#lingerUntil = performance.now() + this.settings.lingerMs
    this.#lastQueue = rows[0]!.last_queue

    const byQueue = new Map<string, string[]>()
    for (const row of rows) {
      let list = byQueue.get(row.queue)
      if (!list) byQueue.set(row.queue, (list = []))
      list.push(encodeMessage(String(row.id), token))
    }
    const pipeline = redis.pipeline()
    for (const [queue, messages] of byQueue) pipeline.rpush(this.#keys.ready(queue), ...messages)
    let replies: Array<[Error | null, unknown]> | null
    try {
      replies = await pipeline.exec()
    } catch (err) {
      replies = [[err as Error, null]]
    }
    const failed = !replies || replies.some(([err]) => err)
    if (failed) {
      // Put the round back now; fenced by token, so nothing that moved on is touched.
      const error = replies?.find(([err]) => err)?.[0]
      await this.#revert(rows.map((r) => String(r.id)), token)
      throw new Error(`redis push failed, ${rows.length} tasks put back to pending: ${error?.message ?? 'no reply'}`, { cause: error })
    }
    let i = 0
    for (const [queue] of byQueue) {
      const length = Number(replies![i++]![1])
      if (length >= this.settings.maxBacklogPerQueue) this.#saturated.set(queue, length)
    }
    const durationMs = performance.now() - started
    const counts = Object.fromEntries([...byQueue].map(([q, m]) => [q, m.length]))
    this.events.emit('relay:batch', { dispatched: rows.length, byQueue: counts, durationMs, ids: rows.map((r) => String(r.id)) })
    this.log.debug({ dispatched: rows.length, byQueue: counts, durationMs }, 'dispatched batch')
    return { dispatched: rows.length, more: rows.length === this.settings.batchSize, saturatedQueues: saturated }
  }

  /** Queues that were over the bound: re-read their length, release those below it. */
  async #refreshSaturated(redis: Redis): Promise<void> {
    if (this.#saturated.size === 0) return
    const queues = [...this.#saturated.keys()]
    const pipeline = redis.pipeline()
    for (const q of queues) pipeline.llen(this.#keys.ready(q))
    const replies = (await pipeline.exec()) ?? []
    queues.forEach((q, i) => {
      const [err, len] = replies[i] ?? [new Error('no reply'), 0]
      if (!err && Number(len) < this.settings.maxBacklogPerQueue) this.#saturated.delete(q)
    })
  }

  async #revert(ids: string[], token: string): Promise<void> {
    try {
      await this.#tr.batchExecutor.query(loadSql('relay-revert-dispatch.sql', this.#tr.schema), [ids, token])
      this.events.emit('relay:redispatch', { count: ids.length, reason: 'push-failed' })
    } catch (err) {
      this.log.error({ err, count: ids.length }, 'could not put undelivered tasks back; the sweeper will after dispatchTimeoutMs')
    }
  }

  /** After every (re)connection: re-dispatch what Redis may have lost (see redispatchWindow). */
  async #afterRedisReady(first: boolean): Promise<void> {
    const redis = this.#redis
    if (!redis) return
    const closes = this.#closes
    try {
      const window = await redispatchWindow(redis, this.#keys, { first, lostAt: this.#lostAt, failoverWindowMs: this.settings.failoverWindowMs })
      this.#saturated.clear()
      if (window) {
        const { fromMsAgo, toMsAgo, reason } = window
        const res = await this.#tr.executor.query(loadSql('relay-redispatch-since.sql', this.#tr.schema), [fromMsAgo, toMsAgo])
        if (res.rowCount > 0) this.log.warn({ count: res.rowCount, reason, fromMsAgo, toMsAgo }, 're-dispatching tasks that may be missing from Redis')
        // A new Redis looks like one that lost its data; with nothing in flight there is nothing to repair or warn about.
        else if (reason === 'redis-data-lost') this.log.info({ reason }, 'redis holds no taskrelay data (new or emptied); no dispatched task was waiting in it')
        if (res.rowCount > 0 || reason === 'redis-data-lost') this.events.emit('relay:redispatch', { count: res.rowCount, reason })
        this.wake()
      }
      // Handled, unless the connection dropped again meanwhile (the next ready keeps the earlier start).
      if (this.#closes === closes) this.#lostAt = null
    } catch (err) {
      this.log.error({ err }, 'could not check Redis after reconnect; the sweeper will recover lost dispatches')
    }
  }

  #requireRedis(): Redis {
    if (!this.#redis) throw new Error('relay is not started')
    return this.#redis
  }
}
