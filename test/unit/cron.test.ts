import { describe, expect, it } from 'vitest'
import { cronProblem, nextFireAfter, parseEvery, planFires, timezoneProblem, type FirePlanInput, type ScheduleTiming } from '../../src/scheduler/cron.ts'

const d = (iso: string) => new Date(iso)
const isos = (dates: Date[]) => dates.map((x) => x.toISOString())

/** n fire times after `from`, by repeated nextFireAfter. */
function fires(timing: ScheduleTiming, from: string, n: number): string[] {
  const out: string[] = []
  let t: Date | null = d(from)
  while (out.length < n && t) {
    t = nextFireAfter(timing, t)
    if (t) out.push(t.toISOString())
  }
  return out
}

describe('parseEvery', () => {
  it.each([
    [1000, 1000],
    [60_000, 60_000],
    ['1s', 1000],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['2d', 172_800_000],
    ['1500ms', 1500],
    [' 10s ', 10_000],
  ])('%j is %d ms', (input, ms) => {
    expect(parseEvery(input)).toEqual({ ms })
  })

  it.each([
    [0, /at least 1000 ms/],
    [-5, /at least 1000 ms/],
    [999, /at least 1000 ms/],
    ['500ms', /at least 1000 ms/],
    ['0s', /at least 1000 ms/],
    [1.5, /whole number/],
    ['5 minutes', /cannot read/],
    ['', /cannot read/],
    ['10', /cannot read/],
    [null, /expected milliseconds/],
    [11 * 366 * 24 * 3600 * 1000, /at most/],
  ])('%j is rejected', (input, message) => {
    const res = parseEvery(input)
    expect('problem' in res && res.problem).toMatch(message)
  })
})

describe('timezoneProblem', () => {
  it.each(['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Etc/GMT-1'])('accepts %s', (tz) => {
    expect(timezoneProblem(tz)).toBeNull()
  })
  it.each([
    ['Mars/Olympus_Mons', /unknown time zone "Mars\/Olympus_Mons"/],
    ['Europe/Berln', /unknown time zone/],
    ['+01:00', /UTC offset, not a time zone/],
    ['', /expected a time zone name/],
    [42, /expected a time zone name/],
  ])('rejects %j', (tz, message) => {
    expect(timezoneProblem(tz)).toMatch(message)
  })
})

describe('cronProblem', () => {
  it.each(['* * * * *', '* * * * * *', '0 30 2 * * *', '*/15 9-17 * * MON-FRI', '@daily', '0 0 29 2 *'])('accepts %s', (expr) => {
    expect(cronProblem(expr, 'UTC')).toBeNull()
  })
  it.each([
    ['61 * * * *', /invalid cron expression.*minute: 61/],
    ['* * * *', /expected 5 fields .* or 6 \(seconds first\), got 4/],
    ['0 0 0 1 1 * 2030', /got 7/],
    ['every day', /invalid cron expression/],
    ['2030-01-01T00:00:00', /got 1/],
    ['0 0 30 2 *', /never fires/],
    ['', /expected a cron expression/],
  ])('rejects %j', (expr, message) => {
    expect(cronProblem(expr, 'UTC')).toMatch(message)
  })
})

describe('nextFireAfter', () => {
  it('adds the interval for every', () => {
    expect(nextFireAfter({ everyMs: 90_000 }, d('2025-01-01T00:00:00.250Z'))?.toISOString()).toBe('2025-01-01T00:01:30.250Z')
  })
  it('is strictly after the given time for cron, on whole seconds', () => {
    const everySecond = { cron: '* * * * * *', timezone: 'UTC' }
    expect(nextFireAfter(everySecond, d('2025-01-01T00:00:05.000Z'))?.toISOString()).toBe('2025-01-01T00:00:06.000Z')
    expect(nextFireAfter(everySecond, d('2025-01-01T00:00:04.999Z'))?.toISOString()).toBe('2025-01-01T00:00:05.000Z')
  })
  it('reads cron as wall-clock time in the zone', () => {
    expect(fires({ cron: '0 9 * * *', timezone: 'Asia/Kolkata' }, '2025-01-01T00:00:00Z', 1)).toEqual(['2025-01-01T03:30:00.000Z'])
  })
})

