import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { databaseUrl, uniqueSchema, waitUntil } from '../support/db.ts'
import { dumpSchema } from '../support/dump-schema.ts'
import { currentMigration, latestMigrationId, listMigrations, migrate } from '../../src/db/migrate.ts'
import { SchemaVersionError, TaskRelay } from '../../src/index.ts'

/**
 * The migrator: numbered files, each in its own transaction, all under one
 * advisory lock taken before anything is created (kysely #1894), safe to run
 * twice and from many processes at once. Every test works on fresh schemas of
 * its own, dropped in afterAll.
 */

const execFileAsync = promisify(execFile)
const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const migrateModule = pathToFileURL(fileURLToPath(new URL('../../src/db/migrate.ts', import.meta.url))).href
const allNames = listMigrations('x').map((m) => m.name)
const allIds = listMigrations('x').map((m) => m.id)

const schemas: string[] = []
const pools: pg.Pool[] = []

function freshSchema(): string {
  const schema = uniqueSchema('mig')
  schemas.push(schema)
  return schema
}

function newPool(max = 2, applicationName?: string): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl(),
    max,
    ...(applicationName ? { application_name: applicationName } : {}),
  })
  pool.on('error', () => {})
  pools.push(pool)
  return pool
}

const admin = newPool(4)

afterAll(async () => {
  for (const schema of schemas) await admin.query(`drop schema if exists "${schema}" cascade`)
  await Promise.all(pools.map((p) => p.end()))
})

async function recorded(schema: string): Promise<Array<{ id: number; name: string }>> {
  const res = await admin.query<{ id: number; name: string }>(`select id, name from "${schema}".migrations order by id`)
  return res.rows
}

async function schemaExists(schema: string): Promise<boolean> {
  return (await admin.query('select 1 from pg_namespace where nspname = $1', [schema])).rowCount === 1
}

function expectEachMigrationRecordedOnce(rows: Array<{ id: number; name: string }>) {
  expect(rows).toEqual(listMigrations('x').map((m) => ({ id: m.id, name: m.name })))
}

