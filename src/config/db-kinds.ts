import type pg from 'pg'
import type { Kysely } from 'kysely'

/**
 * What kind of `db` the caller gave, recognised by shape, not instanceof: an
 * app's own copy of pg or kysely must be accepted. Kept free of imports from
 * the rest of taskrelay, so the options schema (src/config/) can use them.
 */

export function isKysely(value: unknown): value is Kysely<any> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { executeQuery?: unknown }).executeQuery === 'function' &&
    typeof (value as { selectFrom?: unknown }).selectFrom === 'function'
  )
}

/**
 * A pg.Pool from any copy of pg 8, told by what taskrelay uses of it: an app
 * with its own pg version gets a nested second copy, whose Pool class is not
 * ours, so `instanceof` would refuse it.
 */
export function isPgPool(value: unknown): value is pg.Pool {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return (
    ['connect', 'query', 'end', 'on'].every((method) => typeof v[method] === 'function') &&
    typeof v.options === 'object' &&
    v.options !== null &&
    typeof v.totalCount === 'number'
  )
}