describe('DST transitions (croner rules, documented in src/scheduler/cron.ts)', () => {
  const berlinDaily0230 = { cron: '30 2 * * *', timezone: 'Europe/Berlin' }

  it('Europe/Berlin spring forward: a daily 02:30 fires at 03:00 CEST on the day 02:30 does not exist', () => {
    // 2025-03-30 02:00 CET -> 03:00 CEST
    expect(fires(berlinDaily0230, '2025-03-28T12:00:00Z', 3)).toEqual([
      '2025-03-29T01:30:00.000Z', // 02:30 CET
      '2025-03-30T01:00:00.000Z', // 03:00 CEST: first valid time after the gap
      '2025-03-31T00:30:00.000Z', // 02:30 CEST
    ])
  })

  it('Europe/Berlin fall back: a daily 02:30 fires once, at the first 02:30', () => {
    // 2025-10-26 03:00 CEST -> 02:00 CET: 02:30 happens twice
    expect(fires(berlinDaily0230, '2025-10-24T12:00:00Z', 3)).toEqual([
      '2025-10-25T00:30:00.000Z', // 02:30 CEST
      '2025-10-26T00:30:00.000Z', // first 02:30 (CEST); not again at 01:30Z (CET)
      '2025-10-27T01:30:00.000Z', // 02:30 CET
    ])
  })

  it('America/New_York: 02:30 in the spring gap fires at 03:00 EDT; 01:30 in the fall repeat fires once', () => {
    // 2025-03-09 02:00 EST -> 03:00 EDT
    expect(fires({ cron: '30 2 * * *', timezone: 'America/New_York' }, '2025-03-07T12:00:00Z', 3)).toEqual([
      '2025-03-08T07:30:00.000Z', // 02:30 EST
      '2025-03-09T07:00:00.000Z', // 03:00 EDT: first valid time after the gap
      '2025-03-10T06:30:00.000Z', // 02:30 EDT
    ])
    // 2025-11-02 02:00 EDT -> 01:00 EST: 01:30 happens twice
    expect(fires({ cron: '30 1 * * *', timezone: 'America/New_York' }, '2025-11-01T12:00:00Z', 2)).toEqual([
      '2025-11-02T05:30:00.000Z', // first 01:30 (EDT); not again at 06:30Z (EST)
      '2025-11-03T06:30:00.000Z',
    ])
  })

  it('interval-style cron skips wall-clock times in the gap and fires both occurrences in the repeat', () => {
    const halfHourly = { cron: '0 */30 * * * *', timezone: 'Europe/Berlin' }
    // Spring: 01:30 CET, then 03:00 CEST (02:00 and 02:30 do not exist); every 30 minutes in UTC.
    expect(fires(halfHourly, '2025-03-30T00:15:00Z', 3)).toEqual(['2025-03-30T00:30:00.000Z', '2025-03-30T01:00:00.000Z', '2025-03-30T01:30:00.000Z'])
    // Fall: 02:00 CEST, 02:30 CEST, 02:00 CET, 02:30 CET.
    expect(fires(halfHourly, '2025-10-25T23:45:00Z', 4)).toEqual([
      '2025-10-26T00:00:00.000Z',
      '2025-10-26T00:30:00.000Z',
      '2025-10-26T01:00:00.000Z',
      '2025-10-26T01:30:00.000Z',
    ])
  })

  it('catching up across a DST gap keeps the moved fire time', () => {
    const plan = planFires({ timing: berlinDaily0230, nextFireAt: d('2025-03-29T01:30:00Z'), now: d('2025-03-31T12:00:00Z'), misfire: 'all', graceMs: 10_000, maxCatchUp: 10 })
    expect(isos(plan.fireTimes)).toEqual(['2025-03-29T01:30:00.000Z', '2025-03-30T01:00:00.000Z', '2025-03-31T00:30:00.000Z'])
    expect(plan.nextFireAt?.toISOString()).toBe('2025-04-01T00:30:00.000Z')
  })
})

