import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { MAX_DELAY_MS, MAX_TIMER_MS } from '../../src/duration.ts'
import { parseSettings, relaySettingsSchema, sweeperSettingsSchema, workerSettingsSchema, zodProblems } from '../../src/config.ts'
import { backoffDelay, defineTask } from '../../src/define-task.ts'
import { InvalidOptionsError } from '../../src/errors.ts'
import { Service } from '../../src/service.ts'
import { schedulerSettingsSchema } from '../../src/config.ts'

/**
 * One rule for every duration (src/duration.ts): what drives a timer is at
 * most MAX_TIMER_MS (Node turns anything longer into 1 ms), what only moves a
 * row's run_at is at most MAX_DELAY_MS (Postgres must store it).
 */

const DAY = 86_400_000

function problems(schema: z.ZodType, input: unknown): string[] {
  const res = schema.safeParse(input)
  return res.success ? [] : zodProblems(res.error)
}

describe('settings that drive a timer are at most 2^31 − 1 ms', () => {
  // Valid companions, so that only the field under test is out of range.
  const cases: Array<[string, string, z.ZodType, Record<string, number>]> = [
    ['relay', 'pollIntervalMs', relaySettingsSchema, {}],
    ['worker', 'leaseMs', workerSettingsSchema, {}],
    ['worker', 'heartbeatMs', workerSettingsSchema, { leaseMs: MAX_TIMER_MS }],
    ['worker', 'shutdownGraceMs', workerSettingsSchema, {}],
    ['worker', 'blockMs', workerSettingsSchema, {}],
    ['worker', 'flushIntervalMs', workerSettingsSchema, {}],
    ['sweeper', 'intervalMs', sweeperSettingsSchema, {}],
  ]

  it.each(cases)('%s.%s: 25 days is refused, naming the limit in words', (_, field, schema, rest) => {
    const found = problems(schema, { ...rest, [field]: 25 * DAY })
    // heartbeatMs also breaks the lease rule (lease > 2 × heartbeat); that is reported too.
    expect(found).toContain(`${field}: must be at most 2147483647 ms (about 24.8 days); Node's timers cannot wait longer`)
  })

  it.each(cases)('%s.%s: exactly 2^31 − 1 ms is accepted', (_, field, schema, rest) => {
    const value = field === 'heartbeatMs' ? Math.floor(MAX_TIMER_MS / 2) - 1 : MAX_TIMER_MS
    expect(problems(schema, { ...rest, [field]: value })).toEqual([])
  })

  it('a library user gets a typed InvalidOptionsError (Worker, Relay, Sweeper parse with these schemas)', () => {
    const parse = () => parseSettings(sweeperSettingsSchema, { intervalMs: 25 * DAY }, 'sweeper options', (w, p) => new InvalidOptionsError(w, p))
    expect(parse).toThrow(InvalidOptionsError)
    expect(parse).toThrow("invalid sweeper options:\n  - intervalMs: must be at most 2147483647 ms (about 24.8 days); Node's timers cannot wait longer")
  })

  it('a 30-day lease is refused (it would abort every task at its first heartbeat)', () => {
    expect(problems(workerSettingsSchema, { leaseMs: 30 * DAY })).toEqual([
      "leaseMs: must be at most 2147483647 ms (about 24.8 days); Node's timers cannot wait longer",
    ])
  })
})

describe('settings that only move run_at or a SQL window are at most 10 years', () => {
  const cases: Array<[string, string, z.ZodType]> = [
    ['relay', 'failoverWindowMs', relaySettingsSchema],
    ['sweeper', 'dispatchTimeoutMs', sweeperSettingsSchema],
    ['sweeper', 'retentionMs', sweeperSettingsSchema],
    ['sweeper', 'lostWorkerRetryDelayMs', sweeperSettingsSchema],
  ]

  it.each(cases)('%s.%s: a year is fine (no timer involved), more than 10 years is refused', (_, field, schema) => {
    expect(problems(schema, { [field]: 365 * DAY })).toEqual([])
    expect(problems(schema, { [field]: MAX_DELAY_MS })).toEqual([])
    expect(problems(schema, { [field]: 1e20 })).toEqual([`${field}: must be at most 315360000000 ms (10 years)`])
  })
})

