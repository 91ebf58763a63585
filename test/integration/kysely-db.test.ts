import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest'
import pg from 'pg'
import { Kysely, PostgresDialect, type Generated } from 'kysely'
import { pino } from 'pino'
import { z } from 'zod'
import { databaseUrl, redisUrl, uniqueSchema, waitUntil } from '../support/db.ts'
import { Relay, Scheduler, Sweeper, TaskRelay, Worker, defineTask, type StandardSchemaV1 } from '../../src/index.ts'
import type { Clock } from '../../src/clock.ts'

/**
 * `new TaskRelay({ db: kysely })` runs everything: migrate, enqueue in a
 * Kysely transaction, relay + worker + sweeper, waitFor, the scheduler and
 * schedules.runNow. Kysely hides its pg client, so whatever listens polls
 * instead, and says so once in the log.
 */

interface Db {
  users: { id: Generated<number>; email: string }
}

const schema = uniqueSchema('kys')
const pool = new pg.Pool({ connectionString: databaseUrl(), max: 8 })
pool.on('error', () => {})
const kysely = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) })
const logLines: Array<{ msg: string; component?: string; pollMs?: number }> = []
const logger = pino(
  { level: 'info' },
  new Writable({
    write(chunk, _enc, done) {
      logLines.push(JSON.parse(String(chunk)))
      done()
    },
  }),
)
const tr = new TaskRelay({ db: kysely, schema, logger })
const keyPrefix = `kys-${schema}`

const add = defineTask({
  name: 'kysely.add',
  queue: 'kys',
  payload: z.object({ a: z.number(), b: z.number() }),
  run: ({ a, b }) => ({ sum: a + b }),
})
const ping = defineTask({ name: 'kysely.ping', queue: 'kys', payload: z.object({}), schedules: [{ name: 'kysely-every-minute', every: '1m' }], run() {} })

/** A payload schema that is no zod: Standard Schema by hand, whose output differs from its input. */
const shoutSchema: StandardSchemaV1<{ word: string }, { loud: string }> = {
  '~standard': {
    version: 1,
    vendor: 'test',
    validate: async (v) =>
      typeof (v as { word?: unknown })?.word === 'string' ? { value: { loud: (v as { word: string }).word.toUpperCase() } } : { issues: [{ message: 'word: expected a string' }] },
  },
}
const shout = defineTask({ name: 'kysely.shout', queue: 'kys', payload: shoutSchema, run: ({ loud }) => `${loud}!` })

class FakeClock implements Clock {
  current = new Date()
  now(): Date {
    return new Date(this.current)
  }
}

const stops: Array<() => Promise<void>> = []

beforeAll(async () => {
  await pool.query(`create schema "${schema}"; create table "${schema}".users (id integer generated always as identity primary key, email text not null)`)
})
afterAll(async () => {
  for (const stop of stops.splice(0).reverse()) await stop()
  await tr.close()
  await pool.query(`drop schema if exists "${schema}" cascade`)
  await kysely.destroy()
})

const tasksNamed = async (name: string) =>
  (await pool.query<{ id: string; state: string; idempotency_key: string | null }>(`select id::text, state, idempotency_key from "${schema}".tasks where name = $1`, [name])).rows

describe('TaskRelay over a Kysely instance', () => {
  it('migrates (under the advisory lock on one Kysely connection), and again is a no-op', async () => {
    const first = await tr.migrate()
    expect(first.applied.length).toBeGreaterThan(0)
    expect(await tr.migrate()).toEqual({ applied: [], current: first.current })
    await expect(tr.assertSchemaCurrent()).resolves.toBeUndefined()
  })

  it('enqueues in a Kysely transaction; relay, worker and sweeper run it; waitFor resolves with the typed result', async () => {
    const redis = redisUrl()
    const relay = new Relay(tr, { redis, keyPrefix })
    const worker = new Worker(tr, { redis, keyPrefix, queues: ['kys'], tasks: [add, ping, shout], shutdownGraceMs: 0 })
    const sweeper = new Sweeper(tr)
    for (const service of [relay, worker, sweeper]) {
      await service.start()
      stops.push(() => service.stop())
    }
    const rolledBack = kysely.transaction().execute(async (trx) => {
      await trx.withSchema(schema).insertInto('users').values({ email: 'gone@example.com' }).execute()
      await tr.enqueue(trx, add, { a: 1, b: 1 })
      throw new Error('roll back')
    })
    await expect(rolledBack).rejects.toThrow('roll back')
    const id = await kysely.transaction().execute(async (trx) => {
      await trx.withSchema(schema).insertInto('users').values({ email: 'ada@example.com' }).execute()
      return (await tr.enqueue(trx, add, { a: 2, b: 3 })).id
    })
    const done = await tr.waitFor(add, id, { timeoutMs: 20_000 })
    expectTypeOf(done.result).toEqualTypeOf<{ sum: number } | null>()
    expect(done).toMatchObject({ id, state: 'succeeded', result: { sum: 5 }, payload: { a: 2, b: 3 } })
    expect((await tasksNamed('kysely.add')).map((t) => t.id)).toEqual([id])
    expect(await sweeper.runOnce()).toMatchObject({ redispatched: 0, leasesReclaimed: 0 })
    // The worker validates with the task's own (async, non-zod) schema and hands the handler its output.
    const shouted = await tr.enqueue(shout, { word: 'hi' })
    expect((await tr.waitFor(shout, shouted.id, { timeoutMs: 20_000 })).result).toBe('HI!')
    // Said once per listening component, at its start.
    const polling = logLines.filter((l) => l.msg.includes('cannot LISTEN'))
    expect(polling.map((l) => l.component).sort()).toEqual(['relay', 'worker', undefined].sort()) // the worker's Postgres lane listens too
  })

  it('the scheduler syncs its declared schedules and fires them (woken by polling, not NOTIFY)', async () => {
    const clock = new FakeClock()
    const scheduler = new Scheduler(tr, { tasks: [ping] }, { clock })
    await scheduler.start()
    stops.push(() => scheduler.stop())
    expect(await tasksNamed('kysely.ping')).toEqual([])
    clock.current = new Date(clock.current.getTime() + 61_000)
    const fired = await waitUntil(async () => (await tasksNamed('kysely.ping'))[0], { what: 'the schedule to fire' })
    expect(fired.idempotency_key).toMatch(/^schedule:kysely-every-minute:/)
    expect(logLines.some((l) => l.component === 'scheduler' && l.msg.includes('cannot LISTEN'))).toBe(true)
  })

  it('schedules.runNow enqueues in a Kysely transaction', async () => {
    await tr.schedules.upsert({ name: 'kysely-manual', task: add, every: '1h', payload: { a: 20, b: 22 } })
    const { taskId } = await tr.schedules.runNow('kysely-manual', { tasks: [add] })
    const done = await tr.waitFor(add, taskId, { timeoutMs: 20_000 })
    expect(done.result).toEqual({ sum: 42 })
    // Its result would have another type: refused at once, not after the task finished.
    await expect(tr.waitFor(ping, taskId)).rejects.toThrow(/task \d+ is a "kysely.add" task, not "kysely.ping"/)
  })
})
