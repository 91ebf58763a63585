import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { z } from 'zod'
import { defineTask } from '../../src/index.ts'
import { loadSql, plainArray } from '../../src/db/sql.ts'
import { BATCH_SESSION_SQL } from '../../src/db/executor.ts'
import { TaskRelay } from '../../src/index.ts'
import { createTestDb, databaseUrl, type TestDb } from '../support/db.ts'

/**
 * The worker's batch writes join an array of ids to tasks. Their prepared
 * statements switch to a generic plan after five calls, which guesses 10
 * rows per array; if it may scan a state's partial index instead, stale
 * statistics ("nothing is running") make it nested-loop the batch against
 * every running row (0005). Here statistics are taken while every task is
 * pending, 500 tasks then run, and each generic plan must find its rows
 * through the primary key.
 */
let db: TestDb
let client: pg.PoolClient
let ids: string[]

beforeAll(async () => {
  db = await createTestDb()
  const tasks = `"${db.schema}".tasks`
  await db.pool.query(`insert into ${tasks} (name) select 'plans.noop' from generate_series(1, 3000)`)
  await db.pool.query(`analyze ${tasks}`)
  const token = randomUUID()
  const res = await db.pool.query<{ id: string }>(
    `update ${tasks} set state = 'running', attempt = 1, lease_expires_at = now() + interval '1 hour', dispatch_token = $1
      where id in (select id from ${tasks} order by id limit 1000) returning id`,
    [token],
  )
  ids = res.rows.map((r) => String(r.id))
  client = await db.pool.connect()
  await client.query('set plan_cache_mode = force_generic_plan')
})

afterAll(async () => {
  client?.release()
  await db?.cleanup()
})

async function genericPlan(file: string, values: unknown[]): Promise<string> {
  const name = `plan_${file.replace(/\W/g, '_')}`
  await client.query({ name, text: loadSql(file, db.schema), values }) // prepares it
  const literals = values.map((v) => (typeof v === 'number' ? String(v) : `'${String(v)}'`))
  const args = literals.length > 0 ? `(${literals.join(', ')})` : ''
  const res = await client.query<{ 'QUERY PLAN': string }>(`explain (costs off) execute ${name}${args}`)
  return res.rows.map((r) => r['QUERY PLAN']).join('\n')
}

describe('generic plans of the batch writes (0005)', () => {
  const batch = () => ids.slice(0, 500)

  it.each([
    ['task-claim-batch.sql', () => [plainArray(batch()), plainArray(batch().map(() => randomUUID())), 60_000, 'w']],
    ['task-heartbeat-batch.sql', () => [plainArray(batch()), plainArray(batch().map(() => 1)), 60_000]],
    ['task-hand-back.sql', () => [plainArray(batch()), plainArray(batch().map(() => 1)), 'handed back', 'shutdown']],
    ['task-defer-no-handler.sql', () => [plainArray(batch()), plainArray(batch().map(() => 1)), 'w']],
  ] as const)('%s finds its rows by primary key', async (file, values) => {
    const plan = await genericPlan(file, [...values()])
    expect(plan).toContain('tasks_pkey')
    expect(plan).not.toMatch(/tasks_(running_lease|dispatched)_idx/)
  })

  it('task-finish-batch.sql finds its rows by primary key', async () => {
    const b = batch()
    const plan = await genericPlan('task-finish-batch.sql', [
      plainArray(b),
      plainArray(b.map(() => 1)),
      plainArray(b.map(() => 'succeeded')),
      `{${b.map(() => 'null').join(',')}}`,
      `{${b.map(() => 'NULL').join(',')}}`,
      plainArray(b.map(() => 0)),
    ])
    expect(plan).toContain('tasks_pkey')
    expect(plan).not.toMatch(/tasks_(running_lease|dispatched)_idx/)
    // Releasing dependents (0008) reads edges of the finished ids only, never a whole table.
    expect(plan).not.toMatch(/Seq Scan on (tasks|task_dependencies)/)
    expect(plan).not.toContain('tasks_waiting_idx')
    expect(plan).toContain('task_dependencies_depends_on_idx')
  })

  it('the sweeper finds lost tasks by lease and by silent worker through indexes (0011)', async () => {
    const plan = await genericPlan('sweeper-reclaim-lost.sql', [100, 0])
    expect(plan).toContain('tasks_running_lease_idx')
    expect(plan).toContain('tasks_running_worker_idx')
    expect(plan).not.toMatch(/Seq Scan on tasks/)
  })

  it("the Postgres lane's claim reads the pending and dispatched indexes, never a whole table (0011)", async () => {
    const plan = await genericPlan('task-claim-due.sql', ['{plans_lane_a,plans_lane_b}', 10, 30_000, 'w', 1000, '{1,2}', randomUUID(), '{3,4}'])
    expect(plan).toContain('tasks_pending_idx')
    expect(plan).toContain('tasks_dispatched_idx')
    expect(plan).toContain('tasks_running_worker_idx')
    expect(plan).not.toMatch(/Seq Scan on tasks/)
  })

  it("the sweeper's stale-dispatch scan reads only the running and dispatched indexes", async () => {
    const plan = await genericPlan('sweeper-redispatch-stale.sql', [30_000, 1000])
    expect(plan).toContain('tasks_running_lease_idx')
    expect(plan).toContain('tasks_dispatched_idx')
    expect(plan).not.toMatch(/Seq Scan on tasks/)
  })
})

