import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cancelUnfinished, countFailed, listTasks, parseListInput, readTaskDetail, retryFailed } from '../../src/admin/index.ts'
import { InvalidFiltersError } from '../../src/errors.ts'
import { createTestDb, type TestDb } from '../support/db.ts'
import { HOUR, ago, makeTask } from '../support/factory.ts'

/** The read models and bulk actions the CLI and the dashboard share, called as a library. */
let db: TestDb

beforeAll(async () => {
  db = await createTestDb()
})

afterAll(async () => {
  await db?.cleanup()
})

describe('parseListInput', () => {
  it('names every bad field, in no caller’s words', () => {
    let caught: unknown
    try {
      parseListInput({ state: 'done', limit: '0', after: '5', offset: '1' })
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(InvalidFiltersError)
    const problems = (caught as InvalidFiltersError).problems
    expect(problems.map((p) => p.fields)).toEqual([['state'], ['limit'], ['after', 'offset']])
    expect(JSON.stringify(problems)).not.toMatch(/--|taskrelay/)
    expect((caught as InvalidFiltersError).code).toBe('FILTERS_INVALID')
  })

  it('fills in the defaults', () => {
    expect(parseListInput({})).toEqual({ states: null, task: null, queue: null, sinceMs: null, olderThanMs: null, limit: 50, offset: 0, after: null, workflow: null })
  })
})

describe('list, detail and bulk actions', () => {
  it('pages newest first by keyset, filters by name pattern, and retries/cancels in bulk', async () => {
    const a = await makeTask(db.pool, db.schema, { name: 'admin.a', state: 'failed', finishedAt: ago(2 * HOUR) })
    const b = await makeTask(db.pool, db.schema, { name: 'admin.b', state: 'failed' })
    const c = await makeTask(db.pool, db.schema, { name: 'other_c', state: 'pending' })

    const first = await listTasks(db.tr, { ...parseListInput({ limit: '2' }) })
    expect(first.tasks.map((t) => t.id)).toEqual([c, b])
    expect(first.nextAfter).toBe(b)
    const second = await listTasks(db.tr, parseListInput({ limit: '2', after: first.nextAfter! }))
    expect(second.tasks.map((t) => t.id)).toEqual([a])
    expect(second.nextAfter).toBeNull()
    // `_` is not a wildcard; `*` is.
    expect((await listTasks(db.tr, parseListInput({ task: 'other*' }))).tasks.map((t) => t.id)).toEqual([c])
    expect((await listTasks(db.tr, parseListInput({ task: 'admin_*' }))).tasks).toEqual([])

    expect(await readTaskDetail(db.tr, c)).toMatchObject({ task: { id: c, name: 'other_c' }, dependsOn: [] })
    expect(await readTaskDetail(db.tr, '999999')).toBeNull()

    expect(await countFailed(db.tr, { task: 'admin.*' })).toBe(2)
    expect(await countFailed(db.tr, { task: 'admin.*', failedWithinMs: HOUR })).toBe(1)
    expect(await retryFailed(db.tr, { task: 'admin.*', failedWithinMs: HOUR })).toBe(1)
    expect((await db.tr.getTask(b))?.state).toBe('pending')
    expect((await db.tr.getTask(a))?.state).toBe('failed')

    expect(await cancelUnfinished(db.tr, { queue: 'default' })).toBe(2)
    expect((await db.tr.getTask(c))?.state).toBe('cancelled')
    expect((await db.tr.getTask(a))?.state).toBe('failed')
  })
})
