import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { pino } from 'pino'
import { InvalidOptionsError, NonRetryableError, RateLimitedError, defineTask, type Task } from '../../src/index.ts'
import { Attempt, type AttemptHost } from '../../src/worker/attempt.ts'
import { MAX_RESULT_BYTES, runAttempt, type AttemptResult } from '../../src/worker/run-attempt.ts'
import { TaskTimeoutError } from '../../src/errors.ts'

/**
 * The attempt outcome rules, without a database or Redis: runAttempt with a
 * fake AttemptHost. What a handler returns or throws becomes succeeded,
 * pending (a retry after its backoff) or failed, and only storable results pass.
 */

const silent = pino({ level: 'silent' })

/** A host that records which attempts freed their slot. */
function fakeHost() {
  const done: string[] = []
  const host: AttemptHost = {
    log: () => silent,
    heartbeat: async () => {},
    handlerDone: (a) => void done.push(a.id),
    complete: async () => {},
    progress: () => {},
  }
  return { host, done }
}

function claimed(attempt = 1, maxAttempts = 3, payload: unknown = { n: 1 }) {
  return new Attempt({ id: '42', name: 'unit.task', queue: 'default', payload, priority: 0, attempt, max_attempts: maxAttempts, created_ms: Date.now(), workflow_id: null, group_key: '' })
}

function task(run: Task['run'], extra: Record<string, unknown> = {}): Task {
  return defineTask({ name: 'unit.task', payload: z.object({ n: z.number() }), backoff: { type: 'fixed', delayMs: 5000, jitter: false }, ...extra, run }) as Task
}

async function outcomeOf(run: Task['run'], opts: { attempt?: number; maxAttempts?: number; payload?: unknown; extra?: Record<string, unknown> } = {}) {
  const { host, done } = fakeHost()
  const outcome = await runAttempt(claimed(opts.attempt, opts.maxAttempts, opts.payload), task(run, opts.extra), host)
  return { outcome, done }
}

function errorOf(outcome: AttemptResult) {
  if (outcome.state === 'succeeded' || outcome.state === 'completed-in-transaction') throw new Error('expected a failure')
  return outcome.error
}

describe('results', () => {
  it('a synchronous handler gives its outcome without a promise, and frees its slot', () => {
    const { host, done } = fakeHost()
    const outcome = runAttempt(claimed(), task(({ n }: { n: number }) => ({ doubled: n * 2 })), host)
    expect(outcome).toEqual({ state: 'succeeded', result: '{"doubled":2}' })
    expect(done).toEqual(['42'])
  })

  it('an async handler succeeds with its JSON result; undefined is stored as null', async () => {
    expect((await outcomeOf(async () => 'ok')).outcome).toEqual({ state: 'succeeded', result: '"ok"' })
    expect((await outcomeOf(async () => undefined)).outcome).toEqual({ state: 'succeeded', result: 'null' })
  })
})

describe('thrown errors', () => {
  it('retry after the backoff while attempts remain, keeping the error', async () => {
    const { outcome, done } = await outcomeOf(async () => {
      throw new Error('boom')
    })
    expect(outcome).toMatchObject({ state: 'pending', delayMs: 5000, error: { message: 'boom', name: 'Error', attempt: 1, kind: 'error' } })
    expect(done).toEqual(['42'])
  })

  it('fail on the last attempt (maxAttempts)', async () => {
    const { outcome } = await outcomeOf(
      () => {
        throw new Error('still broken')
      },
      { attempt: 3, maxAttempts: 3 },
    )
    expect(outcome).toMatchObject({ state: 'failed', delayMs: 0, error: { message: 'still broken', attempt: 3, kind: 'error' } })
  })

  it('NonRetryableError fails at once, whatever attempts remain', async () => {
    const { outcome } = await outcomeOf(async () => {
      throw new NonRetryableError('bad input')
    })
    expect(outcome).toMatchObject({ state: 'failed', delayMs: 0, error: { message: 'bad input', kind: 'non_retryable' } })
  })

  it('ctx.rateLimited(ms) ends the attempt as throttled (no attempt spent), even on the last attempt', async () => {
    const { outcome } = await outcomeOf(async (_p: unknown, ctx) => ctx.rateLimited(1500), { attempt: 3, maxAttempts: 3 })
    expect(outcome).toMatchObject({ state: 'throttled', delayMs: 1500, error: { kind: 'rate_limited' } })
    // Thrown by the handler itself: the same.
    const thrown = await outcomeOf(async () => {
      throw new RateLimitedError(250)
    })
    expect(thrown.outcome).toMatchObject({ state: 'throttled', delayMs: 250 })
  })

  it('ctx.rateLimited() with a wait that is not 0 .. 24 h is an InvalidOptionsError, a plain failure of the attempt', async () => {
    const { host } = fakeHost()
    const attempt = claimed()
    let caught: unknown
    await runAttempt(attempt, task(async (_p: unknown, ctx) => {
      try {
        ctx.rateLimited(-1)
      } catch (err) {
        caught = err
        throw err
      }
    }), host)
    expect(caught).toBeInstanceOf(InvalidOptionsError)
  })

  it('a value that is not an Error is recorded as one', async () => {
    const { outcome } = await outcomeOf(async () => {
      throw 'plain string'
    })
    expect(outcome.state).toBe('pending')
    expect(errorOf(outcome).message).toMatch(/plain string/)
  })
})

