import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { TaskRelayContext } from '../db/context.ts'
import type { TaskRelayEvents } from '../events.ts'
import type { ClaimedTask } from '../db/worker-queries.ts'
import { closeRedis, createRedis, unlessClosed, whenReady, type RedisConfig } from '../redis/connection.ts'
import { decodeMessage, type Keys } from '../redis/keys.ts'
import { claimWithRetry } from './claim.ts'

export interface RedisLaneOptions {
  redis: RedisConfig
  keys: Keys
  queues: readonly string[]
  blockMs: number
  leaseMs: number
  workerId: string
  log: Logger
  events: TaskRelayEvents
  /** hands claimed rows to the runner; returns how many were new */
  accept: (rows: readonly ClaimedTask[]) => number
  /** a claim ended: its slots are free again */
  released: () => void
  /** the connection is ready again (after a loss) */
  onReady: () => void
}

/**
 * The worker's Redis lane: "id:token" messages taken with one blocking read
 * per batch, claimed in Postgres with one fenced UPDATE (task-claim-batch.sql).
 * The claim runs while the next read waits, so the slots it will fill are
 * reserved meanwhile.
 *
 * Lists + BLMPOP instead of a stream and consumer group: Postgres already is
 * the ledger of what was delivered (the sweeper re-dispatches what a worker
 * popped and lost), so a pending-entries list would be a second, weaker copy;
 * a list also needs nothing recreated after Redis comes back empty.
 */
export class RedisLane {
  readonly #tr: TaskRelayContext
  readonly #o: RedisLaneOptions
  /** messages popped and being claimed: slots promised to them */
  reserved = 0
  /** claim statements under way */
  readonly #claims = new Set<Promise<void>>()
  #blocking: Redis | null = null
  #commands: Redis | null = null

  constructor(tr: TaskRelayContext, options: RedisLaneOptions) {
    this.#tr = tr
    this.#o = options
  }

  /** Connect; an unreachable Redis is a warning, and the connections keep retrying. */
  async open(): Promise<void> {
    this.#blocking = createRedis(this.#o.redis, { role: 'blocking' }, this.#o.log)
    this.#commands = createRedis(this.#o.redis, { role: 'commands', commandTimeoutMs: 5000 }, this.#o.log)
    this.#blocking.on('ready', () => this.#o.onReady())
    await Promise.all([
      this.#blocking.connect().catch((err: unknown) => this.#o.log.debug({ err }, 'redis not reachable yet; will keep retrying')),
      this.#commands.connect().catch(() => {}),
    ])
  }

  /** The blocking connection is up: reads can be served. */
  get ready(): boolean {
    return this.#blocking?.status === 'ready'
  }

  /** Pop up to `free` messages (blocking up to blockMs) and start claiming them; returns how many were popped. */
  async fetch(free: number, stopSignal: AbortSignal): Promise<number> {
    const blocking = this.#blocking!
    const keys = this.#o.queues.map((q) => this.#o.keys.ready(q))
    // Reads are never queued offline nor resent (see createRedis): wait for the connection, and
    // stop waiting for a read the moment its connection drops.
    if (!(await whenReady(blocking, stopSignal))) return 0
    const startedAt = Date.now()
    const reply = await unlessClosed(blocking, blocking.blmpop(this.#o.blockMs / 1000, keys.length, ...keys, 'LEFT', 'COUNT', free))
    if (!reply) {
      // ioredis answers null itself when the server stayed silent past the
      // block time plus grace: the connection hangs (seen after failovers).
      if (Date.now() - startedAt > this.#o.blockMs + 2500) {
        this.#o.log.warn('blocking read hung past its timeout; rebuilding the redis connection')
        blocking.disconnect(true)
      }
      return 0
    }
    const [key, messages] = reply
    if (stopSignal.aborted) {
      await this.#pushBack(key, messages)
      return 0
    }
    this.reserved += messages.length
    const claim = this.#claimAndRun(key, messages, stopSignal)
    this.#claims.add(claim)
    void claim.finally(() => this.#claims.delete(claim))
    return messages.length
  }

  async #claimAndRun(key: string, messages: string[], stopSignal: AbortSignal): Promise<void> {
    const log = this.#o.log
    try {
      const ids: string[] = []
      const tokens: string[] = []
      for (const message of messages) {
        const m = decodeMessage(message)
        if (m) {
          ids.push(m.id)
          tokens.push(m.token)
        }
      }
      if (ids.length < messages.length) log.warn({ count: messages.length - ids.length, key }, 'dropped malformed messages')
      if (ids.length === 0) return
      // Ids are digits and tokens uuids (decodeMessage checked): safe as plain array literals.
      const p = { schema: this.#tr.schema, ids, tokens, leaseMs: this.#o.leaseMs, workerId: this.#o.workerId }
      const rows = await claimWithRetry(this.#tr.batchExecutor, p, log, stopSignal)
      if (!rows) {
        // Postgres unreachable: give the messages back so they are not stuck until the dispatch timeout.
        await this.#pushBack(key, messages)
        return
      }
      const stale = ids.length - this.#o.accept(rows)
      if (stale > 0) {
        this.#o.events.emit('worker:stale-messages', { count: stale })
        log.debug({ count: stale }, 'dropped stale or duplicated messages')
      }
    } finally {
      this.reserved -= messages.length
      this.#o.released()
    }
  }

  async #pushBack(key: string, messages: string[]): Promise<void> {
    try {
      // LPUSH reverses its arguments: push in reverse to keep the original order at the head.
      await this.#commands!.lpush(key, ...[...messages].reverse())
    } catch (err) {
      this.#o.log.warn({ err, count: messages.length }, 'could not push messages back; the sweeper re-dispatches them after dispatchTimeoutMs')
    }
  }

  /** Claims under way end first (a retrying one gives up once the stop signal is aborted). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.#claims)
  }

  close(): void {
    closeRedis(this.#blocking)
    closeRedis(this.#commands)
    this.#blocking = this.#commands = null
  }
}
