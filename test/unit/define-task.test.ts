import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { backoffDelay, defineTask, isTask, tasksByName, type BackoffPolicy } from '../../src/define-task.ts'
import { InvalidOptionsError } from '../../src/index.ts'
import { MAX_DELAY_MS } from '../../src/duration.ts'

const payload = z.object({ id: z.number() })
const run = async () => 'done'

function definitionError(def: unknown): InvalidOptionsError {
  try {
    defineTask(def as never)
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionsError)
    return err as InvalidOptionsError
  }
  throw new Error('expected defineTask to throw')
}

describe('defineTask', () => {
  it('fills in the default policy', () => {
    const task = defineTask({ name: 'a.task', payload, run })
    expect(task.name).toBe('a.task')
    expect(task.payload).toBe(payload)
    expect(task.run).toBe(run)
    expect(task.policy).toEqual({
      queue: 'default',
      priority: 0,
      maxAttempts: 3,
      backoff: { type: 'exponential', baseMs: 1000, maxMs: 3_600_000, jitter: true },
      timeoutMs: 0,
    })
  })

  it('keeps the policy it is given', () => {
    const backoff = { type: 'fixed', delayMs: 250 } as const
    const task = defineTask({ name: 'b:task/1', payload, run, queue: 'q-1.x', priority: -1000, maxAttempts: 1000, backoff, timeoutMs: 5000 })
    expect(task.policy).toEqual({ queue: 'q-1.x', priority: -1000, maxAttempts: 1000, backoff, timeoutMs: 5000 })
  })

  it('accepts a backoff function', () => {
    const backoff = (attempt: number) => attempt * 10
    expect(defineTask({ name: 'c', payload, run, backoff }).policy.backoff).toBe(backoff)
  })

  it('returns a frozen handle that isTask recognises', () => {
    const task = defineTask({ name: 'd', payload, run })
    expect(Object.isFrozen(task)).toBe(true)
    expect(Object.isFrozen(task.policy)).toBe(true)
    expect(isTask(task)).toBe(true)
    expect(isTask({ ...task })).toBe(true) // the brand is an own property
    expect(isTask({ name: 'd', payload, run, policy: task.policy })).toBe(false)
    expect(isTask(null)).toBe(false)
    expect(isTask('d')).toBe(false)
  })

  describe('rejects bad definitions with InvalidOptionsError', () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['empty name', { name: '', payload, run }, /^name: use 1-200 characters/],
      ['name with spaces', { name: 'send email', payload, run }, /^name: /],
      ['name over 200 characters', { name: 'n'.repeat(201), payload, run }, /^name: /],
      ['missing name', { payload, run }, /^name: /],
      ['payload that is not a zod schema', { name: 'x', payload: { id: 'number' }, run }, /^payload: expected a zod schema/],
      ['missing run', { name: 'x', payload }, /^run: /],
      ['run that is not a function', { name: 'x', payload, run: 'go' }, /^run: expected a function/],
      ['unknown key', { name: 'x', payload, run, retries: 3 }, /^unknown option "retries"; did you mean "maxAttempts"\?$/],
      ['bad queue', { name: 'x', payload, run, queue: 'a b' }, /^queue: use 1-100 characters/],
      ['priority out of range', { name: 'x', payload, run, priority: 1001 }, /^priority: /],
      ['fractional priority', { name: 'x', payload, run, priority: 0.5 }, /^priority: /],
      ['maxAttempts 0', { name: 'x', payload, run, maxAttempts: 0 }, /^maxAttempts: /],
      ['maxAttempts over 1000', { name: 'x', payload, run, maxAttempts: 1001 }, /^maxAttempts: /],
      ['negative timeoutMs', { name: 'x', payload, run, timeoutMs: -1 }, /^timeoutMs: /],
      ['unknown backoff type', { name: 'x', payload, run, backoff: { type: 'linear' } }, /^backoff: /],
      ['fixed backoff without delayMs', { name: 'x', payload, run, backoff: { type: 'fixed' } }, /^backoff: /],
      ['exponential backoff with baseMs 0', { name: 'x', payload, run, backoff: { type: 'exponential', baseMs: 0 } }, /^backoff/],
    ]

    it.each(cases)('%s', (_, def, problem) => {
      const err = definitionError(def)
      expect(err.code).toBe('OPTIONS_INVALID')
      expect(err.problems).toHaveLength(1)
      expect(err.problems[0]).toMatch(problem)
      expect(err.message).toContain(err.problems[0])
    })

    it('lists every problem at once and names the task', () => {
      const err = definitionError({ name: 'report.build', payload: 'nope', run, priority: 5000, maxAttempts: 0, colour: 'red' })
      expect(err.message).toMatch(/^invalid task definition "report\.build":\n/)
      expect(err.problems).toHaveLength(4)
      expect(err.problems.join('\n')).toMatch(/payload: /)
      expect(err.problems.join('\n')).toMatch(/priority: /)
      expect(err.problems.join('\n')).toMatch(/maxAttempts: /)
      expect(err.problems.join('\n')).toMatch(/unknown option "colour"/)
    })

    it('a missing definition is an InvalidOptionsError, not a TypeError', () => {
      expect(definitionError(undefined).message).toMatch(/^invalid task definition:/)
      expect(definitionError(null).message).toMatch(/^invalid task definition:/)
    })
  })
})