describe('migrate()', () => {
  it('ships numbered migrations, 0001 first, each number once', () => {
    // Two branches each adding "0002_..." would make the migrator skip one of them.
    expect(allIds[0]).toBe(1)
    expect(new Set(allIds).size).toBe(allIds.length)
    expect(latestMigrationId()).toBe(allIds.at(-1))
    expect(allNames[0]).toBe('0001_init')
  })

  it('applies everything on a fresh schema, then nothing the second time', async () => {
    const schema = freshSchema()
    const pool = newPool()
    expect(await currentMigration(pool, schema)).toBe(0)
    expect(await migrate(pool, schema)).toEqual({ applied: allNames, current: latestMigrationId() })
    expect(await migrate(pool, schema)).toEqual({ applied: [], current: latestMigrationId() })
    expect(await currentMigration(pool, schema)).toBe(latestMigrationId())
    expectEachMigrationRecordedOnce(await recorded(schema))
    // The schema works: the tables and the SQL API are there.
    const id = (await admin.query(`select "${schema}".enqueue('hello.world') as id`)).rows[0].id
    expect((await admin.query(`select name, state from "${schema}".task_status where id = $1`, [id])).rows).toEqual([
      { name: 'hello.world', state: 'pending' },
    ])
  })

  it('5 concurrent migrate() calls on separate pools: all succeed, each migration applied once', async () => {
    const schema = freshSchema()
    const results = await Promise.all(Array.from({ length: 5 }, () => migrate(newPool(1), schema)))
    const appliers = results.filter((r) => r.applied.length > 0)
    expect(appliers).toEqual([{ applied: allNames, current: latestMigrationId() }])
    expect(results.filter((r) => r.applied.length === 0)).toHaveLength(4)
    for (const r of results) expect(r.current).toBe(latestMigrationId())
    expectEachMigrationRecordedOnce(await recorded(schema))
  })

  it('concurrent child processes (node -e): all succeed, the lock is taken before anything is created', async () => {
    const schema = freshSchema()
    const appName = `migrate-race-${schema}`
    const lockKey = `taskrelay.migrate:${schema}`
    const script = [
      `import pg from 'pg'`,
      `import { migrate } from ${JSON.stringify(migrateModule)}`,
      `const pool = new pg.Pool({ connectionString: process.env.MIGRATE_URL, application_name: process.env.MIGRATE_APP, max: 1 })`,
      `try { process.stdout.write(JSON.stringify(await migrate(pool, process.env.MIGRATE_SCHEMA))) } finally { await pool.end() }`,
    ].join('\n')
    const children = 4

    // Hold the migrator's lock so every child is parked on it, then let them race.
    const gate = await admin.connect()
    try {
      await gate.query('select pg_advisory_lock(hashtext($1))', [lockKey])
      const runs = Array.from({ length: children }, () =>
        execFileAsync(process.execPath, ['--input-type=module', '-e', script], {
          cwd: repoRoot,
          env: { ...process.env, MIGRATE_URL: databaseUrl(), MIGRATE_SCHEMA: schema, MIGRATE_APP: appName },
          timeout: 30_000,
        }),
      )
      runs.forEach((p) => p.catch(() => {}))
      await waitUntil(
        async () => {
          const res = await admin.query<{ n: number }>(
            `select count(*)::int as n from pg_stat_activity
              where application_name = $1 and wait_event_type = 'Lock' and wait_event = 'advisory'`,
            [appName],
          )
          return res.rows[0]!.n === children
        },
        { what: `${children} child migrators waiting on the advisory lock` },
      )
      // Nothing was created outside the lock, not even the bookkeeping table.
      expect(await schemaExists(schema)).toBe(false)
      await gate.query('select pg_advisory_unlock(hashtext($1))', [lockKey])

      const outputs = await Promise.all(runs)
      const results = outputs.map((o) => JSON.parse(o.stdout) as { applied: string[]; current: number })
      expect(results.filter((r) => r.applied.length > 0)).toEqual([{ applied: allNames, current: latestMigrationId() }])
      expect(results.filter((r) => r.applied.length === 0)).toHaveLength(children - 1)
      expectEachMigrationRecordedOnce(await recorded(schema))
    } finally {
      gate.release(true)
    }
  })

  it('schemas are independent: migrating two at once works, each gets its own tables', async () => {
    const a = freshSchema()
    const b = freshSchema()
    const [ra, rb] = await Promise.all([migrate(newPool(1), a), migrate(newPool(1), b)])
    expect(ra.applied).toEqual(allNames)
    expect(rb.applied).toEqual(allNames)
    await admin.query(`select "${a}".enqueue('only.in.a')`)
    expect((await admin.query(`select count(*)::int as n from "${b}".tasks`)).rows[0].n).toBe(0)
  })

  it('a failing migration records nothing and leaves the lock free', async () => {
    const schema = freshSchema()
    // Sabotage: an object 0001 wants to create already exists.
    await admin.query(`create schema "${schema}"; create table "${schema}".tasks (id int)`)
    const pool = newPool(1)
    const err = await migrate(pool, schema).then(
      () => null,
      (e: Error) => e,
    )
    expect(err?.message).toMatch(/^migration 0001_init failed: relation "tasks" already exists/)
    expect(await recorded(schema)).toEqual([])
    // Nobody holds the lock any more (its connection was not parked in the pool holding it).
    const probe = await admin.connect()
    try {
      const lockKey = `taskrelay.migrate:${schema}`
      expect((await probe.query('select pg_try_advisory_lock(hashtext($1)) as ok', [lockKey])).rows[0].ok).toBe(true)
      await probe.query('select pg_advisory_unlock(hashtext($1))', [lockKey])
    } finally {
      probe.release()
    }
    // Remove the obstacle and the same pool migrates normally.
    await admin.query(`drop table "${schema}".tasks`)
    expect((await migrate(pool, schema)).applied).toEqual(allNames)
    expectEachMigrationRecordedOnce(await recorded(schema))
  })

  it('psql -v schema=... -f <file> builds the same schema, for files whose header says so', async () => {
    const viaPsql = freshSchema()
    const viaMigrator = freshSchema()
    let psqlFiles = 0
    for (const m of listMigrations(viaPsql)) {
      const file = fileURLToPath(new URL(`../../migrations/${m.name}.sql`, import.meta.url))
      const header = readFileSync(file, 'utf8').match(/^(--.*\n)+/)?.[0] ?? ''
      if (!/psql -v schema=/.test(header)) {
        // No psql promise: apply it the migrator's way (schema substituted).
        await admin.query(m.sql)
        continue
      }
      psqlFiles++
      await execFileAsync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-v', `schema=${viaPsql}`, '-d', databaseUrl(), '-f', file]).catch(
        (err: Error & { stderr?: string }) => {
          throw new Error(`migrations/${m.name}.sql does not run under psql -v schema=...: ${err.stderr ?? err.message}`)
        },
      )
    }
    expect(psqlFiles).toBeGreaterThanOrEqual(1) // 0001 documents it
    await migrate(newPool(1), viaMigrator)
    // Compare object by object, leaving out the migrator's own bookkeeping table.
    const blocks = async (schema: string) =>
      (await dumpSchema(databaseUrl(), schema))
        .replaceAll(schema, '<schema>')
        .split(/\n(?=--\n-- Name: )/)
        .filter((block) => !/-- Name: migrations( migrations_pkey)?; /.test(block))
    const psqlBlocks = await blocks(viaPsql)
    expect(psqlBlocks.length).toBeGreaterThan(10)
    expect(psqlBlocks).toEqual(await blocks(viaMigrator))
    // The functions find their own schema, not the caller's search_path.
    const id = (await admin.query(`select "${viaPsql}".enqueue('from.psql') as id`)).rows[0].id
    expect((await admin.query(`select "${viaPsql}".cancel($1) as ok`, [id])).rows[0].ok).toBe(true)
  })
})

describe('TaskRelay.assertSchemaCurrent()', () => {
  it('throws SchemaVersionError before migrate(), passes after', async () => {
    const schema = freshSchema()
    const tr = new TaskRelay({ db: newPool(), schema })
    const err = await tr.assertSchemaCurrent().then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(SchemaVersionError)
    expect((err as Error).message).toMatch(new RegExp(`schema "${schema}" is at migration 0, this taskrelay expects ${latestMigrationId()}`))
    expect(await tr.migrate()).toEqual({ applied: allNames, current: latestMigrationId() })
    await expect(tr.assertSchemaCurrent()).resolves.toBeUndefined()
  })
})
