import { Redis, type RedisOptions } from 'ioredis'
import type { RedisSettings } from './url.ts'

/** Where a master group moved to, as a sentinel announces it. */
export interface MasterAddress {
  host: string
  port: number
}

export interface SentinelWatchOptions {
  sentinels: ReadonlyArray<{ host: string; port: number }>
  name: string
  /** how to reach the sentinels: credentials, TLS, retry strategy */
  connection: RedisOptions
}

/**
 * Delay before reconnect attempt `times` (1, 2, ...): 20 ms doubling to a
 * 500 ms cap, plus up to 20 % jitter. A lost connection is retried at once
 * (a blip, or a sentinel that switched already), and a server that stays
 * down is retried twice a second, so a client is back at most ~0.6 s after
 * it returns, with no announcement needed. Pure but for `random`.
 */
export function reconnectDelayMs(times: number, random: () => number = Math.random): number {
  const base = Math.min(20 * 2 ** Math.min(Math.max(times, 1) - 1, 5), 500)
  return base + Math.floor(random() * base * 0.2)
}

type Listener = (master: MasterAddress) => void

interface Watch {
  subscribers: Redis[]
  listeners: Set<Listener>
}

const watches = new Map<string, Watch>()

/**
 * Call `listener` each time a sentinel announces that master group `name`
 * moved (+switch-master). A client waiting out its reconnect backoff learns
 * of a promotion at once instead of at its next attempt. One subscriber per
 * sentinel per process, shared by every listener of the same set (ioredis's
 * own failoverDetector opens one per sentinel per client), closed with the
 * last listener. Returns the function that removes `listener`.
 */
export function watchSwitchMaster(options: SentinelWatchOptions, listener: Listener): () => void {
  const { sentinels, name, connection } = options
  const key = JSON.stringify([sentinels, name, connection.username ?? null, connection.password ?? null, connection.tls ?? null])
  let watch = watches.get(key)
  if (!watch) {
    const listeners = new Set<Listener>()
    const subscribers = sentinels.map((s) => subscribe(s, name, connection, listeners))
    watch = { subscribers, listeners }
    watches.set(key, watch)
  }
  watch.listeners.add(listener)
  const w = watch
  return () => {
    if (!w.listeners.delete(listener) || w.listeners.size > 0) return
    watches.delete(key)
    for (const s of w.subscribers) s.disconnect()
  }
}

function subscribe(sentinel: { host: string; port: number }, name: string, connection: RedisOptions, listeners: Set<Listener>): Redis {
  const client = new Redis({ ...connection, host: sentinel.host, port: sentinel.port, lazyConnect: true, maxRetriesPerRequest: null, connectionName: 'taskrelay:sentinel-watch' })
  // A sentinel that is down is retried by the connection; the clients report their own errors.
  client.on('error', () => {})
  client.on('message', (channel: string, message: string) => {
    // "<name> <old ip> <old port> <new ip> <new port>"
    const [group, , , host, port] = message.split(' ')
    if (channel !== '+switch-master' || group !== name || !host || !port) return
    for (const l of [...listeners]) l({ host, port: Number(port) })
  })
  // Queued until the sentinel answers (no retry limit), and renewed by ioredis after every reconnect.
  client.subscribe('+switch-master').catch(() => {})
  return client
}

/** How our +switch-master subscriptions reach the sentinels: as ioredis does for its own lookups. */
export function sentinelConnectionOptions(s: RedisSettings): RedisOptions {
  const tls = s.sentinelTls === true ? {} : s.sentinelTls === false ? undefined : s.sentinelTls
  return {
    ...(s.sentinelUsername ? { username: s.sentinelUsername } : {}),
    ...(s.sentinelPassword ? { password: s.sentinelPassword } : {}),
    ...(tls ? { tls } : {}),
    retryStrategy: (times) => reconnectDelayMs(times),
  }
}

/**
 * A sentinel announced a new primary. A client waiting to reconnect goes now
 * (and its next attempts are fast again: `restartBackoff`); one still
 * connected elsewhere (a primary cut off from the sentinels) leaves it; one
 * already on the new primary, or mid-connection, carries on.
 */
export function followSwitch(redis: Redis, master: MasterAddress, restartBackoff: () => void): void {
  restartBackoff()
  // ioredis internals: the pending reconnect timer, and the socket.
  const inner = redis as unknown as { reconnectTimeout?: ReturnType<typeof setTimeout> | null; stream?: { remoteAddress?: string; remotePort?: number } }
  if (redis.status === 'ready') {
    const address = inner.stream?.remoteAddress?.replace(/^::ffff:/, '')
    if (address === master.host && inner.stream?.remotePort === master.port) return
    redis.disconnect(true)
  } else if (redis.status === 'reconnecting' || redis.status === 'end') {
    if (inner.reconnectTimeout) clearTimeout(inner.reconnectTimeout)
    inner.reconnectTimeout = null
    redis.connect().catch(() => {})
  }
}

/**
 * ioredis's errors for a command cut off by a lost or failing-over
 * connection: expected during a failover, and retried by every caller (the
 * service loop, the relay's revert-and-retry). Looks through `cause`, where
 * callers keep the original (the relay's "redis push failed" error).
 */
const CONNECTION_LOSS = [
  /^Stream isn't writeable/, // a write between the socket's end and ioredis's 'close' (no offline queue)
  /^Connection is closed\.$/,
  /^Reached the max retries per request limit/, // queued while reconnecting, past maxRetriesPerRequest
  /^Command timed out$/, // commandTimeout: the primary stopped answering
  /^UNBLOCKED /, // a blocking read cut off by a primary demoted under it
]

export function isRedisConnectionLoss(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e.name === 'MaxRetriesPerRequestError' || CONNECTION_LOSS.some((re) => re.test(e.message))) return true
  }
  return false
}