describe('defineTask durations', () => {
  const payload = z.object({})
  const run = () => null

  function definitionProblems(extra: Record<string, unknown>): readonly string[] {
    try {
      defineTask({ name: 'dur.task', payload, run, ...extra })
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidOptionsError)
      return (err as InvalidOptionsError).problems
    }
    return []
  }

  it('timeoutMs over 2^31 − 1 ms is an InvalidOptionsError, not a timeout after 1 ms', () => {
    expect(definitionProblems({ timeoutMs: 2 ** 31 })).toEqual([
      "timeoutMs: must be at most 2147483647 ms (about 24.8 days); Node's timers cannot wait longer",
    ])
    expect(definitionProblems({ timeoutMs: MAX_TIMER_MS })).toEqual([])
  })

  it.each([
    ['fixed delayMs', { type: 'fixed', delayMs: 1e20 }, 'backoff.delayMs'],
    ['exponential baseMs', { type: 'exponential', baseMs: MAX_DELAY_MS + 1 }, 'backoff.baseMs'],
    ['exponential maxMs', { type: 'exponential', maxMs: 1e20 }, 'backoff.maxMs'],
  ])('backoff %s over 10 years is refused', (_, backoff, path) => {
    expect(definitionProblems({ backoff })).toEqual([`${path}: must be at most 315360000000 ms (10 years)`])
  })

  it('a backoff of exactly 10 years is accepted', () => {
    expect(definitionProblems({ backoff: { type: 'fixed', delayMs: MAX_DELAY_MS } })).toEqual([])
    expect(definitionProblems({ backoff: { type: 'exponential', baseMs: MAX_DELAY_MS, maxMs: MAX_DELAY_MS } })).toEqual([])
  })
})

describe('backoffDelay never returns a delay Postgres cannot store', () => {
  const err = new Error('x')

  it('clamps a huge finite result of a backoff function to 10 years', () => {
    expect(backoffDelay(() => 1e20, 1, err)).toBe(MAX_DELAY_MS)
    expect(backoffDelay(() => Number.MAX_VALUE, 1, err)).toBe(MAX_DELAY_MS)
  })

  it('still refuses NaN and Infinity from a backoff function', () => {
    expect(() => backoffDelay(() => Number.NaN, 1, err)).toThrow(/backoff function returned NaN/)
    expect(() => backoffDelay(() => Infinity, 1, err)).toThrow(/backoff function returned Infinity/)
  })

  it('clamps an object policy that bypassed defineTask', () => {
    expect(backoffDelay({ type: 'fixed', delayMs: 1e20 }, 1, err)).toBe(MAX_DELAY_MS)
    expect(backoffDelay({ type: 'exponential', baseMs: 1e20, maxMs: 1e21, jitter: false }, 3, err)).toBe(MAX_DELAY_MS)
  })
})

describe('a service loop never sleeps longer than a timer can wait', () => {
  class Counting extends Service<void> {
    runs = 0
    readonly delay: number
    constructor(delay: number) {
      super('counting')
      this.delay = delay
    }
    async runOnce(): Promise<void> {
      this.runs++
    }
    protected delayAfter(): number {
      return this.delay
    }
  }

  it('a 30-day delay sleeps (about 24.8 days), it does not spin', async () => {
    const service = new Counting(30 * DAY)
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(w.name)
    process.on('warning', onWarning)
    try {
      await service.start()
      // Let many 1 ms timers' worth of turns pass: an overflowed sleep runs again on each.
      for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 5))
      expect(service.runs).toBe(1)
    } finally {
      await service.stop()
      process.off('warning', onWarning)
    }
    expect(warnings).not.toContain('TimeoutOverflowWarning')
  })
})

describe('scheduler settings follow the same rule', () => {
  it('maxSleepMs drives a timer; misfireGraceMs only a SQL window', () => {
    expect(problems(schedulerSettingsSchema, { maxSleepMs: 25 * DAY })).toEqual([expect.stringContaining('maxSleepMs: must be at most 2147483647 ms')])
    expect(problems(schedulerSettingsSchema, { misfireGraceMs: 365 * DAY })).toEqual([])
    expect(problems(schedulerSettingsSchema, { misfireGraceMs: MAX_DELAY_MS + 1 })).toEqual([expect.stringContaining('misfireGraceMs: must be at most')])
  })
})