describe('backoff', () => {
  it('exponential without jitter doubles per attempt, up to maxMs', async () => {
    const fail = async () => {
      throw new Error('x')
    }
    const backoff = { type: 'exponential', baseMs: 100, maxMs: 1000, jitter: false }
    expect((await outcomeOf(fail, { attempt: 1, maxAttempts: 10, extra: { backoff } })).outcome).toMatchObject({ delayMs: 100 })
    expect((await outcomeOf(fail, { attempt: 3, maxAttempts: 10, extra: { backoff } })).outcome).toMatchObject({ delayMs: 400 })
    expect((await outcomeOf(fail, { attempt: 8, maxAttempts: 10, extra: { backoff } })).outcome).toMatchObject({ delayMs: 1000 })
  })

  it('a backoff function decides the delay; one that throws falls back to the default curve and says so', async () => {
    const fail = async () => {
      throw new Error('x')
    }
    expect((await outcomeOf(fail, { extra: { backoff: (attempt: number) => attempt * 7 } })).outcome).toMatchObject({ state: 'pending', delayMs: 7 })
    const broken = () => {
      throw new Error('oops')
    }
    const { outcome } = await outcomeOf(fail, { extra: { backoff: broken } })
    expect(outcome.state).toBe('pending')
    expect(errorOf(outcome).message).toBe('x (backoff function failed: oops)')
  })
})

describe('invalid results and payloads', () => {
  it('a result that is not JSON fails the attempt for good (invalid_result)', async () => {
    const { outcome } = await outcomeOf(async () => ({ n: 10n }))
    expect(outcome).toMatchObject({ state: 'failed', error: { kind: 'invalid_result', message: expect.stringMatching(/is not JSON/) } })
  })

  it('a result over MAX_RESULT_BYTES fails the attempt for good (invalid_result)', async () => {
    const { outcome } = await outcomeOf(async () => 'x'.repeat(MAX_RESULT_BYTES))
    expect(outcome).toMatchObject({ state: 'failed', error: { kind: 'invalid_result', message: expect.stringMatching(/over the limit/) } })
  })

  it('a payload that no longer matches fails without running the handler (invalid_payload)', async () => {
    let ran = false
    const { outcome, done } = await outcomeOf(async () => void (ran = true), { payload: { n: 'one' } })
    expect(outcome).toMatchObject({ state: 'failed', error: { kind: 'invalid_payload', message: expect.stringMatching(/no longer matches its schema/) } })
    expect(ran).toBe(false)
    expect(done).toEqual([])
  })
})

describe('timeouts', () => {
  it('abort ctx.signal with TaskTimeoutError and count the attempt as a retryable timeout', async () => {
    let reason: unknown
    const { outcome } = await outcomeOf(
      (_payload: unknown, ctx: { signal: AbortSignal }) =>
        new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve((reason = ctx.signal.reason)))),
      { extra: { timeoutMs: 20 } },
    )
    expect(reason).toBeInstanceOf(TaskTimeoutError)
    expect(outcome).toMatchObject({ state: 'pending', error: { kind: 'timeout', message: expect.stringMatching(/within timeoutMs \(20 ms\)/) } })
  })
})