describe('the index of delayed tasks (0007)', () => {
  it('holds no task that was due at enqueue, so the hot path writes nothing to it', async () => {
    const t = defineTask({ name: 'plans.delayed', payload: z.object({}), run: () => {} })
    const now = await db.tr.enqueue(t, {})
    const many = await db.tr.enqueueMany(Array.from({ length: 3 }, () => ({ task: t, payload: {} })))
    const later = await db.tr.enqueue(t, {}, { delayMs: 60_000 })
    const res = await db.pool.query<{ id: string; delayed: boolean }>(
      `select id::text, run_at > created_at as delayed from "${db.schema}".tasks where id = any($1::bigint[])`,
      [[now.id, ...many.ids, later.id]],
    )
    const delayed = Object.fromEntries(res.rows.map((r) => [r.id, r.delayed]))
    expect(delayed).toEqual({ [now.id]: false, ...Object.fromEntries(many.ids.map((id) => [id, false])), [later.id]: true })
  })

  it("the sweeper's walk over waiting tasks (0008) reads tasks_waiting_idx", async () => {
    const plan = await genericPlan('sweeper-settle-waiting.sql', ['0', 1000])
    expect(plan).toContain('tasks_waiting_idx')
    expect(plan).not.toMatch(/Seq Scan on tasks/)
  })

  it("the relay's next-due probe reads it", async () => {
    const plan = await genericPlan('relay-next-due.sql', [])
    expect(plan).toContain('tasks_delayed_idx')
  })
})

