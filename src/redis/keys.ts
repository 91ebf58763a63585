import { isUuid } from '../task-record.ts'

/**
 * Redis key names. Each queue's keys carry a hash tag ({queue}) so they live
 * in one Redis Cluster slot; the prefix separates deployments sharing a Redis.
 */
export interface Keys {
  /** list of "id:token" messages ready for workers of this queue */
  ready(queue: string): string
  /** SCAN pattern matching every queue's ready list of this prefix */
  readyPattern(): string
  /** marker whose absence means Redis lost its data (restart without persistence) */
  epoch(): string
}

export function redisKeys(prefix: string): Keys {
  return {
    ready: (queue) => `${prefix}:{${queue}}:ready`,
    // Glob characters in the prefix match only themselves.
    readyPattern: () => `${prefix.replace(/[*?[\]\\]/g, '\\$&')}:{*}:ready`,
    epoch: () => `${prefix}:epoch`,
  }
}

/** Message format pushed by the relay and read by workers. */
export function encodeMessage(id: string, token: string): string {
  return `${id}:${token}`
}

const MAX_BIGINT = 9223372036854775807n

export function decodeMessage(message: string): { id: string; token: string } | null {
  const sep = message.indexOf(':')
  if (sep <= 0) return null
  const id = message.slice(0, sep)
  const token = message.slice(sep + 1)
  // Checked as strictly as Postgres will cast them (bigint, uuid): one bad message in a
  // batch must not fail the claim of the others.
  if (!/^\d{1,19}$/.test(id) || BigInt(id) > MAX_BIGINT || !isUuid(token)) return null
  return { id, token }
}
