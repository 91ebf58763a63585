import pg from 'pg'
import { z } from 'zod'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createTestDb, databaseUrl, waitUntil, type TestDb } from '../support/db.ts'
import { defineTask } from '../../src/define-task.ts'
import { TaskRelay } from '../../src/task-relay.ts'
import { Scheduler, type SchedulerOptions, type SchedulerRunResult } from '../../src/scheduler/scheduler.ts'
import { ScheduleError, ScheduleNotFoundError } from '../../src/errors.ts'
import {
  scheduleGet,
  scheduleList,
  schedulePause,
  scheduleRemove,
  scheduleResume,
  scheduleRunNow,
  scheduleUpsert,
  syncTaskSchedules,
} from '../../src/scheduler/schedules.ts'
import type { Clock } from '../../src/clock.ts'

const report = defineTask({
  name: 'sched.report',
  payload: z.object({ kind: z.string() }),
  queue: 'reports',
  run() {},
})
const ping = defineTask({ name: 'sched.ping', payload: z.object({}), run() {} })
const TASKS = [report, ping]

class FakeClock implements Clock {
  current: Date
  constructor(iso: string) {
    this.current = new Date(iso)
  }
  now(): Date {
    return new Date(this.current)
  }
  set(iso: string): void {
    this.current = new Date(iso)
  }
}

let db: TestDb
const started: Scheduler[] = []

beforeAll(async () => {
  db = await createTestDb()
})
afterAll(async () => {
  await db.cleanup()
})
beforeEach(async () => {
  await db.pool.query(`truncate "${db.schema}".schedules, "${db.schema}".task_dependencies, "${db.schema}".tasks`)
})
afterEach(async () => {
  // Every started scheduler must be stopped, even when a test failed.
  await Promise.all(started.splice(0).map((s) => s.stop()))
})

function scheduler(options: Partial<SchedulerOptions> = {}, clock?: Clock, tr: TaskRelay = db.tr): Scheduler {
  return new Scheduler(tr, { tasks: TASKS, ...options }, clock ? { clock } : {})
}

async function scheduleCount(): Promise<number> {
  const res = await db.pool.query<{ n: number }>(`select count(*)::int as n from "${db.schema}".schedules`)
  return res.rows[0]!.n
}

interface FiredTask {
  id: string
  name: string
  queue: string
  priority: number
  max_attempts: number
  payload: unknown
  run_at: Date
  idempotency_key: string | null
}

async function tasksOf(schedule: string): Promise<FiredTask[]> {
  const res = await db.pool.query<FiredTask>(
    `select id::text, name, queue, priority, max_attempts, payload, run_at, idempotency_key
       from "${db.schema}".tasks where idempotency_key like $1 order by run_at, id`,
    [`schedule:${schedule}:%`],
  )
  return res.rows
}

const runAts = (rows: FiredTask[]) => rows.map((r) => r.run_at.toISOString())

