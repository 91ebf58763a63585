import { Redis, type RedisOptions } from 'ioredis'
import type { ConnectionOptions } from 'node:tls'
import type { Logger } from 'pino'
import { describeRedis, resolveRedisSettings, type RedisConfig, type RedisSettings } from './url.ts'
import { followSwitch, reconnectDelayMs, sentinelConnectionOptions, watchSwitchMaster } from './failover.ts'

export { reconnectDelayMs }
export { describeRedis, parseRedisUrl, resolveRedisSettings, type RedisConfig, type RedisSettings } from './url.ts'

export interface ConnectionPurpose {
  /** 'commands' for pipelines, 'blocking' for the worker's blocking reads */
  role: 'commands' | 'blocking'
  /** client-side timeout for ordinary commands (ms) */
  commandTimeoutMs?: number
}

/** Where every client of `s` connects and how it authenticates (plain Redis or Sentinel). */
export function redisAddressOptions(s: RedisSettings): RedisOptions {
  const tlsOf = (t: boolean | ConnectionOptions | undefined) => (t === true ? {} : t === false ? undefined : t)
  const auth: RedisOptions = {
    ...(s.username ? { username: s.username } : {}),
    ...(s.password ? { password: s.password } : {}),
    ...(s.db ? { db: s.db } : {}),
    ...(tlsOf(s.tls) ? { tls: tlsOf(s.tls)! } : {}),
  }
  if (!s.sentinels) return { ...auth, host: s.host ?? '127.0.0.1', port: s.port ?? 6379 }
  return {
    ...auth,
    sentinels: s.sentinels,
    name: s.name!,
    ...(s.sentinelUsername ? { sentinelUsername: s.sentinelUsername } : {}),
    ...(s.sentinelPassword ? { sentinelPassword: s.sentinelPassword } : {}),
    ...(tlsOf(s.sentinelTls) ? { enableTLSForSentinelMode: true, sentinelTLS: tlsOf(s.sentinelTls)! } : {}),
  }
}

/**
 * One PING, with no retries, through the same address and credentials as
 * createRedis: for start-up checks that must fail fast (services retry
 * forever by design). Rejects with the connection's own error.
 */
export async function redisPing(config: RedisConfig, timeoutMs = 5000): Promise<void> {
  const s = resolveRedisSettings(config)
  const redis = new Redis({
    ...redisAddressOptions(s),
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    ...(s.sentinels ? { sentinelRetryStrategy: () => null } : {}),
  })
  let lastError: unknown
  redis.on('error', (err) => (lastError = err))
  try {
    await redis.connect()
    await redis.ping()
  } catch (err) {
    throw lastError ?? err
  } finally {
    redis.disconnect()
  }
}

/**
 * Build an ioredis client. After a Sentinel failover commands reach the new
 * primary without a restart: ioredis re-resolves the master on reconnect,
 * +switch-master makes every client of the set reconnect at once
 * (followSwitch), and a READONLY reply (we are talking to a demoted primary)
 * forces a reconnect and resends the command.
 */
