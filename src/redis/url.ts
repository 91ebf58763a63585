import type { ConnectionOptions } from 'node:tls'
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
