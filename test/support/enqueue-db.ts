import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest'
import pg from 'pg'
import { Kysely, PostgresDialect } from 'kysely'
import { createTestDb, databaseUrl, waitUntil, type TestDb } from './db.ts'

/**
 * The database the test/integration/enqueue-*.test.ts files share: one
 * schema per file, rows deleted before each test, a Kysely instance on a pool
 * of its own. `db` and `kdb` are live bindings, set by useEnqueueDb().
 */

export let db: TestDb
let kyselyPool: pg.Pool
export let kdb: Kysely<any>
const held: pg.PoolClient[] = []

/** Register the file's hooks; call once at the top of a test file. */
export function useEnqueueDb(): void {
  beforeAll(async () => {
    db = await createTestDb()
    // Kysely gets its own pool: destroy() ends it, and cleanup() ends db.pool.
    kyselyPool = new pg.Pool({ connectionString: databaseUrl(), max: 4 })
    kyselyPool.on('error', () => {})
    kdb = new Kysely({ dialect: new PostgresDialect({ pool: kyselyPool }) })
  })

  afterAll(async () => {
    await kdb?.destroy()
    await db?.cleanup()
  })

  beforeEach(async () => {
    await db.pool.query(`delete from ${tasks()}`)
  })

  afterEach(async () => {
    for (const c of held.splice(0)) c.release(true)
  })
}

export function tasks(): string {
  return `"${db.schema}".tasks`
}

export async function rowCount(): Promise<number> {
  return (await db.pool.query<{ n: number }>(`select count(*)::int as n from ${tasks()}`)).rows[0]!.n
}

export async function allIds(): Promise<string[]> {
  return (await db.pool.query<{ id: string }>(`select id from ${tasks()} order by id`)).rows.map((r) => r.id)
}

/** A client of the test pool; destroyed (never reused) after the test, whatever state it was left in. */
export async function client(): Promise<pg.PoolClient> {
  const c = await db.pool.connect()
  held.push(c)
  return c
}

export async function backendPid(c: pg.ClientBase): Promise<number> {
  return (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid
}

/** Wait until a backend is blocked on a heavyweight lock (here: the unique index). */
export async function waitForLockWait(pid: number): Promise<void> {
  await waitUntil(
    async () => {
      const res = await db.pool.query<{ w: string | null }>('select wait_event_type as w from pg_stat_activity where pid = $1', [pid])
      return res.rows[0]?.w === 'Lock'
    },
    { what: `backend ${pid} to wait on a lock` },
  )
}

/**
 * Make sure enqueues notify: they wake relays only when one is registered
 * and none is busy (migrations 0003, 0004), so register an idle one.
 */
export async function registerIdleRelay(): Promise<void> {
  const relays = `"${db.schema}".relays`
  const exists = (await db.pool.query<{ t: string | null }>('select to_regclass($1)::text as t', [relays])).rows[0]!.t
  if (exists) {
    await db.pool.query(
      `insert into ${relays} (relay_id, busy_until) values ('test-listener', '-infinity')
       on conflict (relay_id) do update set busy_until = '-infinity'`,
    )
  }
}

export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the call to throw')
    },
    (err: unknown) => err,
  )
}
