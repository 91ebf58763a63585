import { randomUUID } from 'node:crypto'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import pg from 'pg'
import { createTestDb, databaseUrl, waitUntil, type TestDb } from '../support/db.ts'
import { HOUR, MIN, SEC, ago, dbNow, makeTask, makeTasks, sqlExpr, taskRow, type TaskOverrides } from '../support/factory.ts'
import { InvalidOptionsError, TASK_STATES, TaskNotFoundError, type TaskState } from '../../src/index.ts'

/**
 * The SQL API (usable from psql and any language): enqueue(), cancel(),
 * retry() and the task_status view, plus tr.cancel()/tr.retry() over them.
 */

let db: TestDb
const held: pg.PoolClient[] = []

beforeAll(async () => {
  db = await createTestDb()
})

afterAll(async () => {
  await db?.cleanup()
})

beforeEach(async () => {
  await db.pool.query(`delete from ${q('tasks')}; delete from ${q('task_types')}`)
})

afterEach(() => {
  for (const c of held.splice(0)) c.release(true)
})

/** A schema-qualified name. */
function q(name: string): string {
  return `"${db.schema}".${name}`
}

async function client(): Promise<pg.PoolClient> {
  const c = await db.pool.connect()
  held.push(c)
  return c
}

async function rowCount(): Promise<number> {
  return (await db.pool.query<{ n: number }>(`select count(*)::int as n from ${q('tasks')}`)).rows[0]!.n
}

async function allIds(): Promise<string[]> {
  return (await db.pool.query<{ id: string }>(`select id from ${q('tasks')} order by id`)).rows.map((r) => r.id)
}

/**
 * Make sure inserts notify: from migration 0003 on (when present), the insert
 * trigger wakes relays only when one is registered and none is busy, so
 * register an idle one. Without a relays table, inserts always notify.
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

/** Call <schema>.enqueue(...) with the given SQL argument list; returns the id. */
async function sqlEnqueue(on: pg.ClientBase | pg.Pool, args: string, values: unknown[] = []): Promise<string> {
  const res = await on.query<{ id: string }>(`select ${q('enqueue')}(${args}) as id`, values)
  return res.rows[0]!.id
}

async function row(id: string) {
  const res = await db.pool.query(
    `select *, (extract(epoch from run_at - created_at) * 1000)::int as delay_ms from ${q('tasks')} where id = $1`,
    [id],
  )
  return res.rows[0]
}