describe('schedules as data', () => {
  it('creates, reports unchanged, updates without moving the next fire time, and recomputes it when the timing changes', async () => {
    const now = new Date('2025-06-01T10:00:30Z')
    const created = await scheduleUpsert(db.tr, { name: 'hourly-report', task: report, cron: '0 * * * *', payload: { kind: 'sales' } }, { now })
    expect(created.status).toBe('created')
    expect(created.schedule).toMatchObject({
      name: 'hourly-report',
      task: 'sched.report',
      cron: '0 * * * *',
      everyMs: null,
      timezone: 'UTC',
      payload: { kind: 'sales' },
      enabled: true,
      misfire: 'skip',
      overlap: true,
      source: 'manual',
      nextFireAt: new Date('2025-06-01T11:00:00Z'),
    })

    const again = await scheduleUpsert(db.tr, { name: 'hourly-report', task: report, cron: '0 * * * *', payload: { kind: 'sales' } }, { now: new Date('2025-06-01T12:30:00Z') })
    expect(again.status).toBe('unchanged')
    expect(again.schedule.nextFireAt).toEqual(new Date('2025-06-01T11:00:00Z'))

    const payloadChanged = await scheduleUpsert(
      db.tr,
      { name: 'hourly-report', task: report, cron: '0 * * * *', payload: { kind: 'ops' }, options: { priority: 5 } },
      { now: new Date('2025-06-01T12:30:00Z') },
    )
    expect(payloadChanged.status).toBe('updated')
    expect(payloadChanged.schedule).toMatchObject({ payload: { kind: 'ops' }, options: { priority: 5 }, nextFireAt: new Date('2025-06-01T11:00:00Z') })

    const timingChanged = await scheduleUpsert(
      db.tr,
      { name: 'hourly-report', task: 'sched.report', every: '90s', payload: { kind: 'ops' } },
      { tasks: TASKS, now: new Date('2025-06-01T12:30:00Z') },
    )
    expect(timingChanged.status).toBe('updated')
    expect(timingChanged.schedule).toMatchObject({ cron: null, everyMs: 90_000, nextFireAt: new Date('2025-06-01T12:31:30Z') })
    expect(await scheduleCount()).toBe(1)
  })

  it('lists, pauses, resumes from now (no catch-up for paused time), and removes', async () => {
    await scheduleUpsert(db.tr, { name: 'b-ping', task: ping, every: '1m' }, { now: new Date('2025-06-01T10:00:00Z') })
    await scheduleUpsert(db.tr, { name: 'a-report', task: report, cron: '0 3 * * *', timezone: 'Europe/Berlin', payload: { kind: 'x' } })
    expect((await scheduleList(db.tr)).map((s) => s.name)).toEqual(['a-report', 'b-ping'])
    expect((await scheduleList(db.tr, { task: 'sched.ping' })).map((s) => s.name)).toEqual(['b-ping'])

    expect((await schedulePause(db.tr, 'b-ping')).enabled).toBe(false)
    const resumed = await scheduleResume(db.tr, 'b-ping', { now: new Date('2025-06-03T08:00:00Z') })
    expect(resumed).toMatchObject({ enabled: true, nextFireAt: new Date('2025-06-03T08:01:00Z') })

    expect(await scheduleRemove(db.tr, 'b-ping')).toBe(true)
    expect(await scheduleRemove(db.tr, 'b-ping')).toBe(false)
    expect(await scheduleGet(db.tr, 'b-ping')).toBeNull()
    await expect(schedulePause(db.tr, 'nope')).rejects.toBeInstanceOf(ScheduleNotFoundError)
    await expect(scheduleResume(db.tr, 'nope')).rejects.toBeInstanceOf(ScheduleNotFoundError)
  })

  it('run-now enqueues the task once with the schedule payload and options, leaving the fire times alone', async () => {
    const { schedule } = await scheduleUpsert(db.tr, { name: 'nightly', task: report, cron: '0 2 * * *', payload: { kind: 'n' }, options: { queue: 'nightly', maxAttempts: 7 } })
    const { taskId } = await scheduleRunNow(db.tr, 'nightly', { tasks: TASKS })
    const task = await db.tr.getTask(taskId)
    expect(task).toMatchObject({ name: 'sched.report', queue: 'nightly', maxAttempts: 7, payload: { kind: 'n' }, state: 'pending' })
    const after = await scheduleGet(db.tr, 'nightly')
    expect(after).toMatchObject({ lastTaskId: taskId, nextFireAt: schedule.nextFireAt, lastFireAt: null })
    await expect(scheduleRunNow(db.tr, 'nightly', { tasks: [ping] })).rejects.toThrow(/unknown task "sched.report"/)
  })

  it('NOTIFYs schedules_changed on writes, but not on a scheduler advancing next_fire_at', async () => {
    const listener = new pg.Client({ connectionString: databaseUrl() })
    await listener.connect()
    const heard: string[] = []
    listener.on('notification', (m) => heard.push(m.channel))
    try {
      await listener.query(`listen "${db.tr.channels.schedulesChanged}"`)
      const clock = new FakeClock('2025-06-01T10:00:00Z')
      await scheduleUpsert(db.tr, { name: 'tick', task: ping, every: '1s' }, { now: clock.now() })
      await waitUntil(() => heard.length === 1, { what: 'NOTIFY after insert' })

      clock.set('2025-06-01T10:00:01Z')
      expect((await scheduler({}, clock).runOnce()).fired).toBe(1)
      // A later write notifies; notifications arrive in commit order, so when
      // this one is here, one from the fire would be here too.
      await schedulePause(db.tr, 'tick')
      await waitUntil(() => heard.length >= 2, { what: 'NOTIFY after pause' })
      expect(heard).toEqual([db.tr.channels.schedulesChanged, db.tr.channels.schedulesChanged])
    } finally {
      await listener.end()
    }
  })
})

