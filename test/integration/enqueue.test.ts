import { randomUUID } from 'node:crypto'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import pg from 'pg'
import { Kysely, PostgresDialect, sql } from 'kysely'
import { z } from 'zod'
import { createTestDb, databaseUrl, waitUntil, type TestDb } from '../support/db.ts'
import {
  ConfigError,
  InvalidOptionsError,
  PayloadNotSerializableError,
  PayloadTooLargeError,
  PayloadValidationError,
  TaskRelay,
  TaskRelayError,
  TransactionRequiredError,
  defineTask,
  type EnqueueOptions,
  type Task,
} from '../../src/index.ts'
import { enqueueStatement } from '../../src/db/sql.ts'

/**
 * Transactional enqueue (issue #2): a task exists if and only if the caller's
 * transaction committed; bad input throws a typed error and writes nothing.
 * Real Postgres, one schema for this file, rows deleted before each test.
 */

const run = async () => {}
const welcome = defineTask({ name: 'email.welcome', payload: z.object({ userId: z.number().int() }), run })
const report = defineTask({
  name: 'report.build',
  payload: z.object({ day: z.string() }),
  queue: 'reports',
  priority: 5,
  maxAttempts: 7,
  run,
})
const nested = defineTask({
  name: 'user.sync',
  payload: z.object({ user: z.object({ id: z.number(), email: z.string() }), tags: z.array(z.string()) }),
  run,
})
const big = defineTask({ name: 'big.number', payload: z.object({ n: z.bigint() }), run })
const loose = defineTask({ name: 'loose', payload: z.record(z.string(), z.unknown()), run })
const withDefault = defineTask({ name: 'with.default', payload: z.object({ n: z.number().default(3) }), run })

let db: TestDb
let kyselyPool: pg.Pool
let kdb: Kysely<any>
const held: pg.PoolClient[] = []

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

function tasks(): string {
  return `"${db.schema}".tasks`
}

async function rowCount(): Promise<number> {
  return (await db.pool.query<{ n: number }>(`select count(*)::int as n from ${tasks()}`)).rows[0]!.n
}

async function allIds(): Promise<string[]> {
  return (await db.pool.query<{ id: string }>(`select id from ${tasks()} order by id`)).rows.map((r) => r.id)
}

/** A client of the test pool; destroyed (never reused) after the test, whatever state it was left in. */
async function client(): Promise<pg.PoolClient> {
  const c = await db.pool.connect()
  held.push(c)
  return c
}

