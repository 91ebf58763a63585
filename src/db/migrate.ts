import { readdirSync, readFileSync } from 'node:fs'
import { quoteIdent, withSchema } from './sql.ts'
import { toExecutor } from './executor.ts'
import { withSession, type Database } from './connections.ts'

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
 * bookkeeping table is created by exactly one process). Over a Kysely
 * instance the session is Kysely's connection().
 */
export async function migrate(db: Database, schema: string): Promise<MigrateResult> {
  const table = `${quoteIdent(schema)}.migrations`
  const lockKey = `taskrelay.migrate:${schema}`
  // A session advisory lock lives as long as the connection: if anything below
  // fails (including the unlock), the connection is discarded rather than
  // returned to the pool still holding the lock, which would block every later
  // migrate() of this schema for the life of the pool.
  return withSession(db, async (conn, discard) => {
    const applied: string[] = []
    try {
      await conn.query('select pg_advisory_lock(hashtext($1))', [lockKey])
      try {
        await conn.query(`create schema if not exists ${quoteIdent(schema)}`)
        await conn.query(
          `create table if not exists ${table} (
             id integer primary key,
             name text not null,
             applied_at timestamptz not null default now()
           )`,
        )
        const done = new Set((await conn.query<{ id: number }>(`select id from ${table}`)).rows.map((r) => r.id))
        for (const m of listMigrations(schema)) {
          if (done.has(m.id)) continue
          await conn.query('begin')
          try {
            // Record first: a concurrent migrator without the lock would fail on the key.
            await conn.query(`insert into ${table} (id, name) values ($1, $2)`, [m.id, m.name])
            await conn.query(m.sql)
            await conn.query('commit')
          } catch (err) {
            await conn.query('rollback').catch(() => {})
            throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err })
          }
          applied.push(m.name)
        }
        const current = (await conn.query<{ max: number | null }>(`select max(id) as max from ${table}`)).rows[0]?.max ?? 0
        return { applied, current }
      } finally {
        await conn.query('select pg_advisory_unlock(hashtext($1))', [lockKey]).catch(discard)
      }
    } catch (err) {
      discard(err as Error)
      throw err
    }
  })
}

/** Ids of the applied migrations ([] when the schema has none). */
export async function appliedMigrations(db: Database, schema: string): Promise<number[]> {
  const exec = toExecutor(db)
  const exists = await exec.query<{ t: string | null }>('select to_regclass($1)::text as t', [`${quoteIdent(schema)}.migrations`])
  if (exists.rows[0]?.t == null) return []
  const res = await exec.query<{ id: number }>(`select id from ${quoteIdent(schema)}.migrations order by id`)
  return res.rows.map((r) => r.id)
}

/** The highest applied migration, or 0 when the schema has none. */
export async function currentMigration(db: Database, schema: string): Promise<number> {
  const exec = toExecutor(db)
  const res = await exec.query<{ id: number | null }>(
    `select case when to_regclass($1) is null then null else 1 end as id`,
    [`${quoteIdent(schema)}.migrations`],
  )
  if (res.rows[0]?.id == null) return 0
  const max = await exec.query<{ max: number | null }>(`select max(id) as max from ${quoteIdent(schema)}.migrations`)
  return max.rows[0]?.max ?? 0
}
