import { Redis, type RedisOptions } from 'ioredis'
import type { ConnectionOptions } from 'node:tls'
import type { Logger } from 'pino'
import { ConfigError } from '../errors.ts'

/**
 * How to reach Redis: a URL (`redis://`, `rediss://`,
 * `redis+sentinel://[:password@]host1:26379,host2:26379/mymaster[/db][?sentinelPassword=...&tls=true]`)
 * or explicit settings. Every process builds its connections here.
 */
export type RedisConfig = string | RedisSettings

export interface RedisSettings {
  /** plain Redis: host/port (ignored when sentinels are given) */
  host?: string
  port?: number
  /** Sentinel: the sentinels to ask, and the master group name */
  sentinels?: Array<{ host: string; port: number }>
  name?: string
  username?: string
  password?: string
  sentinelUsername?: string
  sentinelPassword?: string
  /** TLS to Redis (true or tls.connect options) */
  tls?: boolean | ConnectionOptions
  /** TLS to the sentinels */
  sentinelTls?: boolean | ConnectionOptions
  db?: number
}

/** Percent-decoding that leaves a stray % as it is (a password may contain one unescaped). */
function decodeLoosely(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

export function parseRedisUrl(url: string): RedisSettings {
  // The password runs to the last @ before the hosts: an unescaped @ in it must not end up in a host name (and in logs).
  const sentinel = /^redis(s)?\+sentinel:\/\/(?:([^:@/]*)(?::([^?]*))?@)?([^@/?]+)\/([^/?]+)(?:\/(\d+))?(?:\?(.*))?$/.exec(url)
  if (sentinel) {
    const [, secure, user, pass, hostList, name, db, query] = sentinel
    const params = new URLSearchParams(query ?? '')
    const sentinels = hostList!.split(',').map((hp) => {
      const [host, port] = hp.split(':')
      return { host: host!, port: port ? Number(port) : 26379 }
    })
    if (sentinels.some((s) => !s.host || !Number.isInteger(s.port))) {
      // The raw list is not quoted back: a malformed URL may carry a password in it.
      throw new ConfigError(['REDIS_URL: cannot read the sentinel host list; expected redis+sentinel://host1:26379,host2:26379/mymaster'])
    }
    const tls = secure === 's' || params.get('tls') === 'true'
    return {
      sentinels,
      name: decodeLoosely(name!),
      ...(user ? { username: decodeLoosely(user) } : {}),
      ...(pass ? { password: decodeLoosely(pass) } : {}),
      ...(params.get('sentinelPassword') ? { sentinelPassword: params.get('sentinelPassword')! } : {}),
      ...(params.get('sentinelUsername') ? { sentinelUsername: params.get('sentinelUsername')! } : {}),
      ...(tls ? { tls: true } : {}),
      ...(params.get('sentinelTls') === 'true' ? { sentinelTls: true } : {}),
      ...(db ? { db: Number(db) } : {}),
    }
  }
  const sentinelScheme = /^rediss?\+sentinel:\/\/([^?]*)/.exec(url)
  if (sentinelScheme) {
    // The right scheme in the wrong shape; the raw URL is not quoted back (it may carry a password).
    const path = sentinelScheme[1]!.slice(sentinelScheme[1]!.lastIndexOf('@') + 1).split('/').slice(1)
    const problem = path.length === 0 || path[0] === '' ? 'the master group name is missing' : 'expected a master group name and an optional database number after the hosts'
    throw new ConfigError([`REDIS_URL: ${problem}; expected redis+sentinel://host1:26379,host2:26379/mymaster (mymaster: the name the sentinels monitor)`])
  }
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new ConfigError([`REDIS_URL: not a URL; expected redis://host:6379, rediss://... or redis+sentinel://host1:26379,host2:26379/mymaster`])
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ConfigError([`REDIS_URL: unsupported scheme "${u.protocol}"; use redis://, rediss:// or redis+sentinel://`])
  }
  const db = u.pathname.replace(/^\//, '')
  if (db !== '' && !/^\d+$/.test(db)) {
    throw new ConfigError([`REDIS_URL: the path must be a database number (redis://host:6379/0), got "/${db}"`])
  }
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeLoosely(u.username) } : {}),
    ...(u.password ? { password: decodeLoosely(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: true } : {}),
    ...(db ? { db: Number(db) } : {}),
  }
}

export function resolveRedisSettings(config: RedisConfig): RedisSettings {
  return typeof config === 'string' ? parseRedisUrl(config) : config
}

/** A description safe for logs: no passwords. */
export function describeRedis(config: RedisConfig): string {
  const s = resolveRedisSettings(config)
  if (s.sentinels) return `sentinel ${s.name} via ${s.sentinels.map((x) => `${x.host}:${x.port}`).join(',')}`
  return `${s.tls ? 'rediss' : 'redis'}://${s.host}:${s.port}${s.db ? `/${s.db}` : ''}`
}

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
 * `failoverDetector` reconnects as soon as a sentinel announces
 * +switch-master, and a READONLY reply (we are talking to a demoted primary)
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
  const common: RedisOptions = {
    ...redisAddressOptions(s),
    connectionName: `taskrelay:${purpose.role}`,
    lazyConnect: true,
    enableAutoPipelining: false,
    // Keep trying forever with capped backoff: a broker outage costs latency, not tasks.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000) + Math.floor(Math.random() * 100),
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
  const options: RedisOptions = s.sentinels
    ? { ...common, failoverDetector: true, sentinelRetryStrategy: (times) => Math.min(100 * times, 2000) }
    : common
  const redis = new Redis(options)
  // ioredis gives a client up for good ('end') when its Sentinel connector is
  // disconnected mid-resolution, e.g. by the failover detector's
  // +switch-master while a reconnect is in flight ("Connection is closed.").
  // Nobody but us may close our clients: revive any that ended otherwise.
  redis.on('end', () => {
    if (intentionallyClosed.has(redis)) return
    log.warn({ redis: describeRedis(config) }, 'redis client gave up reconnecting; starting it again')
    setTimeout(() => {
      if (!intentionallyClosed.has(redis) && redis.status === 'end') redis.connect().catch(() => {})
    }, 250).unref()
  })
  let lastErrorLogAt = 0
  redis.on('error', (err) => {
    // A dead broker emits an error per reconnect attempt; log at most once a second.
    if (Date.now() - lastErrorLogAt > 1000) {
      lastErrorLogAt = Date.now()
      log.warn({ err: { message: err.message, code: (err as { code?: string }).code }, redis: describeRedis(config) }, 'redis connection error')
    }
  })
  return redis
}

const intentionallyClosed = new WeakSet<Redis>()

/** Close a client made by createRedis for good (it is not revived). */
export function closeRedis(redis: Redis | null | undefined): void {
  if (!redis) return
  intentionallyClosed.add(redis)
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
