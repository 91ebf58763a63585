import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LeaseKeeper, type LeasedAttempt } from '../../src/worker/lease-keeper.ts'
import { silentLogger } from '../../src/logger.ts'
import { LeaseLostError } from '../../src/errors.ts'
import { createTestDb, type TestDb } from '../support/db.ts'
import { MIN, SEC, dbNow, makeTask, taskRow } from '../support/factory.ts'

let db: TestDb

beforeAll(async () => {
  db = await createTestDb()
})

afterAll(async () => {
  await db?.cleanup()
})

function attempt(id: string, n: number, extra: Partial<LeasedAttempt> = {}): LeasedAttempt & { aborted: Error | null } {
  const a = {
    id,
    attempt: n,
    active: true,
    aborted: null as Error | null,
    abort(reason: Error) {
      a.aborted = reason
    },
    ...extra,
  }
  return a
}

function keeper(attempts: LeasedAttempt[]): LeaseKeeper {
  return new LeaseKeeper({ db: db.tr.executor, schema: db.schema, leaseMs: 10 * MIN, heartbeatMs: MIN, log: silentLogger(), attempts: () => attempts })
}

describe('LeaseKeeper.beat', () => {
  it('renews running attempts, skips those whose outcome is being written, aborts those it no longer owns', async () => {
    const running = (lease = dbNow(5 * SEC)) => ({ state: 'running' as const, attempt: 1, leaseExpiresAt: lease, startedAt: dbNow(-SEC) })
    const renewed = await makeTask(db.pool, db.schema, running())
    const recording = await makeTask(db.pool, db.schema, running())
    const finished = await makeTask(db.pool, db.schema, running())
    const takenOver = await makeTask(db.pool, db.schema, { ...running(), attempt: 2 })
    const before = (await taskRow(db.pool, db.schema, recording))!.lease_expires_at!

    const a = attempt(renewed, 1)
    const r = attempt(recording, 1, { recording: true })
    const f = attempt(finished, 1, { active: false })
    const t = attempt(takenOver, 1)
    const owned = await keeper([a, r, f, t]).beat()

    expect([...owned]).toEqual([renewed])
    const leaseOf = async (id: string) => (await taskRow(db.pool, db.schema, id))!.lease_expires_at!.getTime()
    // 10 minutes from now, against 5 seconds before.
    expect(await leaseOf(renewed)).toBeGreaterThan(before.getTime() + 5 * MIN)
    // A heartbeat never touches a row a finish batch may be updating.
    expect(await leaseOf(recording)).toBe(before.getTime())
    expect(r.aborted).toBeNull()
    expect(f.aborted).toBeNull()
    expect(t.aborted).toBeInstanceOf(LeaseLostError)
    expect(a.aborted).toBeNull()
  })
})
