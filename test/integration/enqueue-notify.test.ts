import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import pg from 'pg'
import { databaseUrl, waitUntil } from '../support/db.ts'
import { enqueueStatement } from '../../src/db/sql.ts'
import { client, db, registerIdleRelay, rowCount, useEnqueueDb } from '../support/enqueue-db.ts'
import { welcome } from '../support/enqueue-tasks.ts'

/**
 * NOTIFY <schema>.task_ready: one per committed enqueue statement, and only when an idle relay listens.
 * Real Postgres, one schema per file, rows deleted before each test (test/support/enqueue-db.ts).
 */

useEnqueueDb()

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
      Array(n).fill(''),
      null, // no task traced
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