describe('<schema>.enqueue()', () => {
  it('returns the new id (bigint) and writes a pending row', async () => {
    const id = await sqlEnqueue(db.pool, `'email.welcome', '{"userId": 1}'`)
    expect(id).toMatch(/^[1-9][0-9]*$/)
    expect(await row(id)).toMatchObject({
      name: 'email.welcome',
      payload: { userId: 1 },
      state: 'pending',
      attempt: 0,
      queue: 'default',
      priority: 0,
      max_attempts: 3,
      delay_ms: 0,
      idempotency_key: null,
    })
  })

  it('payload defaults to {}', async () => {
    const id = await sqlEnqueue(db.pool, `'no.payload'`)
    expect((await row(id)).payload).toEqual({})
  })

  it('commits and rolls back with the caller’s transaction', async () => {
    const c = await client()
    await c.query('begin')
    const id = await sqlEnqueue(c, `'in.tx'`)
    expect(await rowCount()).toBe(0)
    await c.query('commit')
    expect(await allIds()).toEqual([id])

    await c.query('begin')
    await sqlEnqueue(c, `'in.tx'`)
    await sqlEnqueue(c, `'in.tx'`)
    await c.query('rollback')
    expect(await allIds()).toEqual([id])
  })

  it('ROLLBACK TO SAVEPOINT drops only what came after the savepoint', async () => {
    const c = await client()
    await c.query('begin')
    const kept = await sqlEnqueue(c, `'sp.test'`)
    await c.query('savepoint s')
    await sqlEnqueue(c, `'sp.test'`)
    await c.query('rollback to savepoint s')
    const after = await sqlEnqueue(c, `'sp.test'`)
    await c.query('commit')
    expect(await allIds()).toEqual([kept, after])
  })

  it('takes queue, priority and max_attempts from task_types when the arguments are null', async () => {
    await db.pool.query(`insert into ${q('task_types')} (name, queue, priority, max_attempts) values ('mail.send', 'mail', 7, 9)`)
    const omitted = await sqlEnqueue(db.pool, `'mail.send', '{}'`)
    expect(await row(omitted)).toMatchObject({ queue: 'mail', priority: 7, max_attempts: 9 })
    const explicitNulls = await sqlEnqueue(db.pool, `'mail.send', '{}', null, null, null, null, null, null`)
    expect(await row(explicitNulls)).toMatchObject({ queue: 'mail', priority: 7, max_attempts: 9, delay_ms: 0 })
    const overridden = await sqlEnqueue(db.pool, `'mail.send', queue => 'bulk', priority => -2, max_attempts => 1`)
    expect(await row(overridden)).toMatchObject({ queue: 'bulk', priority: -2, max_attempts: 1 })
    const partly = await sqlEnqueue(db.pool, `'mail.send', priority => 100`)
    expect(await row(partly)).toMatchObject({ queue: 'mail', priority: 100, max_attempts: 9 })
    // A name without a task_types row gets the built-in defaults.
    const unknown = await sqlEnqueue(db.pool, `'not.registered'`)
    expect(await row(unknown)).toMatchObject({ queue: 'default', priority: 0, max_attempts: 3 })
  })

  it('delay puts run_at that far in the future; run_at is stored as given', async () => {
    const delayed = await sqlEnqueue(db.pool, `'later', delay => interval '90 seconds'`)
    expect(await row(delayed)).toMatchObject({ delay_ms: 90_000 })
    const at = new Date(Date.now() + 2 * HOUR)
    const scheduled = await sqlEnqueue(db.pool, `'later', run_at => $1`, [at])
    expect((await row(scheduled)).run_at.getTime()).toBe(at.getTime())
    const future = await db.pool.query(`select count(*)::int as n from ${q('tasks')} where run_at > now()`)
    expect(future.rows[0].n).toBe(2)
  })

  it('a repeated idempotency_key returns the first id and writes nothing', async () => {
    const first = await sqlEnqueue(db.pool, `'idem', '{"n": 1}', idempotency_key => 'k1'`)
    const again = await sqlEnqueue(db.pool, `'idem', '{"n": 2}', idempotency_key => 'k1'`)
    expect(again).toBe(first)
    expect(await allIds()).toEqual([first])
    expect((await row(first)).payload).toEqual({ n: 1 })
  })

  describe('two transactions racing with the same idempotency_key', () => {
    async function race(endFirst: 'commit' | 'rollback') {
      const a = await client()
      const b = await client()
      const bPid = (await b.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid
      await a.query('begin')
      await b.query('begin')
      const first = await sqlEnqueue(a, `'race', '{"by": "a"}', idempotency_key => 'same'`)
      const second = sqlEnqueue(b, `'race', '{"by": "b"}', idempotency_key => 'same'`)
      await waitUntil(
        async () =>
          (await db.pool.query('select wait_event_type as w from pg_stat_activity where pid = $1', [bPid])).rows[0]?.w === 'Lock',
        { what: 'the second transaction to wait on the unique index' },
      )
      await a.query(endFirst)
      const secondId = await second
      await b.query('commit')
      return { first, secondId }
    }

    it('the first commits: the second returns its id, one row', async () => {
      const { first, secondId } = await race('commit')
      expect(secondId).toBe(first)
      expect(await allIds()).toEqual([first])
      expect((await row(first)).payload).toEqual({ by: 'a' })
    })

    it('the first rolls back: the second inserts its own row', async () => {
      const { first, secondId } = await race('rollback')
      expect(secondId).not.toBe(first)
      expect(await allIds()).toEqual([secondId])
      expect((await row(secondId)).payload).toEqual({ by: 'b' })
    })
  })

  it('enqueue_after(): waits on unfinished tasks, is pending when all succeeded, refuses unknown ids, repeats idempotently', async () => {
    const running = await makeTask(db.pool, db.schema, { state: 'running', attempt: 1 })
    const done = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1 })
    const after = async (deps: string, key: string | null = null) =>
      String((await db.pool.query(`select ${q('enqueue_after')}($1::bigint[], 'sql.after', idempotency_key => $2) as id`, [deps, key])).rows[0].id)
    const waiting = await after(`{${running},${done}}`, 'after-once')
    const ready = await after(`{${done}}`)
    expect((await taskRow(db.pool, db.schema, waiting))!.state).toBe('waiting')
    expect((await taskRow(db.pool, db.schema, ready))!.state).toBe('pending')
    const edges = await db.pool.query(`select depends_on::text from ${q('task_dependencies')} where task_id = $1 order by 1`, [waiting])
    expect(edges.rows.map((r) => r.depends_on)).toEqual([running, done].sort((a, b) => Number(a) - Number(b)))
    expect(await after(`{${done}}`, 'after-once')).toBe(waiting)
    const before = (await db.pool.query(`select count(*)::int as n from ${q('tasks')}`)).rows[0].n
    for (const [deps, message] of [
      ['{999999999997}', 'depends_on names no task: 999999999997'],
      ['{}', 'depends_on must hold 1-1000 task ids'],
    ] as const) {
      const err = (await after(deps).catch((e: unknown) => e)) as { code: string; message: string }
      expect(err.code).toBe('22023')
      expect(err.message).toContain(message)
    }
    expect((await db.pool.query(`select count(*)::int as n from ${q('tasks')}`)).rows[0].n).toBe(before)
  })

  it('enqueue_after(): a concurrent repeat of the key waits for the first and leaves its task as it is', async () => {
    const running = await makeTask(db.pool, db.schema, { state: 'running', attempt: 1 })
    const done = await makeTask(db.pool, db.schema, { state: 'succeeded', attempt: 1 })
    const first = await client()
    await first.query('begin')
    const id = String((await first.query(`select ${q('enqueue_after')}($1::bigint[], 'sql.after', idempotency_key => 'race') as id`, [`{${done}}`])).rows[0].id)
    // The second names another dependency; it must not add it to the first task.
    const second = db.pool.query(`select ${q('enqueue_after')}($1::bigint[], 'sql.after', idempotency_key => 'race') as id`, [`{${running}}`])
    await waitUntil(
      async () =>
        (await db.pool.query(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like '%enqueue_after%'`)).rows[0].n > 0,
      { what: 'the second call to wait for the first' },
    )
    await first.query('commit')
    expect(String((await second).rows[0].id)).toBe(id)
    const edges = await db.pool.query(`select depends_on::text from ${q('task_dependencies')} where task_id = $1`, [id])
    expect(edges.rows.map((r) => r.depends_on)).toEqual([done])
    expect((await taskRow(db.pool, db.schema, id))!.state).toBe('pending')
  })

  it('writes to its own schema even when the caller’s search_path has a "tasks" table', async () => {
    const c = await client()
    await c.query('begin')
    await c.query('create temp table tasks (id bigint, name text) on commit drop')
    await c.query('create temp table task_types (name text primary key) on commit drop')
    const id = await sqlEnqueue(c, `'decoy.test'`)
    expect((await c.query('select count(*)::int as n from pg_temp.tasks')).rows[0].n).toBe(0)
    await c.query('commit')
    expect(await allIds()).toEqual([id])
  })

  describe('bad arguments raise SQLSTATE 22023 with a clear message, and write nothing', () => {
    const cases: Array<{ what: string; args: string; message: RegExp }> = [
      { what: 'name with spaces', args: `'bad name!'`, message: /invalid task_name 'bad name!'/ },
      { what: 'empty name', args: `''`, message: /invalid task_name ''/ },
      { what: 'null name', args: `null`, message: /invalid task_name NULL/ },
      { what: 'name over 200 characters', args: `repeat('a', 201)`, message: /invalid task_name/ },
      { what: 'array payload', args: `'t', '[1, 2]'`, message: /payload must be a JSON object, got array/ },
      { what: 'string payload', args: `'t', '"text"'`, message: /payload must be a JSON object, got string/ },
      { what: 'JSON null payload', args: `'t', 'null'::jsonb`, message: /payload must be a JSON object, got null/ },
      { what: 'SQL NULL payload', args: `'t', null`, message: /payload must be a JSON object, got NULL/ },
      { what: 'negative delay', args: `'t', delay => interval '-1 second'`, message: /delay must not be negative/ },
      { what: 'priority 1001', args: `'t', priority => 1001`, message: /priority must be between -1000 and 1000, got 1001/ },
      { what: 'priority -1001', args: `'t', priority => -1001`, message: /priority must be between -1000 and 1000, got -1001/ },
      { what: 'max_attempts 0', args: `'t', max_attempts => 0`, message: /max_attempts must be between 1 and 1000, got 0/ },
      { what: 'max_attempts 1001', args: `'t', max_attempts => 1001`, message: /max_attempts must be between 1 and 1000/ },
      { what: 'run_at and delay together', args: `'t', run_at => now(), delay => interval '1 minute'`, message: /give run_at or delay, not both/ },
      { what: 'queue with spaces', args: `'t', queue => 'bad queue'`, message: /invalid queue 'bad queue'/ },
      { what: 'empty queue', args: `'t', queue => ''`, message: /invalid queue ''/ },
      { what: 'empty idempotency_key', args: `'t', idempotency_key => ''`, message: /idempotency_key must be 1-500 characters, got 0/ },
      { what: 'idempotency_key over 500', args: `'t', idempotency_key => repeat('k', 501)`, message: /idempotency_key must be 1-500 characters, got 501/ },
    ]

    it.each(cases)('$what', async ({ args, message }) => {
      const err = await db.pool.query(`select ${q('enqueue')}(${args})`).then(
        () => null,
        (e: pg.DatabaseError) => e,
      )
      expect(err).not.toBeNull()
      expect(err!.code).toBe('22023')
      expect(err!.message).toMatch(/^taskrelay\.enqueue: /)
      expect(err!.message).toMatch(message)
      expect(await rowCount()).toBe(0)
    })
  })

  it('wakes the relay on commit (NOTIFY <schema>.task_ready), not on rollback', async () => {
    const channel = db.tr.channels.taskReady
    const listener = new pg.Client({ connectionString: databaseUrl() })
    await listener.connect()
    try {
      const got: string[] = []
      listener.on('notification', (m) => m.channel === channel && got.push(m.payload ?? ''))
      await listener.query(`listen "${channel}"`)
      await registerIdleRelay()
      const settle = async () => {
        const marker = `marker:${randomUUID()}`
        await db.pool.query('select pg_notify($1, $2)', [channel, marker])
        await waitUntil(() => got.includes(marker), { what: 'the marker notification' })
        return got.splice(0).filter((p) => p !== marker)
      }
      const c = await client()
      await c.query('begin')
      await sqlEnqueue(c, `'notify.me'`)
      await c.query('rollback')
      expect(await settle()).toEqual([])
      await sqlEnqueue(db.pool, `'notify.me'`)
      expect(await settle()).toEqual([''])
    } finally {
      await listener.end()
    }
  })
})

describe('<schema>.task_status view', () => {
  it('shows one row per task with derived timings and the error message', async () => {
    const id = await makeTask(db.pool, db.schema, {
      state: 'failed',
      createdAt: ago(10 * MIN),
      startedAt: ago(5 * MIN),
      finishedAt: ago(2 * MIN),
      lastError: { message: 'boom', attempt: 3, at: new Date().toISOString() },
      payload: { a: 1 },
    })
    const res = await db.pool.query(
      `select *, extract(epoch from run_duration)::int as run_s, extract(epoch from waited)::int as waited_s
         from ${q('task_status')} where id = $1`,
      [id],
    )
    expect(res.fields.map((f) => f.name)).toEqual([
      'id',
      'name',
      'queue',
      'state',
      'attempt',
      'max_attempts',
      'priority',
      'created_at',
      'run_at',
      'started_at',
      'finished_at',
      'run_duration',
      'waited',
      'worker_id',
      'error',
      'result',
      'payload',
      'idempotency_key',
      'workflow_id',
      'run_s',
      'waited_s',
    ])
    expect(res.rows[0]).toMatchObject({ state: 'failed', error: 'boom', payload: { a: 1 }, run_s: 180, waited_s: 300 })
  })
})

describe('cancel and retry', () => {
  const cancellable: TaskState[] = ['waiting', 'pending', 'dispatched', 'running']
  const retryable: TaskState[] = ['failed', 'cancelled']

  it('covers every state', () => {
    expect([...TASK_STATES].sort()).toEqual(['cancelled', 'dispatched', 'failed', 'pending', 'running', 'succeeded', 'waiting'])
  })

  async function sqlCall(fn: 'cancel' | 'retry', id: string): Promise<boolean> {
    return (await db.pool.query<{ ok: boolean }>(`select ${q(fn)}($1) as ok`, [id])).rows[0]!.ok
  }

  const overrides = (state: TaskState): TaskOverrides => ({ state, result: state === 'succeeded' ? { ok: true } : null })

  describe.each([
    ['SQL', (id: string) => sqlCall('cancel', id)],
    ['tr.cancel', async (id: string) => db.tr.cancel(id)],
  ] as const)('%s', (_, cancel) => {
    it.each(cancellable)('cancels a %s task', async (state) => {
      const id = await makeTask(db.pool, db.schema, overrides(state))
      expect(await cancel(id)).toBe(true)
      const r = (await taskRow(db.pool, db.schema, id))!
      expect(r).toMatchObject({ state: 'cancelled', lease_expires_at: null, dispatch_token: null })
      expect(r.finished_at).toBeInstanceOf(Date)
    })

    it.each(TASK_STATES.filter((s) => !cancellable.includes(s)))('leaves a %s task alone', async (state) => {
      const id = await makeTask(db.pool, db.schema, overrides(state))
      const before = await taskRow(db.pool, db.schema, id)
      expect(await cancel(id)).toBe(false)
      expect(await taskRow(db.pool, db.schema, id)).toEqual(before)
    })
  })

  describe.each([
    ['SQL', (id: string) => sqlCall('retry', id)],
    ['tr.retry', async (id: string) => db.tr.retry(id)],
  ] as const)('%s', (_, retry) => {
    it.each(retryable)('makes a %s task pending again, runnable now', async (state) => {
      const id = await makeTask(db.pool, db.schema, {
        state,
        runAt: ago(HOUR),
        dispatchedAt: ago(HOUR),
        dispatchToken: randomUUID(),
        result: { partial: true },
        attempt: 2,
        maxAttempts: 5,
      })
      expect(await retry(id)).toBe(true)
      const r = await db.pool.query(
        `select *, abs(extract(epoch from run_at - now())) < 5 as runnable_now from ${q('tasks')} where id = $1`,
        [id],
      )
      expect(r.rows[0]).toMatchObject({
        state: 'pending',
        runnable_now: true,
        finished_at: null,
        result: null,
        dispatch_token: null,
        dispatched_at: null,
        lease_expires_at: null,
        attempt: 2,
        max_attempts: 5,
      })
    })

    it.each(TASK_STATES.filter((s) => !retryable.includes(s)))('leaves a %s task alone', async (state) => {
      const id = await makeTask(db.pool, db.schema, overrides(state))
      const before = await taskRow(db.pool, db.schema, id)
      expect(await retry(id)).toBe(false)
      expect(await taskRow(db.pool, db.schema, id)).toEqual(before)
    })

    it('grants one more attempt to a task that used them all, keeping its last error', async () => {
      const id = await makeTask(db.pool, db.schema, { state: 'failed', attempt: 3, maxAttempts: 3 })
      const before = (await taskRow(db.pool, db.schema, id))!
      expect(await retry(id)).toBe(true)
      expect(await taskRow(db.pool, db.schema, id)).toMatchObject({ state: 'pending', attempt: 3, max_attempts: 4, last_error: before.last_error })
    })

    it('works at the 1000-attempt ceiling', async () => {
      const id = await makeTask(db.pool, db.schema, { state: 'failed', attempt: 1000, maxAttempts: 1000 })
      expect(await retry(id)).toBe(true)
      expect(await taskRow(db.pool, db.schema, id)).toMatchObject({ state: 'pending', max_attempts: 1001 })
    })
  })

  it('the SQL functions return false for a missing id', async () => {
    expect(await sqlCall('cancel', '999999')).toBe(false)
    expect(await sqlCall('retry', '999999')).toBe(false)
  })

  it('tr.cancel / tr.retry throw TaskNotFoundError for a missing id, InvalidOptionsError for a bad one', async () => {
    const missing = await db.tr.cancel('999999').catch((e: unknown) => e)
    expect(missing).toBeInstanceOf(TaskNotFoundError)
    expect(missing).toMatchObject({ code: 'TASK_NOT_FOUND', taskId: '999999' })
    await expect(db.tr.retry(999999)).rejects.toBeInstanceOf(TaskNotFoundError)
    await expect(db.tr.cancel('abc')).rejects.toBeInstanceOf(InvalidOptionsError)
    await expect(db.tr.retry(-1)).rejects.toBeInstanceOf(InvalidOptionsError)
  })

  it('cancel announces the id on <schema>.task_finished, retry wakes <schema>.task_ready', async () => {
    const { taskFinished, taskReady } = db.tr.channels
    const listener = new pg.Client({ connectionString: databaseUrl() })
    await listener.connect()
    try {
      const got: Array<[string, string]> = []
      listener.on('notification', (m) => got.push([m.channel, m.payload ?? '']))
      // Made before LISTEN: inserting the row notifies task_ready too.
      const id = await makeTask(db.pool, db.schema, { state: 'running' })
      await listener.query(`listen "${taskFinished}"; listen "${taskReady}"`)
      expect(await db.tr.cancel(id)).toBe(true)
      expect(await db.tr.cancel(id)).toBe(false)
      expect(await db.tr.retry(id)).toBe(true)
      const marker = `marker:${randomUUID()}`
      await db.pool.query('select pg_notify($1, $2)', [taskReady, marker])
      await waitUntil(() => got.some(([, p]) => p === marker), { what: 'the marker notification' })
      expect(got.filter(([, p]) => p !== marker)).toEqual([
        [taskFinished, id],
        [taskReady, ''],
      ])
    } finally {
      await listener.end()
    }
  })
})

describe('the makeTask fixture (test/support/factory.ts)', () => {
  it.each(TASK_STATES)('writes a consistent %s row', async (state) => {
    const id = await makeTask(db.pool, db.schema, { state })
    expect(id).toMatch(/^[1-9][0-9]*$/)
    const r = (await taskRow(db.pool, db.schema, id))!
    expect(r.state).toBe(state)
    const started = state === 'running' || state === 'succeeded' || state === 'failed'
    expect(r.attempt > 0).toBe(started)
    expect(r.started_at !== null).toBe(started)
    expect(r.dispatch_token !== null).toBe(state === 'dispatched' || state === 'running')
    expect(r.lease_expires_at !== null).toBe(state === 'running')
    expect(r.finished_at !== null).toBe(['succeeded', 'failed', 'cancelled'].includes(state))
    expect(r.last_error !== null).toBe(state === 'failed')
  })

  it('overrides any column; null writes NULL; SQL expressions use the database clock', async () => {
    const backdated = ago(10 * MIN)
    const id = await makeTask(db.pool, db.schema, {
      state: 'running',
      name: 'custom.name',
      queue: 'q2',
      payload: [1, 'two'],
      priority: -7,
      attempt: 4,
      maxAttempts: 9,
      startedAt: backdated,
      leaseExpiresAt: dbNow(-5 * SEC),
      workerId: null,
      idempotencyKey: 'fixture-key',
      columns: { result: { raw: true } },
    })
    const r = await db.pool.query(`select *, lease_expires_at < now() as expired from ${q('tasks')} where id = $1`, [id])
    expect(r.rows[0]).toMatchObject({
      name: 'custom.name',
      queue: 'q2',
      payload: [1, 'two'],
      priority: -7,
      attempt: 4,
      max_attempts: 9,
      started_at: backdated,
      worker_id: null,
      idempotency_key: 'fixture-key',
      result: { raw: true },
      expired: true,
    })
    const explicitId = await makeTask(db.pool, db.schema, { id: 4242n, createdAt: sqlExpr("now() - interval '1 day'") })
    expect(explicitId).toBe('4242')
  })

  it('makeTasks inserts many rows with different overrides, ids in input order', async () => {
    const ids = await makeTasks(db.pool, db.schema, [{ payload: { i: 0 } }, { state: 'failed', payload: { i: 1 } }, { priority: 3, payload: { i: 2 } }])
    const rows = await Promise.all(ids.map((id) => taskRow(db.pool, db.schema, id)))
    expect(rows.map((r) => r!.payload)).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }])
    expect(rows.map((r) => r!.state)).toEqual(['pending', 'failed', 'pending'])
    expect(rows.map((r) => r!.priority)).toEqual([0, 0, 3])
  })

  it('refuses a column the table does not have', async () => {
    await expect(makeTask(db.pool, db.schema, { columns: { no_such_column: 1 } })).rejects.toThrow(/has no column "no_such_column"/)
  })
})
