import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { pino } from 'pino'
import type { Executor, QueryResult } from '../../src/db/executor.ts'
import { LeaseLostError } from '../../src/errors.ts'
import { LeaseKeeper, type LeasedAttempt } from '../../src/worker/lease-keeper.ts'

/**
 * Lease deadlines, without a database, on fake timers: a heartbeat that
 * hangs never fails, so the keeper must give its attempts up heartbeatMs
 * before the lease it last confirmed can expire and go to another worker.
 */

const leaseMs = 300
const heartbeatMs = 100
const silent = pino({ level: 'silent' })

function attempt(id: string): LeasedAttempt & { aborted?: Error } {
  const a: LeasedAttempt & { aborted?: Error } = {
    id,
    attempt: 1,
    active: true,
    abort: (reason) => void (a.aborted ??= reason),
  }
  return a
}

/** Hangs every heartbeat, or answers with the ids `owned` returns. */
function executor(owned?: () => string[]): Executor {
  return {
    query<R>(): Promise<QueryResult<R>> {
      if (!owned) return new Promise(() => {})
      const rows = owned().map((id) => ({ id })) as R[]
      return Promise.resolve({ rows, rowCount: rows.length })
    },
  }
}

const keepers: LeaseKeeper[] = []

function keeper(db: Executor, attempts: LeasedAttempt[], renewedElsewhereAt?: () => number): LeaseKeeper {
  const k = new LeaseKeeper({ db, schema: 's', leaseMs, heartbeatMs, log: silent, attempts: () => attempts, renewedElsewhereAt })
  keepers.push(k)
  k.start()
  return k
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 })
})

afterEach(async () => {
  // stop() awaits the heartbeat in flight, which never settles when it hangs: stop the timers, do not wait.
  for (const k of keepers.splice(0)) void k.stop()
  vi.useRealTimers()
})

describe('lease deadlines', () => {
  it('a hung heartbeat aborts the attempts heartbeatMs before the confirmed lease would expire', async () => {
    const a = attempt('1')
    keeper(executor(), [a])
    await vi.advanceTimersByTimeAsync(leaseMs - heartbeatMs - 1)
    expect(a.aborted).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(a.aborted).toBeInstanceOf(LeaseLostError)
  })

  it('leaves finished attempts alone', async () => {
    const a = attempt('1')
    a.active = false
    keeper(executor(), [a])
    await vi.advanceTimersByTimeAsync(leaseMs)
    expect(a.aborted).toBeUndefined()
  })

  it('renewedElsewhereAt (the lease guard renewed while the loop was blocked) postpones the deadline', async () => {
    const a = attempt('1')
    let elsewhere = 0
    keeper(executor(), [a], () => elsewhere)
    await vi.advanceTimersByTimeAsync(150)
    elsewhere = Date.now()
    // The first deadline (200 ms) finds the later renewal and counts from it: 150 + 200.
    await vi.advanceTimersByTimeAsync(349 - 150)
    expect(a.aborted).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(a.aborted).toBeInstanceOf(LeaseLostError)
  })

  it('answered heartbeats keep postponing it; an attempt a heartbeat no longer matches is aborted at once', async () => {
    const kept = attempt('1')
    const lost = attempt('2')
    keeper(
      executor(() => ['1']),
      [kept, lost],
    )
    await vi.advanceTimersByTimeAsync(heartbeatMs)
    expect(lost.aborted).toBeInstanceOf(LeaseLostError)
    await vi.advanceTimersByTimeAsync(leaseMs * 5)
    expect(kept.aborted).toBeUndefined()
  })
})