describe('bad input: a clear error naming the schedule, and nothing written', () => {
  const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
    ['invalid cron', () => scheduleUpsert(db.tr, { name: 'bad-cron', task: ping, cron: '0 61 * * *' }), /schedule "bad-cron"[\s\S]*cron: invalid cron expression "0 61 \* \* \*".*hour: 61/],
    ['cron with too many fields', () => scheduleUpsert(db.tr, { name: 'bad-fields', task: ping, cron: '* * * * * * *' }), /schedule "bad-fields"[\s\S]*got 7/],
    ['unknown time zone', () => scheduleUpsert(db.tr, { name: 'bad-tz', task: ping, cron: '0 3 * * *', timezone: 'Europe/Atlantis' }), /schedule "bad-tz"[\s\S]*timezone: unknown time zone "Europe\/Atlantis"/],
    ['interval zero', () => scheduleUpsert(db.tr, { name: 'bad-zero', task: ping, every: 0 }), /schedule "bad-zero"[\s\S]*every: must be at least 1000 ms \(1s\), got 0 ms/],
    ['interval below the minimum', () => scheduleUpsert(db.tr, { name: 'bad-fast', task: ping, every: '500ms' }), /schedule "bad-fast"[\s\S]*every: must be at least 1000 ms/],
    ['unreadable interval', () => scheduleUpsert(db.tr, { name: 'bad-every', task: ping, every: 'often' }), /schedule "bad-every"[\s\S]*every: cannot read "often"/],
    ['payload failing the schema', () => scheduleUpsert(db.tr, { name: 'bad-payload', task: report, cron: '0 3 * * *', payload: { kind: 42 } as never }), /schedule "bad-payload"[\s\S]*payload\.kind: .*string.*\(schema of task "sched.report"\)/],
    ['missing payload', () => scheduleUpsert(db.tr, { name: 'no-payload', task: report, cron: '0 3 * * *' }), /schedule "no-payload"[\s\S]*payload\.kind/],
    ['unknown task name', () => scheduleUpsert(db.tr, { name: 'bad-task', task: 'sched.nope', cron: '0 3 * * *' }, { tasks: TASKS }), /schedule "bad-task"[\s\S]*task: unknown task "sched.nope"/],
    ['cron and every', () => scheduleUpsert(db.tr, { name: 'both', task: ping, cron: '0 3 * * *', every: '1m' }), /schedule "both"[\s\S]*give cron or every, not both/],
    ['neither cron nor every', () => scheduleUpsert(db.tr, { name: 'neither', task: ping }), /schedule "neither"[\s\S]*give cron .* or every/],
    ['timezone with every', () => scheduleUpsert(db.tr, { name: 'tz-every', task: ping, every: '1m', timezone: 'Europe/Berlin' }), /schedule "tz-every"[\s\S]*timezone: applies to cron schedules only/],
    ['bad misfire policy', () => scheduleUpsert(db.tr, { name: 'bad-misfire', task: ping, every: '1m', misfire: 'later' as never }), /schedule "bad-misfire"[\s\S]*misfire:/],
    ['bad option', () => scheduleUpsert(db.tr, { name: 'bad-option', task: ping, every: '1m', options: { priority: 5000 } }), /schedule "bad-option"[\s\S]*options\.priority/],
    ['unknown key', () => scheduleUpsert(db.tr, { name: 'typo', task: ping, every: '1m', timezon: 'UTC' } as never), /schedule "typo"[\s\S]*unknown option "timezon"/],
    ['invalid name', () => scheduleUpsert(db.tr, { name: 'has space', task: ping, every: '1m' }), /schedule "has space"[\s\S]*name: use 1-200 characters/],
  ]

  it.each(cases)('%s', async (_what, call, message) => {
    const err = await call().then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(ScheduleError)
    expect((err as ScheduleError).code).toBe('SCHEDULE_INVALID')
    expect((err as Error).message).toMatch(message)
    expect(await scheduleCount()).toBe(0)
  })

  it('a duplicate schedule name with a different definition in defineTask fails the whole sync', async () => {
    const a = defineTask({ name: 'dup.a', payload: z.object({}), run() {}, schedules: [{ name: 'nightly', cron: '0 2 * * *' }, { name: 'fine', every: '1h' }] })
    const b = defineTask({ name: 'dup.b', payload: z.object({}), run() {}, schedules: [{ name: 'nightly', cron: '0 3 * * *' }] })
    const err = await syncTaskSchedules(db.tr, [a, b]).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ScheduleError)
    expect((err as Error).message).toMatch(/schedule "nightly"[\s\S]*declared in tasks "dup.a" and "dup.b" with different definitions/)
    expect(() => new Scheduler(db.tr, { tasks: [a, b] })).toThrow(/schedule "nightly"/)
    expect(await scheduleCount()).toBe(0)
  })

  it('one bad declaration among good ones writes none of them, and the Scheduler refuses to construct', async () => {
    const good = defineTask({ name: 'decl.good', payload: z.object({}), run() {}, schedules: [{ name: 'good-1', every: '1m' }] })
    const bad = defineTask({ name: 'decl.bad', payload: z.object({ n: z.number() }), run() {}, schedules: [{ name: 'bad-1', every: '1m', payload: { n: 'x' } as never }] })
    await expect(syncTaskSchedules(db.tr, [good, bad])).rejects.toThrow(/schedule "bad-1"[\s\S]*payload\.n/)
    expect(() => new Scheduler(db.tr, { tasks: [good, bad] })).toThrow(ScheduleError)
    expect(await scheduleCount()).toBe(0)
  })

  it('the same declaration reached twice is not a conflict', async () => {
    const t = defineTask({ name: 'decl.same', payload: z.object({}), run() {}, schedules: [{ name: 'same', every: '1m' }] })
    expect((await syncTaskSchedules(db.tr, [t, t])).created).toEqual(['same'])
  })
})