describe('planFires', () => {
  const minutely: ScheduleTiming = { cron: '0 * * * * *', timezone: 'UTC' }
  const base = (over: Partial<FirePlanInput>): FirePlanInput => ({
    timing: minutely,
    nextFireAt: d('2025-01-01T12:01:00Z'),
    now: d('2025-01-01T12:01:00.020Z'),
    misfire: 'skip',
    graceMs: 10_000,
    maxCatchUp: 100,
    ...over,
  })

  it('returns nothing and keeps next_fire_at when not yet due', () => {
    const plan = planFires(base({ now: d('2025-01-01T12:00:59.999Z') }))
    expect(plan).toEqual({ fireTimes: [], nextFireAt: d('2025-01-01T12:01:00Z'), dropped: null })
  })

  it.each(['skip', 'all', 'none'] as const)('an on-time fire fires under %s', (misfire) => {
    const plan = planFires(base({ misfire }))
    expect(isos(plan.fireTimes)).toEqual(['2025-01-01T12:01:00.000Z'])
    expect(plan.nextFireAt?.toISOString()).toBe('2025-01-01T12:02:00.000Z')
    expect(plan.dropped).toBeNull()
  })

  it.each(['skip', 'all', 'none'] as const)('a late tick within the grace period fires every due time under %s', (misfire) => {
    const plan = planFires(base({ timing: { cron: '* * * * * *', timezone: 'UTC' }, nextFireAt: d('2025-01-01T12:00:00Z'), now: d('2025-01-01T12:00:03.500Z'), misfire }))
    expect(isos(plan.fireTimes)).toEqual(['2025-01-01T12:00:00.000Z', '2025-01-01T12:00:01.000Z', '2025-01-01T12:00:02.000Z', '2025-01-01T12:00:03.000Z'])
    expect(plan.nextFireAt?.toISOString()).toBe('2025-01-01T12:00:04.000Z')
  })

  // Down from 12:00:30 to 12:10:30: 12:01 .. 12:10 were missed (all older than the 10 s grace).
  const downtime = { nextFireAt: d('2025-01-01T12:01:00Z'), now: d('2025-01-01T12:10:30Z') }

  it('skip fires once, for the latest missed time', () => {
    const plan = planFires(base({ ...downtime, misfire: 'skip' }))
    expect(isos(plan.fireTimes)).toEqual(['2025-01-01T12:10:00.000Z'])
    expect(plan.nextFireAt?.toISOString()).toBe('2025-01-01T12:11:00.000Z')
    expect(plan.dropped).toEqual({ first: d('2025-01-01T12:01:00Z'), last: d('2025-01-01T12:09:00Z') })
  })

  it('all fires every missed time', () => {
    const plan = planFires(base({ ...downtime, misfire: 'all' }))
    expect(plan.fireTimes).toHaveLength(10)
    expect(plan.fireTimes[0]?.toISOString()).toBe('2025-01-01T12:01:00.000Z')
    expect(plan.fireTimes[9]?.toISOString()).toBe('2025-01-01T12:10:00.000Z')
    expect(plan.nextFireAt?.toISOString()).toBe('2025-01-01T12:11:00.000Z')
    expect(plan.dropped).toBeNull()
  })

  it('all is capped by maxCatchUp, keeping the latest', () => {
    const plan = planFires(base({ ...downtime, misfire: 'all', maxCatchUp: 3 }))
    expect(isos(plan.fireTimes)).toEqual(['2025-01-01T12:08:00.000Z', '2025-01-01T12:09:00.000Z', '2025-01-01T12:10:00.000Z'])
    expect(plan.dropped).toEqual({ first: d('2025-01-01T12:01:00Z'), last: d('2025-01-01T12:07:00Z') })
  })

  it('none fires nothing missed, only future times', () => {
    const plan = planFires(base({ ...downtime, misfire: 'none' }))
    expect(plan.fireTimes).toEqual([])
    expect(plan.nextFireAt?.toISOString()).toBe('2025-01-01T12:11:00.000Z')
    expect(plan.dropped).toEqual({ first: d('2025-01-01T12:01:00Z'), last: d('2025-01-01T12:10:00Z') })
  })

  it('skip and none fire the on-time time after downtime, dropping the missed ones', () => {
    const now = d('2025-01-01T12:10:04Z') // 12:10:00 is 4 s late: on time
    for (const misfire of ['skip', 'none'] as const) {
      const plan = planFires(base({ nextFireAt: downtime.nextFireAt, now, misfire }))
      expect(isos(plan.fireTimes)).toEqual(['2025-01-01T12:10:00.000Z'])
      expect(plan.dropped).toEqual({ first: d('2025-01-01T12:01:00Z'), last: d('2025-01-01T12:09:00Z') })
    }
  })

  it('works on fixed intervals anchored at the previous fire time', () => {
    const every = { everyMs: 60_000 }
    const from = d('2025-01-01T12:01:00.250Z')
    const now = d('2025-01-01T12:10:30Z')
    expect(isos(planFires(base({ timing: every, nextFireAt: from, now, misfire: 'skip' })).fireTimes)).toEqual(['2025-01-01T12:10:00.250Z'])
    const all = planFires(base({ timing: every, nextFireAt: from, now, misfire: 'all', maxCatchUp: 4 }))
    expect(isos(all.fireTimes)).toEqual(['2025-01-01T12:07:00.250Z', '2025-01-01T12:08:00.250Z', '2025-01-01T12:09:00.250Z', '2025-01-01T12:10:00.250Z'])
    expect(all.dropped).toEqual({ first: from, last: d('2025-01-01T12:06:00.250Z') })
    expect(all.nextFireAt?.toISOString()).toBe('2025-01-01T12:11:00.250Z')
    const none = planFires(base({ timing: every, nextFireAt: from, now, misfire: 'none' }))
    expect(none.fireTimes).toEqual([])
    expect(none.nextFireAt?.toISOString()).toBe('2025-01-01T12:11:00.250Z')
  })

  it('a year of downtime on an every-second schedule is planned without enumerating it', () => {
    const started = performance.now()
    const plan = planFires(base({ timing: { cron: '* * * * * *', timezone: 'Europe/Berlin' }, nextFireAt: d('2024-01-01T00:00:00Z'), now: d('2025-01-01T00:00:00.500Z'), misfire: 'all', maxCatchUp: 5 }))
    // 5 missed (the latest before the grace window, 23:59:50.5) + 10 on time (23:59:51 .. 00:00:00).
    const expected = Array.from({ length: 15 }, (_, i) => new Date(Date.parse('2024-12-31T23:59:46Z') + i * 1000).toISOString())
    expect(isos(plan.fireTimes)).toEqual(expected)
    expect(plan.dropped).toEqual({ first: d('2024-01-01T00:00:00Z'), last: d('2024-12-31T23:59:45Z') })
    expect(plan.nextFireAt?.toISOString()).toBe('2025-01-01T00:00:01.000Z')
    expect(performance.now() - started).toBeLessThan(2000)
  })
})
