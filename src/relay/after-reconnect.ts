import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Keys } from '../redis/keys.ts'
import { lastConnectionLoss } from '../redis/connection.ts'

export interface RedispatchWindow {
  /** re-dispatch tasks dispatched at most this many ms ago (null: no bound) */
  fromMsAgo: number | null
  /** ... and at least this many ms ago (null: no bound) */
  toMsAgo: number | null
  reason: 'redis-reconnect' | 'redis-data-lost'
}

/**
 * After a (re)connection to Redis: which dispatches Redis may have lost. If
 * the epoch marker is gone, Redis lost everything, so every dispatched task
 * is re-dispatched; otherwise (a failover, a network blip) only those
 * dispatched within failoverWindowMs before the connection was lost, which
 * may not have reached the new primary before it was promoted. The window is
 * measured in milliseconds and applied with the database clock
 * (relay-redispatch-since.sql), so clock skew between hosts does not shift
 * it. Null: nothing to re-dispatch (the first connection of a relay, to a
 * Redis that kept its data, or a connection that was never lost).
 */
export async function redispatchWindow(
  redis: Redis,
  keys: Keys,
  options: { first: boolean; lostAt: number | null; failoverWindowMs: number },
): Promise<RedispatchWindow | null> {
  const markerSentAt = performance.now()
  const created = await redis.set(keys.epoch(), randomUUID(), 'NX')
  // Data lost: everything dispatched before the marker was set. The loss
  // happened before that, and a task dispatched after it was pushed after
  // it, into the Redis we now have: re-dispatching those (pushed by other
  // relays meanwhile) would only queue duplicates.
  if (created === 'OK') {
    // Rounded down: the bound falls at or after the moment the marker was sent.
    return { fromMsAgo: null, toMsAgo: Math.floor(performance.now() - markerSentAt), reason: 'redis-data-lost' }
  }
  if (options.first) return null
  // Every 'ready' after the first follows a 'close', which records lostAt.
  if (options.lostAt === null) return null
  // Up to the loss, not up to now: the latest one, when the connection made
  // since lostAt was lost again before this check (it may have reached a
  // primary that was then lost too). dispatched_at is the dispatch statement's
  // now(), before its commit and its push, so every push that reached the
  // old primary before the loss is inside the window. A round whose push came
  // after the loss (whenever its statement ran) either failed and was
  // reverted by token (relay-revert-dispatch.sql), or was queued by the
  // client and sent after the reconnect, to the new primary; the rounds of
  // other relays meanwhile went there too. Resetting those would only queue
  // duplicates (2,398 in a 20 s split-brain run). The bound is taken here,
  // before the statement runs, so in database time it falls at or after the
  // loss: rounding widens it too (from rounded up, to rounded down).
  const now = performance.now()
  const latestLoss = Math.max(options.lostAt, lastConnectionLoss(redis) ?? options.lostAt)
  return {
    fromMsAgo: Math.ceil(now - options.lostAt) + options.failoverWindowMs,
    toMsAgo: Math.floor(now - latestLoss),
    reason: 'redis-reconnect',
  }
}