describe('Scheduler ticks (injected clock, no waiting)', () => {
  it('fires a due schedule once, with the stored payload and options, keyed by fire time', async () => {
    const clock = new FakeClock('2025-06-01T10:00:30Z')
    await scheduleUpsert(db.tr, { name: 'minutely', task: report, cron: '0 * * * * *', payload: { kind: 'm' }, options: { priority: 3 } }, { now: clock.now() })
    const s = scheduler({}, clock)
    expect((await s.runOnce()).fired).toBe(0)

    clock.set('2025-06-01T10:01:00.200Z')
    const result = await s.runOnce()
    expect(result).toMatchObject({ claimed: 1, fired: 1, skippedOverlap: 0, failed: 0, nextFireAt: new Date('2025-06-01T10:02:00Z') })
    expect(result.dueInMs).toBeCloseTo(59_800, -1)
    const rows = await tasksOf('minutely')
    expect(rows).toEqual([
      expect.objectContaining({
        name: 'sched.report',
        queue: 'reports',
        priority: 3,
        payload: { kind: 'm' },
        run_at: new Date('2025-06-01T10:01:00Z'),
        idempotency_key: 'schedule:minutely:2025-06-01T10:01:00.000Z',
      }),
    ])
    expect(result.fires).toEqual([{ schedule: 'minutely', fireAt: new Date('2025-06-01T10:01:00Z'), taskId: rows[0]!.id }])
    expect(await s.runOnce()).toMatchObject({ claimed: 0, fired: 0 })
    expect(await scheduleGet(db.tr, 'minutely')).toMatchObject({ lastFireAt: new Date('2025-06-01T10:01:00Z'), lastTaskId: rows[0]!.id })
  })

  it('misfire policies after simulated downtime: skip fires the latest, all fires each (capped), none fires nothing missed', async () => {
    const clock = new FakeClock('2025-06-01T12:00:30Z')
    for (const misfire of ['skip', 'all', 'none'] as const) {
      await scheduleUpsert(db.tr, { name: `down-${misfire}`, task: ping, cron: '0 * * * * *', misfire }, { now: clock.now() })
    }
    await scheduleUpsert(db.tr, { name: 'down-all-capped', task: ping, cron: '0 * * * * *', misfire: 'all', overlap: true }, { now: clock.now() })
    // Down for ten minutes: 12:01 .. 12:10 were missed.
    clock.set('2025-06-01T12:10:30Z')
    const s = scheduler({ maxCatchUp: 100 }, clock)
    const capped = scheduler({ maxCatchUp: 4 }, clock)
    await s.runOnce()

    expect(runAts(await tasksOf('down-skip'))).toEqual(['2025-06-01T12:10:00.000Z'])
    expect(runAts(await tasksOf('down-all'))).toEqual(Array.from({ length: 10 }, (_, i) => `2025-06-01T12:${String(i + 1).padStart(2, '0')}:00.000Z`))
    expect(await tasksOf('down-none')).toEqual([])
    for (const misfire of ['skip', 'all', 'none']) {
      expect((await scheduleGet(db.tr, `down-${misfire}`))?.nextFireAt).toEqual(new Date('2025-06-01T12:11:00Z'))
    }
    // The capped scheduler found down-all-capped already handled by the first one.
    expect((await capped.runOnce()).fired).toBe(0)

    // The cap: a second downtime, now fired by the capped scheduler.
    await db.pool.query(`update "${db.schema}".schedules set next_fire_at = '2025-06-01T12:11:00Z' where name = 'down-all-capped'`)
    clock.set('2025-06-01T12:20:30Z')
    await capped.runOnce()
    expect(runAts(await tasksOf('down-all-capped')).slice(-4)).toEqual([
      '2025-06-01T12:17:00.000Z',
      '2025-06-01T12:18:00.000Z',
      '2025-06-01T12:19:00.000Z',
      '2025-06-01T12:20:00.000Z',
    ])
    expect(runAts(await tasksOf('down-all-capped'))).not.toContain('2025-06-01T12:16:00.000Z')

    // Back on time: every policy fires the next minute.
    clock.set('2025-06-01T12:21:00.050Z')
    await s.runOnce()
    for (const misfire of ['skip', 'all', 'none']) {
      expect(runAts(await tasksOf(`down-${misfire}`))).toContain('2025-06-01T12:21:00.000Z')
    }
  })

  it('a restart after downtime still applies the misfire policy: syncing an unchanged declaration keeps next_fire_at', async () => {
    const t = defineTask({ name: 'sched.declared', payload: z.object({}), run() {}, schedules: [{ name: 'declared-all', cron: '0 * * * * *', misfire: 'all' }] })
    const clock = new FakeClock('2025-06-01T12:00:30Z')
    expect(await syncTaskSchedules(db.tr, [t], { now: clock.now() })).toEqual({ created: ['declared-all'], updated: [], unchanged: [], removed: [] })
    clock.set('2025-06-01T12:05:30Z')
    expect(await syncTaskSchedules(db.tr, [t], { now: clock.now() })).toEqual({ created: [], updated: [], unchanged: ['declared-all'], removed: [] })
    await new Scheduler(db.tr, { tasks: [t] }, { clock }).runOnce()
    expect(await tasksOf('declared-all')).toHaveLength(5) // 12:01 .. 12:05
  })

  it('overlap: false skips fires while the previous task is unfinished, then fires again', async () => {
    const clock = new FakeClock('2025-06-01T10:00:00.500Z')
    await scheduleUpsert(db.tr, { name: 'exclusive', task: ping, every: '1m', overlap: false }, { now: clock.now() })
    const s = scheduler({}, clock)
    clock.set('2025-06-01T10:01:00.600Z')
    expect((await s.runOnce()).fired).toBe(1)
    const [first] = await tasksOf('exclusive')

    clock.set('2025-06-01T10:02:00.600Z')
    expect(await s.runOnce()).toMatchObject({ fired: 0, skippedOverlap: 1, nextFireAt: new Date('2025-06-01T10:03:00.500Z') })
    expect(await tasksOf('exclusive')).toHaveLength(1)

    await db.pool.query(`update "${db.schema}".tasks set state = 'succeeded', finished_at = now() where id = $1`, [first!.id])
    clock.set('2025-06-01T10:03:00.600Z')
    expect((await s.runOnce()).fired).toBe(1)
    expect(runAts(await tasksOf('exclusive'))).toEqual(['2025-06-01T10:01:00.500Z', '2025-06-01T10:03:00.500Z'])
  })

  it('DST: a daily 02:30 Europe/Berlin schedule across the spring-forward gap and the fall-back repeat', async () => {
    const clock = new FakeClock('2025-03-28T12:00:00Z')
    await scheduleUpsert(db.tr, { name: 'berlin-0230', task: ping, cron: '30 2 * * *', timezone: 'Europe/Berlin' }, { now: clock.now() })
    const s = scheduler({}, clock)
    // Tick every 15 minutes of simulated time through both transitions.
    const tickThrough = async (fromIso: string, toIso: string) => {
      for (let t = Date.parse(fromIso); t <= Date.parse(toIso); t += 15 * 60_000) {
        clock.set(new Date(t).toISOString())
        await s.runOnce()
      }
    }
    await tickThrough('2025-03-28T12:00:00Z', '2025-03-31T12:00:00Z')
    expect(runAts(await tasksOf('berlin-0230'))).toEqual([
      '2025-03-29T01:30:00.000Z', // 02:30 CET
      '2025-03-30T01:00:00.000Z', // 02:30 does not exist: 03:00 CEST
      '2025-03-31T00:30:00.000Z', // 02:30 CEST
    ])
    await db.pool.query(`update "${db.schema}".schedules set next_fire_at = '2025-10-25T00:30:00Z' where name = 'berlin-0230'`)
    await tickThrough('2025-10-24T12:00:00Z', '2025-10-27T12:00:00Z')
    expect(runAts(await tasksOf('berlin-0230')).slice(3)).toEqual([
      '2025-10-25T00:30:00.000Z', // 02:30 CEST
      '2025-10-26T00:30:00.000Z', // the first 02:30 only (CEST), not 01:30Z (CET)
      '2025-10-27T01:30:00.000Z', // 02:30 CET
    ])
  })

  it('only claims schedules of its own tasks', async () => {
    const clock = new FakeClock('2025-06-01T10:00:00Z')
    await scheduleUpsert(db.tr, { name: 'for-report', task: report, every: '1m', payload: { kind: 'k' } }, { now: clock.now() })
    await scheduleUpsert(db.tr, { name: 'for-ping', task: ping, every: '1m' }, { now: clock.now() })
    clock.set('2025-06-01T10:01:00.010Z')
    const pingOnly = new Scheduler(db.tr, { tasks: [ping] }, { clock })
    expect((await pingOnly.runOnce()).fires.map((f) => f.schedule)).toEqual(['for-ping'])
    expect(await tasksOf('for-report')).toEqual([])
  })

  it('a stored payload the task schema no longer accepts skips the fire and records why', async () => {
    const clock = new FakeClock('2025-06-01T10:00:00Z')
    await scheduleUpsert(db.tr, { name: 'stale-payload', task: report, every: '1m', payload: { kind: 'k' } }, { now: clock.now() })
    await db.pool.query(`update "${db.schema}".schedules set payload = '{"kind": 1}' where name = 'stale-payload'`)
    clock.set('2025-06-01T10:01:00.010Z')
    expect(await scheduler({}, clock).runOnce()).toMatchObject({ fired: 0, failed: 1 })
    const row = await scheduleGet(db.tr, 'stale-payload')
    expect(row).toMatchObject({ enabled: true, nextFireAt: new Date('2025-06-01T10:02:00Z') })
    expect(row?.lastError).toMatch(/payload for task "sched.report" is invalid/)
  })

  it('rows written by hand in SQL: next_fire_at is computed on the next tick; an unreadable definition is disabled with the reason', async () => {
    const clock = new FakeClock('2025-06-01T10:00:10Z')
    await db.pool.query(
      `insert into "${db.schema}".schedules (name, task_name, cron, timezone) values ('by-sql', 'sched.ping', '0 * * * *', 'UTC'), ('by-sql-bad', 'sched.ping', '0 * * * *', 'Mars/Base')`,
    )
    const s = scheduler({}, clock)
    expect(await s.runOnce()).toMatchObject({ claimed: 2, fired: 0, failed: 1 })
    expect(await scheduleGet(db.tr, 'by-sql')).toMatchObject({ enabled: true, nextFireAt: new Date('2025-06-01T11:00:00Z') })
    const bad = await scheduleGet(db.tr, 'by-sql-bad')
    expect(bad?.enabled).toBe(false)
    expect(bad?.lastError).toMatch(/disabled: definition cannot be evaluated.*Mars\/Base/)
  })
})