describe('backoffDelay', () => {
  const err = new Error('x')
  const noJitter = { type: 'exponential', baseMs: 1000, maxMs: 60_000, jitter: false } as const

  it('exponential: base × 2^(attempt-1), capped at maxMs', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffDelay(noJitter, a, err))).toEqual([
      1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000,
    ])
  })

  it('exponential: defaults baseMs 1000, maxMs 1 h', () => {
    const policy = { type: 'exponential', jitter: false } as const
    expect(backoffDelay(policy, 1, err)).toBe(1000)
    expect(backoffDelay(policy, 12, err)).toBe(2_048_000)
    expect(backoffDelay(policy, 13, err)).toBe(3_600_000)
  })

  it('exponential: huge attempt numbers stay finite and capped', () => {
    expect(backoffDelay(noJitter, 10_000, err)).toBe(60_000)
    // maxMs past what defineTask allows (an unchecked policy): still a delay Postgres can store.
    expect(backoffDelay({ type: 'exponential', jitter: false, maxMs: Number.MAX_SAFE_INTEGER }, 10_000, err)).toBe(MAX_DELAY_MS)
  })

  it('exponential jitters by default: "equal jitter" over [d/2, d]', () => {
    const policy = { type: 'exponential', baseMs: 1000 } as const
    expect(backoffDelay(policy, 3, err, () => 0)).toBe(2000)
    expect(backoffDelay(policy, 3, err, () => 0.5)).toBe(3000)
    expect(backoffDelay(policy, 3, err, () => 0.999999)).toBe(4000)
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(policy, 3, err)
      expect(d).toBeGreaterThanOrEqual(2000)
      expect(d).toBeLessThanOrEqual(4000)
    }
  })

  it('fixed: the delay, with jitter only when asked', () => {
    expect(backoffDelay({ type: 'fixed', delayMs: 500 }, 7, err, () => 0)).toBe(500)
    expect(backoffDelay({ type: 'fixed', delayMs: 500, jitter: true }, 7, err, () => 0)).toBe(250)
    expect(backoffDelay({ type: 'fixed', delayMs: 500, jitter: true }, 7, err, () => 0.5)).toBe(375)
    expect(backoffDelay({ type: 'fixed', delayMs: 0 }, 1, err)).toBe(0)
  })

  it('a function policy gets (attempt, error); its result is rounded and never negative', () => {
    const calls: Array<[number, Error]> = []
    const policy: BackoffPolicy = (attempt, error) => {
      calls.push([attempt, error])
      return attempt * 100.4
    }
    expect(backoffDelay(policy, 3, err)).toBe(301)
    expect(calls).toEqual([[3, err]])
    expect(backoffDelay(() => -50, 1, err)).toBe(0)
  })

  it('never calls random when there is no jitter', () => {
    const random = () => {
      throw new Error('random must not be called')
    }
    expect(backoffDelay(noJitter, 2, err, random)).toBe(2000)
    expect(backoffDelay({ type: 'fixed', delayMs: 10 }, 2, err, random)).toBe(10)
  })
})

describe('tasksByName', () => {
  it('indexes tasks by name, keeps one handle given twice, and reports conflicts and non-tasks by index', () => {
    const a = defineTask({ name: 'same', payload, run })
    const b = defineTask({ name: 'same', payload, run })
    const c = defineTask({ name: 'other', payload, run })
    const { byName, notTasks, conflicts } = tasksByName([a, a, c, 'x', b])
    expect([...byName.entries()]).toEqual([['same', a], ['other', c]])
    expect(notTasks).toEqual([3])
    expect(conflicts).toEqual([{ index: 4, name: 'same' }])
  })
})