async function backendPid(c: pg.ClientBase): Promise<number> {
  return (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid
}

/** Wait until a backend is blocked on a heavyweight lock (here: the unique index). */
async function waitForLockWait(pid: number): Promise<void> {
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
async function registerIdleRelay(): Promise<void> {
  const relays = `"${db.schema}".relays`
  const exists = (await db.pool.query<{ t: string | null }>('select to_regclass($1)::text as t', [relays])).rows[0]!.t
  if (exists) {
    await db.pool.query(
      `insert into ${relays} (relay_id, busy_until) values ('test-listener', '-infinity')
       on conflict (relay_id) do update set busy_until = '-infinity'`,
    )
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the call to throw')
    },
    (err: unknown) => err,
  )
}

describe('transactional enqueue with a pg client', () => {
  it('is invisible until COMMIT, then visible', async () => {
    const c = await client()
    await c.query('begin')
    const { id } = await db.tr.enqueue(c, welcome, { userId: 1 })
    expect(id).toMatch(/^[1-9][0-9]*$/)
    expect(await rowCount()).toBe(0)
    expect(await db.tr.getTask(id)).toBeNull()
    await c.query('commit')
    expect(await allIds()).toEqual([id])
    expect(await db.tr.getTask(id)).toMatchObject({ id, name: 'email.welcome', state: 'pending', payload: { userId: 1 } })
  })

  it('leaves nothing after ROLLBACK', async () => {
    const c = await client()
    await c.query('begin')
    await db.tr.enqueue(c, welcome, { userId: 1 })
    await db.tr.enqueue(c, report, { day: '2026-01-01' }, { delayMs: 1000 })
    expect((await c.query(`select count(*)::int as n from ${tasks()}`)).rows[0].n).toBe(2)
    await c.query('rollback')
    expect(await rowCount()).toBe(0)
  })

  it('enqueueMany: all rows on COMMIT, none on ROLLBACK', async () => {
    const items = [
      { task: welcome, payload: { userId: 1 } },
      { task: report, payload: { day: 'mon' }, options: { priority: 9 } },
      { task: welcome, payload: { userId: 2 } },
    ]
    const c = await client()
    await c.query('begin')
    await db.tr.enqueueMany(c, items)
    await c.query('rollback')
    expect(await rowCount()).toBe(0)

    await c.query('begin')
    const { ids } = await db.tr.enqueueMany(c, items)
    expect(await rowCount()).toBe(0)
    await c.query('commit')
    expect(ids).toHaveLength(3)
    expect(await allIds()).toEqual([...ids].sort((a, b) => Number(a) - Number(b)))
  })

  it('ROLLBACK TO SAVEPOINT drops only the tasks enqueued after the savepoint', async () => {
    const c = await client()
    await c.query('begin')
    const kept = await db.tr.enqueue(c, welcome, { userId: 1 })
    await c.query('savepoint before_more')
    await db.tr.enqueue(c, welcome, { userId: 2 })
    await db.tr.enqueueMany(c, [
      { task: welcome, payload: { userId: 3 } },
      { task: welcome, payload: { userId: 4 } },
    ])
    await c.query('rollback to savepoint before_more')
    const after = await db.tr.enqueue(c, welcome, { userId: 5 })
    await c.query('commit')
    expect(await allIds()).toEqual([kept.id, after.id])
  })
})

describe('transactional enqueue with a Kysely Transaction', () => {
  it('commits with the transaction', async () => {
    const ids = await kdb.transaction().execute(async (trx) => {
      const one = await db.tr.enqueue(trx, welcome, { userId: 1 })
      const many = await db.tr.enqueueMany(trx, [
        { task: welcome, payload: { userId: 2 } },
        { task: report, payload: { day: 'tue' } },
      ])
      expect(await rowCount()).toBe(0)
      return [one.id, ...many.ids]
    })
    expect(await allIds()).toEqual(ids)
  })

  it('rolls back with the transaction', async () => {
    const boom = new Error('caller failed after enqueue')
    await expect(
      kdb.transaction().execute(async (trx) => {
        await db.tr.enqueue(trx, welcome, { userId: 1 })
        await db.tr.enqueueMany(trx, [{ task: welcome, payload: { userId: 2 } }])
        throw boom
      }),
    ).rejects.toBe(boom)
    expect(await rowCount()).toBe(0)
  })

  it('honours savepoints of a controlled transaction', async () => {
    const trx = await kdb.startTransaction().execute()
    try {
      const kept = await db.tr.enqueue(trx, welcome, { userId: 1 })
      const sp = await trx.savepoint('sp1').execute()
      await db.tr.enqueue(sp, welcome, { userId: 2 })
      await sp.rollbackToSavepoint('sp1').execute()
      await trx.commit().execute()
      expect(await allIds()).toEqual([kept.id])
    } catch (err) {
      await trx.rollback().execute().catch(() => {})
      throw err
    }
  })
})

describe('enqueue without trx (autocommit on taskrelay’s pool)', () => {
  it('enqueue(task, payload) commits at once', async () => {
    const { id } = await db.tr.enqueue(welcome, { userId: 7 })
    expect(await allIds()).toEqual([id])
  })

  it('enqueueMany(items) commits at once', async () => {
    const { ids } = await db.tr.enqueueMany([
      { task: welcome, payload: { userId: 1 } },
      { task: welcome, payload: { userId: 2 } },
    ])
    expect(await allIds()).toEqual(ids)
  })

  it('works on a TaskRelay built over a Kysely instance', async () => {
    const tr = new TaskRelay({ db: kdb, schema: db.schema })
    const { id } = await tr.enqueue(welcome, { userId: 3 })
    expect(await tr.getTask(id)).toMatchObject({ id, payload: { userId: 3 } })
    await kdb.transaction().execute((trx) => tr.enqueue(trx, welcome, { userId: 4 }))
    expect(await rowCount()).toBe(2)
    await tr.close()
  })
})

describe('a trx that is not inside a transaction is refused, and nothing is written', () => {
  async function expectRefused(trx: unknown, detail: RegExp) {
    const one = await rejection(db.tr.enqueue(trx as pg.PoolClient, welcome, { userId: 1 }))
    expect(one).toBeInstanceOf(TransactionRequiredError)
    expect(one).toMatchObject({ code: 'TRANSACTION_REQUIRED', message: expect.stringMatching(detail) })
    const many = await rejection(db.tr.enqueueMany(trx as pg.PoolClient, [{ task: welcome, payload: { userId: 2 } }]))
    expect(many).toBeInstanceOf(TransactionRequiredError)
    expect(await rowCount()).toBe(0)
  }

  it('a pg client without BEGIN (would otherwise autocommit)', async () => {
    const c = await client()
    await expectRefused(c, /not inside a transaction/)
  })

  it('a pg client after COMMIT', async () => {
    const c = await client()
    await c.query('begin')
    await c.query('commit')
    await expectRefused(c, /not inside a transaction/)
  })

  it('a pg client in an aborted transaction', async () => {
    const c = await client()
    await c.query('begin')
    await expect(c.query('select 1/0')).rejects.toThrow(/division by zero/)
    // Right after the failure pg may not have read ReadyForQuery('E') yet: then
    // the INSERT itself is refused (25P02), reported as the same error.
    await expectRefused(c, /inside a failed transaction \(ROLLBACK it first\)/)
    expect(c.getTransactionStatus()).toBe('E')
    // Once pg knows, no statement is sent at all.
    await expectRefused(c, /inside a failed transaction \(ROLLBACK it first\)/)
    // Force the lagging case: pg still says 'T', the server refuses the INSERT.
    const lagging = c as pg.PoolClient & { getTransactionStatus(): string }
    lagging.getTransactionStatus = () => 'T'
    try {
      await expectRefused(c, /inside a failed transaction \(ROLLBACK it first\)/)
    } finally {
      delete (lagging as { getTransactionStatus?: unknown }).getTransactionStatus
    }
    await c.query('rollback')
    expect(await rowCount()).toBe(0)
  })

  it('a Kysely transaction aborted by an earlier error', async () => {
    const trx = await kdb.startTransaction().execute()
    try {
      await expect(sql`select 1/0`.execute(trx)).rejects.toThrow(/division by zero/)
      const err = await rejection(db.tr.enqueue(trx, welcome, { userId: 1 }))
      expect(err).toBeInstanceOf(TransactionRequiredError)
      expect((err as Error).message).toMatch(/inside a failed transaction/)
      expect((err as Error).cause).toMatchObject({ code: '25P02' })
      await expect(db.tr.enqueueMany(trx, [{ task: welcome, payload: { userId: 2 } }])).rejects.toBeInstanceOf(TransactionRequiredError)
    } finally {
      await trx.rollback().execute()
    }
    expect(await rowCount()).toBe(0)
  })

  it('a pg.Pool', async () => {
    await expectRefused(db.pool, /pg\.Pool/)
  })

  it('a pg.Client that never connected', async () => {
    await expectRefused(new pg.Client({ connectionString: databaseUrl() }), /not connected yet/)
  })

  it('a Kysely instance that is not a Transaction', async () => {
    await expectRefused(kdb, /Kysely instance, not a Transaction/)
  })

  it('undefined or null (e.g. an optional trx that was not passed on)', async () => {
    await expectRefused(undefined, /got undefined/)
    await expectRefused(null, /got null/)
  })

  it('a Kysely transaction that already committed', async () => {
    let leaked: unknown
    await kdb.transaction().execute(async (trx) => {
      leaked = trx
    })
    await expect(db.tr.enqueue(leaked as pg.PoolClient, welcome, { userId: 1 })).rejects.toThrow(/already committed/)
    expect(await rowCount()).toBe(0)
  })
})

describe('bad input throws a typed, exported error and writes nothing', () => {
  interface BadCase {
    what: string
    task: Task
    payload: unknown
    options?: unknown
    error: new (...args: any[]) => TaskRelayError
    code: string
    message: RegExp
    check?: (err: any) => void
  }

  const cycle: Record<string, unknown> = { a: 1 }
  cycle.self = cycle

  const cases: BadCase[] = [
    {
      what: 'payload not matching the schema',
      task: welcome,
      payload: { userId: 'one' },
      error: PayloadValidationError,
      code: 'PAYLOAD_INVALID',
      message: /payload for task "email\.welcome" is invalid:\n {2}- userId: /,
      check: (err: PayloadValidationError) => {
        expect(err.taskName).toBe('email.welcome')
        expect(err.issues).toEqual([{ path: 'userId', message: expect.any(String) }])
      },
    },
    {
      what: 'payload with several problems (every zod issue listed)',
      task: nested,
      payload: { user: { id: 'x' }, tags: ['ok', 2] },
      error: PayloadValidationError,
      code: 'PAYLOAD_INVALID',
      message: /- user\.id: [^\n]+\n {2}- user\.email: [^\n]+\n {2}- tags\.1: /,
      check: (err: PayloadValidationError) => {
        expect(err.issues.map((i) => i.path)).toEqual(['user.id', 'user.email', 'tags.1'])
      },
    },
    {
      what: 'payload missing',
      task: welcome,
      payload: undefined,
      error: PayloadValidationError,
      code: 'PAYLOAD_INVALID',
      message: /- \(root\): /,
      check: (err: PayloadValidationError) => expect(err.issues).toEqual([{ path: '', message: expect.any(String) }]),
    },
    {
      what: 'unknown option',
      task: welcome,
      payload: { userId: 1 },
      options: { priorty: 3 },
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /unknown option "priorty"/,
      check: (err: InvalidOptionsError) => expect(err.problems).toEqual(['unknown option "priorty"']),
    },
    {
      what: 'options that are not an object',
      task: welcome,
      payload: { userId: 1 },
      options: 'soon',
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /invalid enqueue options for task "email\.welcome"/,
    },
    {
      what: 'negative delayMs',
      task: welcome,
      payload: { userId: 1 },
      options: { delayMs: -1 },
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /delayMs: must not be negative/,
    },
    {
      what: 'fractional delayMs',
      task: welcome,
      payload: { userId: 1 },
      options: { delayMs: 1.5 },
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /delayMs: must be an integer/,
    },
    {
      what: 'runAt and delayMs together',
      task: welcome,
      payload: { userId: 1 },
      options: { runAt: new Date(), delayMs: 1000 },
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /give runAt or delayMs, not both/,
    },
    {
      what: 'invalid runAt date',
      task: welcome,
      payload: { userId: 1 },
      options: { runAt: new Date('not a date') },
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /runAt: /,
    },
    {
      what: 'runAt given as a string',
      task: welcome,
      payload: { userId: 1 },
      options: { runAt: '2030-01-01T00:00:00Z' },
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /runAt: /,
    },
    ...[1001, -1001, 2.5].map((priority) => ({
      what: `priority ${priority}`,
      task: welcome,
      payload: { userId: 1 },
      options: { priority },
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /priority: /,
    })),
    ...[0, 1001].map((maxAttempts) => ({
      what: `maxAttempts ${maxAttempts}`,
      task: welcome,
      payload: { userId: 1 },
      options: { maxAttempts },
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /maxAttempts: /,
    })),
    {
      what: 'invalid queue name',
      task: welcome,
      payload: { userId: 1 },
      options: { queue: 'has spaces' },
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /queue: use 1-100 characters/,
    },
    ...['', 'k'.repeat(501)].map((idempotencyKey) => ({
      what: `idempotencyKey of length ${idempotencyKey.length}`,
      task: welcome,
      payload: { userId: 1 },
      options: { idempotencyKey },
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /idempotencyKey: /,
    })),
    {
      what: 'several bad options at once (all listed)',
      task: welcome,
      payload: { userId: 1 },
      options: { priority: 5000, delayMs: -5, colour: 'red' },
      error: InvalidOptionsError,
      code: 'OPTIONS_INVALID',
      message: /unknown option "colour"/,
      check: (err: InvalidOptionsError) => {
        expect(err.problems).toHaveLength(3)
        expect(err.message).toMatch(/priority: /)
        expect(err.message).toMatch(/delayMs: /)
      },
    },
    {
      what: 'payload with a BigInt (not JSON)',
      task: big,
      payload: { n: 10n },
      error: PayloadNotSerializableError,
      code: 'PAYLOAD_NOT_JSON',
      message: /payload for task "big\.number" cannot be stored as JSON: .*BigInt/,
    },
    {
      what: 'payload with a cycle (not JSON)',
      task: loose,
      payload: cycle,
      error: PayloadNotSerializableError,
      code: 'PAYLOAD_NOT_JSON',
      message: /cannot be stored as JSON: .*circular/i,
    },
    {
      what: 'payload over the default 1 MiB limit',
      task: loose,
      payload: { blob: 'x'.repeat(1024 * 1024) },
      error: PayloadTooLargeError,
      code: 'PAYLOAD_TOO_LARGE',
      message: /is 1048587 bytes, over the limit of 1048576 bytes/,
    },
  ]

  it.each(cases)('$what — enqueue without trx', async (c) => {
    const err = await rejection(db.tr.enqueue(c.task, c.payload as never, c.options as EnqueueOptions))
    expect(err).toBeInstanceOf(c.error)
    expect(err).toMatchObject({ code: c.code, message: expect.stringMatching(c.message) })
    c.check?.(err)
    expect(await rowCount()).toBe(0)
  })

  it.each(cases)('$what — enqueue(trx): the caller’s transaction stays usable', async (c) => {
    const client_ = await client()
    await client_.query('begin')
    const err = await rejection(db.tr.enqueue(client_, c.task, c.payload as never, c.options as EnqueueOptions))
    expect(err).toBeInstanceOf(c.error)
    expect(err).toMatchObject({ code: c.code, message: expect.stringMatching(c.message) })
    // Validation runs before any SQL: the transaction is not aborted.
    expect(client_.getTransactionStatus()).toBe('T')
    const good = await db.tr.enqueue(client_, welcome, { userId: 99 })
    await client_.query('commit')
    expect(await allIds()).toEqual([good.id])
  })

  it.each(cases)('$what — enqueueMany: the good items are not written either', async (c) => {
    const err = await rejection(
      db.tr.enqueueMany([
        { task: welcome, payload: { userId: 1 } },
        { task: c.task, payload: c.payload, options: c.options as EnqueueOptions },
        { task: welcome, payload: { userId: 2 } },
      ]),
    )
    expect(err).toBeInstanceOf(c.error)
    expect(err).toMatchObject({ code: c.code, message: expect.stringMatching(c.message) })
    expect(await rowCount()).toBe(0)
  })

  it('maxPayloadBytes is configurable and counts UTF-8 bytes, not characters', async () => {
    const tr = new TaskRelay({ db: db.pool, schema: db.schema, maxPayloadBytes: 20 })
    // {"s":"0123456789ab"} is exactly 20 bytes
    const { id } = await tr.enqueue(loose, { s: '0123456789ab' })
    expect(await allIds()).toEqual([id])
    const over = await rejection(tr.enqueue(loose, { s: '0123456789abc' }))
    expect(over).toBeInstanceOf(PayloadTooLargeError)
    expect((over as Error).message).toMatch(/is 21 bytes, over the limit of 20 bytes/)
    // 12 characters, 13 bytes: é is two bytes in UTF-8
    const multiByte = await rejection(tr.enqueue(loose, { s: 'é123456789ab' }))
    expect(multiByte).toBeInstanceOf(PayloadTooLargeError)
    expect(await rowCount()).toBe(1)
  })

  it('maxPayloadBytes must be a positive integer', () => {
    for (const maxPayloadBytes of [0, -1, 1.5]) {
      expect(() => new TaskRelay({ db: db.pool, schema: db.schema, maxPayloadBytes })).toThrow(ConfigError)
    }
  })

  it('a value that is not a task is refused', async () => {
    const fake = { name: 'email.welcome', payload: z.object({}) }
    const c = await client()
    await c.query('begin')
    await expect(db.tr.enqueue(fake as never, {} as never)).rejects.toBeInstanceOf(InvalidOptionsError)
    await expect(db.tr.enqueue(c, fake as never, {} as never)).rejects.toBeInstanceOf(InvalidOptionsError)
    await expect(db.tr.enqueueMany(c, 'items' as never)).rejects.toThrow(/items: expected an array/)
    await expect(db.tr.enqueueMany(c, [{ task: fake } as never])).rejects.toThrow(/items\.0\.task: expected a task from defineTask\(\)/)
    await c.query('commit')
    expect(await rowCount()).toBe(0)
  })
})

describe('what enqueue writes', () => {
  async function row(id: string) {
    const res = await db.pool.query(
      `select *, (extract(epoch from run_at - created_at) * 1000)::int as delay_ms, run_at > now() as in_future
         from ${tasks()} where id = $1`,
      [id],
    )
    return res.rows[0]
  }

  it('uses the task’s policy, and per-call options override it', async () => {
    const plain = await db.tr.enqueue(report, { day: 'wed' })
    expect(await row(plain.id)).toMatchObject({ queue: 'reports', priority: 5, max_attempts: 7, state: 'pending', attempt: 0 })
    const custom = await db.tr.enqueue(report, { day: 'thu' }, { queue: 'urgent', priority: -3, maxAttempts: 1 })
    expect(await row(custom.id)).toMatchObject({ queue: 'urgent', priority: -3, max_attempts: 1 })
    const defaults = await db.tr.enqueue(welcome, { userId: 1 })
    expect(await row(defaults.id)).toMatchObject({ queue: 'default', priority: 0, max_attempts: 3 })
  })

  it('run_at is the insert time by default', async () => {
    const { id } = await db.tr.enqueue(welcome, { userId: 1 })
    expect(await row(id)).toMatchObject({ delay_ms: 0, in_future: false })
  })

  it('delayMs puts run_at that far in the future (database clock)', async () => {
    const { id } = await db.tr.enqueue(welcome, { userId: 1 }, { delayMs: 90_000 })
    expect(await row(id)).toMatchObject({ delay_ms: 90000, in_future: true })
    const { ids } = await db.tr.enqueueMany([
      { task: welcome, payload: { userId: 2 }, options: { delayMs: 5000 } },
      { task: welcome, payload: { userId: 3 } },
    ])
    expect(await row(ids[0]!)).toMatchObject({ delay_ms: 5000, in_future: true })
    expect(await row(ids[1]!)).toMatchObject({ delay_ms: 0, in_future: false })
  })

  it('runAt is stored as given', async () => {
    const runAt = new Date(Date.now() + 3_600_000)
    const { id } = await db.tr.enqueue(welcome, { userId: 1 }, { runAt })
    const r = await row(id)
    expect(r.run_at.getTime()).toBe(runAt.getTime())
    expect(r.in_future).toBe(true)
    const { ids } = await db.tr.enqueueMany([{ task: welcome, payload: { userId: 2 }, options: { runAt } }])
    expect((await row(ids[0]!)).run_at.getTime()).toBe(runAt.getTime())
  })

  it('stores the payload the caller sent, not the parsed output (defaults apply in the worker)', async () => {
    const { id } = await db.tr.enqueue(withDefault, {})
    expect((await row(id)).payload).toEqual({})
  })

  it('stores any JSON payload the schema accepts, null included; a missing payload becomes {}', async () => {
    const nullable = defineTask({ name: 'nullable', payload: z.null(), run })
    const text = defineTask({ name: 'text', payload: z.string(), run })
    const optional = defineTask({ name: 'optional', payload: z.object({ a: z.number().optional() }).optional(), run })
    // undefined is stored as {}; a schema that accepts undefined but not {}
    // would fail in the worker on every attempt, so enqueue refuses it.
    const strict = defineTask({ name: 'optional-strict', payload: z.object({ a: z.number() }).optional(), run })
    await expect(db.tr.enqueue(strict, undefined)).rejects.toThrow(/after the JSON round trip/)
    const a = await db.tr.enqueue(nullable, null)
    const b = await db.tr.enqueue(text, 'hi')
    const c = await db.tr.enqueue(optional, undefined)
    const { ids } = await db.tr.enqueueMany([{ task: nullable, payload: null }])
    expect((await row(a.id)).payload).toBeNull()
    expect((await row(b.id)).payload).toBe('hi')
    expect((await row(c.id)).payload).toEqual({})
    expect((await row(ids[0]!)).payload).toBeNull()
  })

  it('enqueueMany returns ids in input order', async () => {
    const items = Array.from({ length: 100 }, (_, i) => ({ task: welcome, payload: { userId: i } }))
    const { ids } = await db.tr.enqueueMany(items)
    expect(new Set(ids).size).toBe(100)
    const res = await db.pool.query<{ id: string; user_id: number }>(
      `select id, (payload->>'userId')::int as user_id from ${tasks()}`,
    )
    const byId = new Map(res.rows.map((r) => [r.id, r.user_id]))
    expect(ids.map((id) => byId.get(id))).toEqual(items.map((_, i) => i))
  })

  it('enqueueMany of nothing writes nothing and sends no query', async () => {
    expect(await db.tr.enqueueMany([])).toEqual({ ids: [] })
    // A client inside a transaction that fails any query proves no SQL ran.
    const noSql = {
      getTransactionStatus: () => 'T',
      query: () => Promise.reject(new Error('no SQL expected')),
    }
    expect(await db.tr.enqueueMany(noSql as never, [])).toEqual({ ids: [] })
    expect(await rowCount()).toBe(0)
  })
})

describe('getTask', () => {
  it('returns the documented TaskRecord: string id, camelCase fields, Dates', async () => {
    const runAt = new Date(Date.now() + 60_000)
    const { id } = await db.tr.enqueue(report, { day: 'fri' }, { runAt, priority: 2, idempotencyKey: 'rec-1' })
    const rec = await db.tr.getTask(id)
    expect(rec).not.toBeNull()
    expect(Object.keys(rec!).sort()).toEqual(
      [
        'id',
        'name',
        'queue',
        'state',
        'payload',
        'priority',
        'attempt',
        'maxAttempts',
        'runAt',
        'createdAt',
        'dispatchedAt',
        'startedAt',
        'finishedAt',
        'leaseExpiresAt',
        'workerId',
        'result',
        'lastError',
        'idempotencyKey',
      ].sort(),
    )
    expect(rec).toEqual({
      id,
      name: 'report.build',
      queue: 'reports',
      state: 'pending',
      payload: { day: 'fri' },
      priority: 2,
      attempt: 0,
      maxAttempts: 7,
      runAt,
      createdAt: expect.any(Date),
      dispatchedAt: null,
      startedAt: null,
      finishedAt: null,
      leaseExpiresAt: null,
      workerId: null,
      result: null,
      lastError: null,
      idempotencyKey: 'rec-1',
    })
    expect(typeof rec!.id).toBe('string')
    expect(Math.abs(rec!.createdAt.getTime() - Date.now())).toBeLessThan(60_000)
  })

  it('accepts string, number and bigint ids', async () => {
    const { id } = await db.tr.enqueue(welcome, { userId: 1 })
    expect((await db.tr.getTask(Number(id)))?.id).toBe(id)
    expect((await db.tr.getTask(BigInt(id)))?.id).toBe(id)
  })

  it('returns null for a missing id', async () => {
    const { id } = await db.tr.enqueue(welcome, { userId: 1 })
    expect(await db.tr.getTask(BigInt(id) + 1000n)).toBeNull()
  })

  it('refuses ids that are not positive integers', async () => {
    for (const bad of ['abc', '0', '-4', '1.5', '']) {
      await expect(db.tr.getTask(bad)).rejects.toBeInstanceOf(InvalidOptionsError)
    }
  })
})

describe('idempotency keys', () => {
  it('a repeated key returns the first task’s id and writes nothing', async () => {
    const first = await db.tr.enqueue(welcome, { userId: 1 }, { idempotencyKey: 'signup:1' })
    const again = await db.tr.enqueue(welcome, { userId: 2 }, { idempotencyKey: 'signup:1' })
    expect(again).toEqual(first)
    expect(await allIds()).toEqual([first.id])
    expect((await db.tr.getTask(first.id))?.payload).toEqual({ userId: 1 })
  })

  it('works inside one transaction too', async () => {
    const c = await client()
    await c.query('begin')
    const a = await db.tr.enqueue(c, welcome, { userId: 1 }, { idempotencyKey: 'k' })
    const b = await db.tr.enqueue(c, welcome, { userId: 1 }, { idempotencyKey: 'k' })
    await c.query('commit')
    expect(b).toEqual(a)
    expect(await rowCount()).toBe(1)
  })

  it('enqueueMany: existing keys, repeated keys in the batch and keyless items map to the right ids', async () => {
    const existing = await db.tr.enqueue(welcome, { userId: 0 }, { idempotencyKey: 'old' })
    const { ids } = await db.tr.enqueueMany([
      { task: welcome, payload: { userId: 1 }, options: { idempotencyKey: 'new' } },
      { task: welcome, payload: { userId: 2 } },
      { task: welcome, payload: { userId: 3 }, options: { idempotencyKey: 'old' } },
      { task: welcome, payload: { userId: 4 }, options: { idempotencyKey: 'new' } },
      { task: welcome, payload: { userId: 5 } },
    ])
    expect(ids[2]).toBe(existing.id)
    expect(ids[3]).toBe(ids[0])
    expect(new Set([existing.id, ids[0], ids[1], ids[4]]).size).toBe(4)
    expect(await rowCount()).toBe(4)
    const payloadOf = async (id: string) => (await db.tr.getTask(id))?.payload
    expect(await payloadOf(ids[0]!)).toEqual({ userId: 1 })
    expect(await payloadOf(ids[1]!)).toEqual({ userId: 2 })
    expect(await payloadOf(ids[4]!)).toEqual({ userId: 5 })
  })

  describe('two transactions racing with the same key', () => {
    it('the second waits for the first, and gets its id when it commits', async () => {
      const a = await client()
      const b = await client()
      const bPid = await backendPid(b)
      await a.query('begin')
      await b.query('begin')
      const first = await db.tr.enqueue(a, welcome, { userId: 1 }, { idempotencyKey: 'race' })
      const second = db.tr.enqueue(b, welcome, { userId: 2 }, { idempotencyKey: 'race' })
      await waitForLockWait(bPid)
      await a.query('commit')
      expect(await second).toEqual(first)
      await b.query('commit')
      expect(await allIds()).toEqual([first.id])
      expect((await db.tr.getTask(first.id))?.payload).toEqual({ userId: 1 })
    })

    it('the second inserts its own row when the first rolls back', async () => {
      const a = await client()
      const b = await client()
      const bPid = await backendPid(b)
      await a.query('begin')
      await b.query('begin')
      const first = await db.tr.enqueue(a, welcome, { userId: 1 }, { idempotencyKey: 'race' })
      const second = db.tr.enqueue(b, welcome, { userId: 2 }, { idempotencyKey: 'race' })
      await waitForLockWait(bPid)
      await a.query('rollback')
      const got = await second
      expect(got.id).not.toBe(first.id)
      await b.query('commit')
      expect(await allIds()).toEqual([got.id])
      expect(await db.tr.getTask(got.id)).toMatchObject({ payload: { userId: 2 }, idempotencyKey: 'race' })
    })

    it('enqueueMany waits too, and maps the key to the committed id', async () => {
      const a = await client()
      const b = await client()
      const bPid = await backendPid(b)
      await a.query('begin')
      await b.query('begin')
      const first = await db.tr.enqueue(a, welcome, { userId: 1 }, { idempotencyKey: 'race' })
      const second = db.tr.enqueueMany(b, [
        { task: welcome, payload: { userId: 2 } },
        { task: welcome, payload: { userId: 3 }, options: { idempotencyKey: 'race' } },
      ])
      await waitForLockWait(bPid)
      await a.query('commit')
      const { ids } = await second
      await b.query('commit')
      expect(ids[1]).toBe(first.id)
      expect(ids[0]).not.toBe(first.id)
      expect(await rowCount()).toBe(2)
    })
  })
})

describe('NOTIFY <schema>.task_ready', () => {
  let listener: pg.Client
  let channel: string
  const received: string[] = []

  beforeAll(async () => {
    channel = db.tr.channels.taskReady
    expect(channel).toBe(`${db.schema}.task_ready`)
    listener = new pg.Client({ connectionString: databaseUrl() })
    await listener.connect()
    listener.on('notification', (msg) => {
      if (msg.channel === channel) received.push(msg.payload ?? '')
    })
    await listener.query(`listen "${channel}"`)
    await registerIdleRelay()
  })

  afterAll(async () => {
    await listener?.end()
  })

  beforeEach(async () => {
    await settle()
  })

  /**
   * The notifications delivered so far. Postgres delivers notifications in
   * commit order, so once a marker sent after the action arrives, everything
   * the action's commit sent has arrived too: no sleeping, no guessing.
   */
  async function settle(): Promise<string[]> {
    const marker = `marker:${randomUUID()}`
    await db.pool.query('select pg_notify($1, $2)', [channel, marker])
    await waitUntil(() => received.includes(marker), { what: 'the marker notification' })
    const before = received.splice(0, received.indexOf(marker) + 1)
    before.pop()
    return before
  }

  it('enqueueMany of 100 rows sends exactly one notification', async () => {
    await db.tr.enqueueMany(Array.from({ length: 100 }, (_, i) => ({ task: welcome, payload: { userId: i } })))
    expect(await rowCount()).toBe(100)
    expect(await settle()).toEqual([''])
  })

  it('each autocommitted INSERT statement sends one', async () => {
    await db.tr.enqueue(welcome, { userId: 1 })
    await db.tr.enqueue(welcome, { userId: 2 })
    await db.tr.enqueue(welcome, { userId: 3 })
    expect(await settle()).toEqual(['', '', ''])
  })

  it('is delivered on COMMIT only, once per transaction', async () => {
    const c = await client()
    await c.query('begin')
    await db.tr.enqueueMany(c, Array.from({ length: 100 }, (_, i) => ({ task: welcome, payload: { userId: i } })))
    await db.tr.enqueue(c, welcome, { userId: 100 })
    expect(await settle()).toEqual([])
    await c.query('commit')
    // Postgres folds identical notifications of one transaction into one.
    expect(await settle()).toEqual([''])
  })

  it('the wake-up runs once per enqueue statement, not once per row', async () => {
    // Notifications cannot tell (Postgres folds duplicates within a
    // transaction); the plan's loop counts can.
    const c = await client()
    await c.query('begin')
    const statement = enqueueStatement('task-insert-many-plain.sql', db.schema)
    const n = 100
    const params = [
      Array(n).fill('welcome'),
      Array(n).fill('default'),
      Array.from({ length: n }, (_, i) => JSON.stringify({ userId: i })),
      Array(n).fill(0),
      Array(n).fill(3),
      Array(n).fill(null),
      Array(n).fill(0),
    ]
    const res = await c.query<{ 'QUERY PLAN': string }>(`explain (analyze, costs off, timing off, summary off) ${statement}`, params)
    const plan = res.rows.map((r) => r['QUERY PLAN']).join('\n')
    await c.query('rollback')
    expect(plan).toMatch(/CTE Scan on inserted \(actual rows=100 loops=1\)/)
    // The relays aggregate that may NOTIFY: one evaluation for 100 rows.
    expect(plan).toMatch(/Aggregate \(actual rows=1 loops=1\)/)
    expect(plan.match(/loops=(\d+)/g)!.every((l) => l === 'loops=1')).toBe(true)
  })

  it('sends none while a relay is busy (it polls on its own), nor when no relay is registered', async () => {
    const relays = `"${db.schema}".relays`
    try {
      await db.pool.query(`update ${relays} set busy_until = 'infinity'`)
      await db.tr.enqueue(welcome, { userId: 1 })
      await db.tr.enqueueMany([{ task: welcome, payload: { userId: 2 } }])
      expect(await settle()).toEqual([])
      // One busy relay among idle ones is enough: it polls and takes the task.
      await db.pool.query(`insert into ${relays} (relay_id, busy_until) values ('idle-too', '-infinity')`)
      await db.tr.enqueue(welcome, { userId: 3 })
      expect(await settle()).toEqual([])
      await db.pool.query(`delete from ${relays}`)
      await db.tr.enqueue(welcome, { userId: 4 })
      await db.tr.enqueue(welcome, { userId: 5 }, { idempotencyKey: 'k-5' })
      expect(await settle()).toEqual([])
      expect(await rowCount()).toBe(5)
    } finally {
      await db.pool.query(`delete from ${relays}`)
      await registerIdleRelay()
    }
  })

  it('idempotent enqueues notify too (one per statement), even when the key already existed', async () => {
    await db.tr.enqueue(welcome, { userId: 1 }, { idempotencyKey: 'same' })
    await db.tr.enqueue(welcome, { userId: 1 }, { idempotencyKey: 'same' })
    await db.tr.enqueueMany([
      { task: welcome, payload: { userId: 2 }, options: { idempotencyKey: 'other' } },
      { task: welcome, payload: { userId: 3 } },
    ])
    expect(await settle()).toEqual(['', '', ''])
  })

  it('a rolled-back enqueue sends none', async () => {
    const c = await client()
    await c.query('begin')
    await db.tr.enqueue(c, welcome, { userId: 1 })
    await db.tr.enqueueMany(c, [{ task: welcome, payload: { userId: 2 } }])
    await c.query('rollback')
    expect(await settle()).toEqual([])
    expect(await rowCount()).toBe(0)
  })
})

describe('payloads the worker could not read', () => {
  it('rejects a payload that is valid only before its JSON round trip, writing nothing', async () => {
    const db = await createTestDb()
    try {
      const withDate = defineTask({ name: 'dated', payload: z.object({ at: z.date() }), run: async () => null })
      const error = await db.tr.enqueue(withDate, { at: new Date() }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(PayloadValidationError)
      expect((error as PayloadValidationError).issues[0]!.path).toBe('at')
      expect((error as Error).message).toMatch(/z\.coerce\.date\(\)/)
      const coerced = defineTask({ name: 'dated-ok', payload: z.object({ at: z.coerce.date() }), run: async () => null })
      await db.tr.enqueue(coerced, { at: new Date() })
      const count = await db.pool.query(`select name from "${db.schema}".tasks`)
      expect(count.rows).toEqual([{ name: 'dated-ok' }])
    } finally {
      await db.cleanup()
    }
  })
})