export function createRedis(config: RedisConfig, purpose: ConnectionPurpose, log: Logger): Redis {
  const s = resolveRedisSettings(config)
  // Without this line a client stuck on a replica only shows "Command timed
  // out": it reconnects several times a second to the same read-only server.
  let lastReadOnlyLogAt = 0
  const readOnlyWarning = () => {
    if (Date.now() - lastReadOnlyLogAt < 5000) return
    lastReadOnlyLogAt = Date.now()
    log.warn(
      { redis: describeRedis(config) },
      s.sentinels
        ? 'redis answered READONLY (a demoted primary); reconnecting through Sentinel to the new one'
        : 'redis answered READONLY: this server is a replica; reconnecting and resending until it accepts writes. Point the URL at the primary, or use Sentinel',
    )
  }
  const retries = { last: 0, sinceSwitch: 0 }
  const common: RedisOptions = {
    ...redisAddressOptions(s),
    connectionName: `taskrelay:${purpose.role}`,
    lazyConnect: true,
    enableAutoPipelining: false,
    // Keep trying forever: a broker outage costs latency, not tasks. Counted
    // from the last +switch-master, so attempts after a promotion are fast.
    retryStrategy: (times) => {
      if (times <= retries.last) retries.sinceSwitch = 0 // ioredis starts again at 1 after 'ready'
      retries.last = times
      return reconnectDelayMs(times - retries.sinceSwitch)
    },
    reconnectOnError: (err) => {
      if (!err.message.startsWith('READONLY')) return false
      readOnlyWarning()
      return 2 // reconnect, then resend the command that got READONLY
    },
    maxRetriesPerRequest: purpose.role === 'blocking' ? null : 3,
    ...(purpose.role === 'commands' && purpose.commandTimeoutMs ? { commandTimeout: purpose.commandTimeoutMs } : {}),
    // Blocking reads get a client-side deadline of their own timeout plus this grace.
    ...(purpose.role === 'blocking' ? { blockingTimeout: 60_000, blockingTimeoutGrace: 3000 } : {}),
    // A blocking pop must never reach Redis after its caller stopped waiting
    // for it, or what it pops is lost (until the sweeper's dispatch timeout):
    // ioredis keeps a command's first client-side deadline when it resends it
    // after a reconnect, and sends queued commands even when their deadline
    // already resolved them. So blocking pops are neither resent nor queued
    // while disconnected; the worker waits for 'ready' before it reads.
    ...(purpose.role === 'blocking' ? { autoResendUnfulfilledCommands: false, enableOfflineQueue: false } : {}),
    keepAlive: 10_000,
  }
  // ioredis's own failoverDetector is off: it cannot shorten a reconnect
  // wait, and it aborts a reconnect in flight (the 'end' below); followSwitch
  // does both jobs, over one sentinel subscription per process.
  const options: RedisOptions = s.sentinels ? { ...common, sentinelRetryStrategy: (times) => reconnectDelayMs(times) } : common
  const redis = new Redis(options)
  if (s.sentinels) {
    const stopWatching = watchSwitchMaster(
      { sentinels: s.sentinels, name: s.name!, connection: sentinelConnectionOptions(s) },
      (master) => followSwitch(redis, master, () => (retries.sinceSwitch = retries.last)),
    )
    unwatch.set(redis, stopWatching)
  }
  redis.on('close', () => lastClosedAt.set(redis, performance.now()))
  // ioredis gives a client up for good ('end') when its Sentinel connector is
  // disconnected mid-resolution (its failoverDetector did that on
  // +switch-master: "Connection is closed."). Nobody but us may close our
  // clients: revive any that ended otherwise.
  redis.on('end', () => {
    if (intentionallyClosed.has(redis)) return
    log.warn({ redis: describeRedis(config) }, 'redis client gave up reconnecting; starting it again')
    setTimeout(() => {
      if (!intentionallyClosed.has(redis) && redis.status === 'end') redis.connect().catch(() => {})
    }, 250).unref()
  })
  // A dead broker emits an error per reconnect attempt, for as long as it is
  // down: the first error of an outage is a warning, the rest are debug, and
  // the way back is one info line. The relay and worker say what an outage
  // means for them in lines of their own.
  let outageErrors = 0
  redis.on('error', (err) => {
    const fields = { err: { message: err.message, code: (err as { code?: string }).code }, redis: describeRedis(config) }
    if (outageErrors++ === 0) log.warn(fields, 'redis connection error; reconnecting until it is back')
    else log.debug({ ...fields, errors: outageErrors }, 'redis connection error; still reconnecting')
  })
  redis.on('ready', () => {
    if (outageErrors > 0) log.info({ errors: outageErrors, redis: describeRedis(config) }, 'redis connection back')
    outageErrors = 0
  })
  return redis
}

const intentionallyClosed = new WeakSet<Redis>()
const unwatch = new WeakMap<Redis, () => void>()
const lastClosedAt = new WeakMap<Redis, number>()

/** performance.now() when a client made by createRedis last lost its connection (null: never). */
export function lastConnectionLoss(redis: Redis): number | null {
  return lastClosedAt.get(redis) ?? null
}

/** Close a client made by createRedis for good (it is not revived). */
export function closeRedis(redis: Redis | null | undefined): void {
  if (!redis) return
  intentionallyClosed.add(redis)
  unwatch.get(redis)?.()
  unwatch.delete(redis)
  redis.disconnect()
}

/** Warn when Redis may evict our keys: an evicted list is a latency hit, never a loss. */
export async function checkEvictionPolicy(redis: Redis, log: Logger): Promise<void> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[]
    const policy = reply[1]
    if (policy && policy !== 'noeviction') {
      log.warn({ policy }, 'redis maxmemory-policy is not noeviction; evicted tasks are recovered only by the sweeper after dispatchTimeoutMs')
    }
  } catch {
    // CONFIG is often disabled on managed Redis; nothing to check then.
  }
}

/** Wait until the connection is ready (true), or the signal aborts (false). */
export async function whenReady(redis: Redis, signal: AbortSignal): Promise<boolean> {
  if (redis.status === 'ready') return true
  if (signal.aborted) return false
  return new Promise<boolean>((resolve) => {
    const done = (ready: boolean) => {
      redis.off('ready', onReady)
      signal.removeEventListener('abort', onAbort)
      resolve(ready)
    }
    const onReady = () => done(true)
    const onAbort = () => done(false)
    redis.on('ready', onReady)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Resolve with null as soon as the connection closes while `command` is in
 * flight. For the worker's blocking read: a read cut off by a failover is not
 * resent (autoResendUnfulfilledCommands is off for blocking connections), so
 * waiting for its client-side deadline would only stall the next read.
 */
export function unlessClosed<T>(redis: Redis, command: Promise<T>): Promise<T | null> {
  return new Promise<T | null>((resolve, reject) => {
    const onClose = () => resolve(null)
    redis.once('close', onClose)
    command.then(
      (value) => {
        redis.off('close', onClose)
        resolve(value)
      },
      (err) => {
        redis.off('close', onClose)
        reject(err)
      },
    )
  })
}