describe('declared schedules (defineTask) sync', () => {
  it('creates, keeps a pause across restarts, updates, and removes what the code no longer declares, leaving manual ones', async () => {
    const v1 = defineTask({ name: 'sync.t', payload: z.object({ n: z.number() }), run() {}, schedules: [{ name: 'sync-a', every: '1m', payload: { n: 1 } }, { name: 'sync-b', cron: '0 * * * *', payload: { n: 2 } }] })
    await scheduleUpsert(db.tr, { name: 'manual-one', task: v1, every: '5m', payload: { n: 3 } })
    expect(await syncTaskSchedules(db.tr, [v1])).toMatchObject({ created: ['sync-a', 'sync-b'], removed: [] })
    await schedulePause(db.tr, 'sync-a')
    expect(await syncTaskSchedules(db.tr, [v1])).toMatchObject({ created: [], updated: [], unchanged: ['sync-a', 'sync-b'] })
    expect((await scheduleGet(db.tr, 'sync-a'))?.enabled).toBe(false)

    const v2 = defineTask({ name: 'sync.t', payload: z.object({ n: z.number() }), run() {}, schedules: [{ name: 'sync-a', every: '1m', payload: { n: 10 } }] })
    expect(await syncTaskSchedules(db.tr, [v2])).toEqual({ created: [], updated: ['sync-a'], unchanged: [], removed: ['sync-b'] })
    expect((await scheduleList(db.tr)).map((s) => [s.name, s.source, s.enabled])).toEqual([
      ['manual-one', 'manual', true],
      ['sync-a', 'code', false],
    ])
  })
})