describe('generic plans made while the table was small (a new install)', () => {
  // Made after five calls on a table of 100 rows, a generic plan that may
  // seq-scan keeps doing so as the table grows, until autovacuum's first
  // ANALYZE: the relay's dispatch took 250 ms per round at 60,000 rows. The
  // relay's and worker's batch statements run on pools that never plan one.
  let small: TestDb
  const z = '00000000-0000-0000-0000-000000000000'
  const statements: ReadonlyArray<[string, string]> = [
    ['relay-dispatch-batch.sql', `(gen_random_uuid(), '{}', 0, 'none', 1000000, '')`],
    ['task-claim-batch.sql', `('{1,2}', '{${z},${z}}', 60000, 'w')`],
    ['task-heartbeat-batch.sql', `('{1,2}', '{1,1}', 60000)`],
    ['task-hand-back.sql', `('{1,2}', '{1,1}', 'handed back', 'shutdown')`],
    ['task-defer-no-handler.sql', `('{1,2}', '{1,1}', 'w')`],
    ['task-finish-batch.sql', `('{1,2}', '{1,1}', '{succeeded,succeeded}', '{null,null}', '{null,null}', '{0,0}')`],
    ['relay-revert-dispatch.sql', `('{1,2}', '${z}')`],
    ['sweeper-settle-waiting.sql', `('0', 1000)`],
  ]

  beforeAll(async () => {
    small = await createTestDb()
    await small.pool.query(`insert into "${small.schema}".tasks (name) select 'plans.small' from generate_series(1, 100)`)
  })

  afterAll(async () => {
    await small?.cleanup()
  })

  async function plans(setup?: string): Promise<Map<string, string>> {
    const c = new pg.Client({ connectionString: databaseUrl() })
    await c.connect()
    try {
      if (setup) await c.query(setup)
      await c.query('set plan_cache_mode = force_generic_plan')
      const out = new Map<string, string>()
      for (const [file, args] of statements) {
        const name = file.replace(/\W/g, '_')
        await c.query(`prepare ${name} as ${loadSql(file, small.schema).replaceAll(':batch_size', '500')}`)
        const res = await c.query<{ 'QUERY PLAN': string }>(`explain (costs off) execute ${name}${args}`)
        out.set(file, res.rows.map((r) => r['QUERY PLAN']).join('\n'))
      }
      return out
    } finally {
      await c.end()
    }
  }

  it('would seq-scan the tasks table on a plain connection', async () => {
    const plain = await plans()
    expect(plain.get('task-claim-batch.sql')).toMatch(/Seq Scan on tasks/)
    expect(plain.get('relay-dispatch-batch.sql')).toMatch(/Seq Scan on tasks/)
    expect(plain.get('sweeper-settle-waiting.sql')).toMatch(/Seq Scan on tasks/)
  })

  it('finds rows by index on the batch pools, for every batch statement', async () => {
    for (const [file, plan] of await plans(BATCH_SESSION_SQL)) {
      expect(plan, file).not.toMatch(/Seq Scan on tasks/)
      expect(plan, file).toContain('tasks_pkey')
    }
  })

  it('cost less than JIT compiles for, even with JIT left on: no scan carries the disabled cost', async () => {
    // A statement reading a table with no usable index (0019's listeners, once)
    // kept its Seq Scan with enable_seqscan off, at a cost of 1e10: every
    // execution JIT-compiled for 600 ms (the outcome batch took 600 ms, not 2).
    const c = new pg.Client({ connectionString: databaseUrl() })
    await c.connect()
    try {
      await c.query('set enable_seqscan = off; set plan_cache_mode = force_generic_plan')
      const threshold = Number((await c.query<{ v: string }>("select current_setting('jit_above_cost') as v")).rows[0]!.v)
      const claimDue = `('{default}', 10, 60000, 'w', 5000, '{}', '${z}', '{}')`
      for (const [file, args] of [...statements, ['task-claim-due.sql', claimDue] as const]) {
        const name = `jit_${file.replace(/\W/g, '_')}`
        await c.query(`prepare ${name} as ${loadSql(file, small.schema).replaceAll(':batch_size', '500')}`)
        const res = await c.query<{ 'QUERY PLAN': Array<{ Plan: { 'Total Cost': number } }> }>(`explain (format json) execute ${name}${args}`)
        expect(res.rows[0]!['QUERY PLAN'][0]!.Plan['Total Cost'], file).toBeLessThan(threshold)
      }
    } finally {
      await c.end()
    }
  })

  async function settings(executor: { query: TaskRelay['executor']['query'] }) {
    const res = await executor.query<{ seqscan: string; sync: string; app: string; jit: string }>(
      `select current_setting('enable_seqscan') as seqscan, current_setting('synchronous_commit') as sync, current_setting('jit') as jit,
              current_setting('application_name') as app`,
    )
    return res.rows[0]!
  }

  it("is what the relay's and worker's executors use", async () => {
    expect(await settings(small.tr.batchExecutor)).toMatchObject({ seqscan: 'off', sync: 'on', jit: 'off' })
    expect(await settings(small.tr.transitionExecutor)).toMatchObject({ seqscan: 'off', sync: 'off', jit: 'off' })
    expect(await settings(small.tr.executor)).toMatchObject({ seqscan: 'on', sync: 'on' })
  })

  it("copies the caller's pool, with its own per-connection setup", async () => {
    const pool = new pg.Pool({
      connectionString: databaseUrl(),
      max: 2,
      onConnect: async (client) => void (await client.query("set application_name = 'callers-hook'")),
    })
    const connected: unknown[] = []
    pool.on('connect', (client) => connected.push(client))
    const tr = new TaskRelay({ db: pool, schema: small.schema })
    try {
      expect(await settings(tr.batchExecutor)).toMatchObject({ seqscan: 'off', app: 'callers-hook' })
      expect(await settings(tr.transitionExecutor)).toMatchObject({ seqscan: 'off', sync: 'off', app: 'callers-hook' })
      // The caller's 'connect' listeners saw the new pools' connections.
      expect(connected.length).toBeGreaterThanOrEqual(2)
    } finally {
      await tr.close()
      await pool.end()
    }
  })
})

describe('plainArray', () => {
  it('builds the literal Postgres parses back into the same values', async () => {
    const res = await db.pool.query<{ ids: string[]; attempts: number[]; empty: number[] }>(
      'select $1::bigint[]::text[] as ids, $2::int[] as attempts, $3::int[] as empty',
      [plainArray(['9000000000000000001', '42']), plainArray([1, 2, 3]), plainArray([])],
    )
    expect(res.rows[0]).toEqual({ ids: ['9000000000000000001', '42'], attempts: [1, 2, 3], empty: [] })
  })
})
