import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ScheduleManager, ScheduleNotFoundError, defineTask } from '../../src/index.ts'
import { createTestDb, type TestDb } from '../support/db.ts'

/** Issue 14, item 7: tr.schedules is the one way to manage schedules from code. */
let db: TestDb
const report = defineTask({ name: 'sm.report', payload: z.object({ day: z.string() }), run: async () => 'done' })

beforeAll(async () => {
  db = await createTestDb()
})

afterAll(async () => {
  await db?.cleanup()
})

describe('tr.schedules', () => {
  it('creates, reads, pauses, resumes, runs once, lists and removes a schedule', async () => {
    const schedules = db.tr.schedules
    expect(schedules).toBeInstanceOf(ScheduleManager)
    const created = await schedules.upsert({ name: 'sm-nightly', task: report, cron: '0 3 * * *', payload: { day: 'today' } })
    expect(created.status).toBe('created')
    expect((await schedules.upsert({ name: 'sm-nightly', task: report, cron: '0 3 * * *', payload: { day: 'today' } })).status).toBe('unchanged')
    expect((await schedules.get('sm-nightly'))?.cron).toBe('0 3 * * *')
    expect((await schedules.pause('sm-nightly')).enabled).toBe(false)
    expect((await schedules.resume('sm-nightly')).enabled).toBe(true)
    const { taskId } = await schedules.runNow('sm-nightly', { tasks: [report] })
    expect((await db.tr.getTask(taskId))?.payload).toEqual({ day: 'today' })
    expect((await schedules.list({ task: 'sm.report' })).map((s) => s.name)).toEqual(['sm-nightly'])
    expect(await schedules.remove('sm-nightly')).toBe(true)
    expect(await schedules.remove('sm-nightly')).toBe(false)
    await expect(schedules.pause('sm-nightly')).rejects.toThrow(ScheduleNotFoundError)
  })

  it('syncs the schedules tasks declare, as a scheduler does at start', async () => {
    const declared = defineTask({
      name: 'sm.declared',
      payload: z.object({}),
      run: async () => {},
      schedules: [{ name: 'sm-every-hour', every: '1h' }],
    })
    const result = await db.tr.schedules.sync([declared])
    expect(result.created).toEqual(['sm-every-hour'])
    expect((await db.tr.schedules.get('sm-every-hour'))?.source).toBe('code')
  })
})
