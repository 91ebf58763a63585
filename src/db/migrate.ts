import { readdirSync, readFileSync } from 'node:fs'
import type pg from 'pg'
import { quoteIdent, withSchema } from './sql.ts'

export interface Migration {
  id: number
  name: string
  sql: string
}

const MIGRATIONS_DIR = new URL('../../migrations/', import.meta.url)

/** All migrations shipped with this version, in order, with the schema filled in. */
export function listMigrations(schema: string): Migration[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{4}_.+\.sql$/.test(f))
    .sort()
    .map((file) => ({
      id: Number(file.slice(0, 4)),
      name: file.replace(/\.sql$/, ''),
      sql: withSchema(readFileSync(new URL(file, MIGRATIONS_DIR), 'utf8'), schema),
    }))
}

export function latestMigrationId(): number {
  const all = listMigrations('taskrelay')
  return all.at(-1)?.id ?? 0
}

export interface MigrateResult {
  applied: string[]
  current: number
}

/**
 * Apply every migration not yet recorded, each in its own transaction, under
 * one session advisory lock taken before anything else (so even the
 * bookkeeping table is created by exactly one process).
 */
export async function migrate(pool: pg.Pool, schema: string): Promise<MigrateResult> {
  const client = await pool.connect()
  const table = `${quoteIdent(schema)}.migrations`
  const lockKey = `taskrelay.migrate:${schema}`
  const applied: string[] = []
  // A session advisory lock lives as long as the connection: if anything below
  // fails (including the unlock), the connection is destroyed rather than
  // returned to the pool still holding the lock, which would block every later
  // migrate() of this schema for the life of the pool.
  let broken: Error | undefined
  try {
    await client.query('select pg_advisory_lock(hashtext($1))', [lockKey])
    try {
      await client.query(`create schema if not exists ${quoteIdent(schema)}`)
      await client.query(
        `create table if not exists ${table} (
           id integer primary key,
           name text not null,
           applied_at timestamptz not null default now()
         )`,
      )
      const done = new Set(
        (await client.query<{ id: number }>(`select id from ${table}`)).rows.map((r) => r.id),
      )
      for (const m of listMigrations(schema)) {
        if (done.has(m.id)) continue
        await client.query('begin')
        try {
          // Record first: a concurrent migrator without the lock would fail on the key.
          await client.query(`insert into ${table} (id, name) values ($1, $2)`, [m.id, m.name])
          await client.query(m.sql)
          await client.query('commit')
        } catch (err) {
          await client.query('rollback').catch(() => {})
          throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err })
        }
        applied.push(m.name)
      }
      const current = (await client.query<{ max: number | null }>(`select max(id) as max from ${table}`)).rows[0]?.max ?? 0
      return { applied, current }
    } finally {
      await client.query('select pg_advisory_unlock(hashtext($1))', [lockKey]).catch((err: Error) => {
        broken = err
      })
    }
  } catch (err) {
    broken ??= err as Error
    throw err
  } finally {
    client.release(broken)
  }
}

/** Ids of the applied migrations ([] when the schema has none). */
export async function appliedMigrations(pool: pg.Pool, schema: string): Promise<number[]> {
  const exists = await pool.query<{ t: string | null }>('select to_regclass($1)::text as t', [`${quoteIdent(schema)}.migrations`])
  if (exists.rows[0]?.t == null) return []
  const res = await pool.query<{ id: number }>(`select id from ${quoteIdent(schema)}.migrations order by id`)
  return res.rows.map((r) => r.id)
}

/** The highest applied migration, or 0 when the schema has none. */
export async function currentMigration(pool: pg.Pool, schema: string): Promise<number> {
  const res = await pool.query<{ id: number | null }>(
    `select case when to_regclass($1) is null then null else 1 end as id`,
    [`${quoteIdent(schema)}.migrations`],
  )
  if (res.rows[0]?.id == null) return 0
  const max = await pool.query<{ max: number | null }>(`select max(id) as max from ${quoteIdent(schema)}.migrations`)
  return max.rows[0]?.max ?? 0
}