describe('Scheduler processes (real time)', () => {
  it('wakes on NOTIFY when a schedule is added, instead of sleeping until maxSleepMs', async () => {
    const s = scheduler({ maxSleepMs: 600_000 })
    started.push(s)
    await s.start()
    await scheduleUpsert(db.tr, { name: 'added-later', task: ping, every: '1s' })
    await waitUntil(async () => (await tasksOf('added-later')).length >= 2, { timeoutMs: 10_000, what: 'fires of a schedule added while the scheduler slept' })
    expect(s.lastSuccessAt).toBeInstanceOf(Date)
  })

  it('three replicas over many fire times of an every-second cron: exactly one task per fire time', async () => {
    const replicas: Array<{ tr: TaskRelay; pool: pg.Pool; scheduler: Scheduler }> = []
    let reportedFires = 0
    const sec = defineTask({ name: 'sched.every-second', payload: z.object({}), run() {}, schedules: [{ name: 'every-second', cron: '* * * * * *', misfire: 'none' }] })
    for (let i = 0; i < 3; i++) {
      const pool = new pg.Pool({ connectionString: databaseUrl(), max: 4 })
      pool.on('error', () => {})
      const tr = new TaskRelay({ db: pool, schema: db.schema })
      const s = new Scheduler(tr, { tasks: [sec] }, { signals: { tickDone: (r: SchedulerRunResult) => (reportedFires += r.fired) } })
      replicas.push({ tr, pool, scheduler: s })
    }
    try {
      await Promise.all(replicas.map((r) => r.scheduler.start()))
      await waitUntil(async () => (await tasksOf('every-second')).length >= 10, { timeoutMs: 30_000, what: '10 fire times' })
    } finally {
      await Promise.all(replicas.map((r) => r.scheduler.stop()))
      await Promise.all(replicas.map((r) => r.pool.end()))
    }
    const rows = await tasksOf('every-second')
    const times = rows.map((r) => r.run_at.getTime())
    // One task per fire time, and no fire time skipped between the first and the last.
    expect(new Set(times).size).toBe(rows.length)
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBe(1000)
    for (const r of rows) expect(r.idempotency_key).toBe(`schedule:every-second:${r.run_at.toISOString()}`)
    // Each fire was inserted by exactly one replica: no replica's insert was
    // silently absorbed by the idempotency key (that would be a lock failure).
    expect(reportedFires).toBe(rows.length)
  })
})

