import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Keys } from '../redis/keys.ts'

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
 * dispatched within failoverWindowMs before the connection was lost (or
 * since), which may not have reached the new primary before it was promoted.
 * The window is measured in milliseconds and applied with the database
 * clock (relay-redispatch-since.sql), so clock skew between hosts does not
 * shift it. Null: nothing to re-dispatch (the first connection of a relay,
 * to a Redis that kept its data).
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
  // Reconnect: the window before the connection was lost; what was
  // dispatched since then was pushed after the reconnect (to the new
  // primary) or reverted, so resetting it would only queue stale
  // duplicates (500 ms of slack).
  const { lostAt } = options
  const sinceLost = lostAt === null ? 0 : Math.floor(performance.now() - lostAt)
  return {
    fromMsAgo: sinceLost + options.failoverWindowMs,
    toMsAgo: lostAt === null ? null : Math.max(0, sinceLost - 500),
    reason: 'redis-reconnect',
  }
}
