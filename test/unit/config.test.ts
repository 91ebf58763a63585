import { describe, expect, it } from 'vitest'
import { TaskRelay } from '../../src/task-relay.ts'
import { z } from 'zod'
import { closestName, parseSettings, relaySettingsSchema, schedulerSettingsSchema, sweeperSettingsSchema, taskRelayOptionsSchema, workerSettingsSchema, zodProblems } from '../../src/config.ts'
import { defineTask } from '../../src/define-task.ts'
import { prepareTask } from '../../src/enqueue.ts'
import { resolveSchedule } from '../../src/scheduler/validate.ts'
import { InvalidOptionsError, ScheduleError, TaskRelayError } from '../../src/index.ts'
import { parseDuration } from '../../src/duration.ts'

const payload = z.object({ id: z.number() })
const run = () => {}
const task = defineTask({ name: 'config.test', payload, run })

/** The problems of a call that must throw `type`. */
function problemsOf(type: new (...args: never[]) => { problems: readonly string[] }, call: () => unknown): readonly string[] {
  try {
    call()
  } catch (err) {
    expect(err).toBeInstanceOf(type)
    return (err as { problems: readonly string[] }).problems
  }
  throw new Error('expected a throw')
}

const definitionProblems = (def: object) => problemsOf(InvalidOptionsError, () => defineTask({ name: 'x', payload, run, ...def } as never))
const enqueueProblems = (options: object) => problemsOf(InvalidOptionsError, () => prepareTask(task, { id: 1 }, options as never, 1024))
const scheduleProblems = (options: object) =>
  problemsOf(ScheduleError, () => resolveSchedule({ name: 's', every: '1m', options }, { tasks: new Map(), maxPayloadBytes: 1024, declaredBy: task }))

describe('unknown option keys in code suggest the closest known key', () => {
  it.each([
    ['a worker', workerSettingsSchema, { concurency: 5 }, 'unknown option "concurency"; did you mean "concurrency"?'],
    ['a relay', relaySettingsSchema, { batchsize: 5 }, 'unknown option "batchsize"; did you mean "batchSize"?'],
    ['a sweeper', sweeperSettingsSchema, { retentionMS: 5 }, 'unknown option "retentionMS"; did you mean "retentionMs"?'],
    ['a scheduler', schedulerSettingsSchema, { maxCatchup: 5 }, 'unknown option "maxCatchup"; did you mean "maxCatchUp"?'],
    ['a TaskRelay', taskRelayOptionsSchema, { db: 'postgres://h/d', shema: 'x' }, 'unknown option "shema"; did you mean "schema"?'],
  ])('in %s options', (_what, schema, input, problem) => {
    expect(problemsOf(InvalidOptionsError, () => parseSettings(schema as z.ZodType, input, 'options', (w, p) => new InvalidOptionsError(w, p)))).toEqual([problem])
  })

  it('in defineTask, also for names other libraries use (retries → maxAttempts)', () => {
    expect(definitionProblems({ retries: 3 })).toEqual(['unknown option "retries"; did you mean "maxAttempts"?'])
    expect(definitionProblems({ queu: 'a' })).toEqual(['unknown option "queu"; did you mean "queue"?'])
  })

  it('in enqueue options and schedule options', () => {
    expect(enqueueProblems({ priorty: 3 })).toEqual(['unknown option "priorty"; did you mean "priority"?'])
    expect(scheduleProblems({ maxAtempts: 2 })).toEqual(['options: unknown option "maxAtempts"; did you mean "maxAttempts"?'])
  })

  it('in new TaskRelay (a ConfigError)', () => {
    expect(() => new TaskRelay({ db: 'postgres://h/d', enqueueCoalesing: 1 } as never)).toThrow('did you mean "enqueueCoalescing"?')
  })

  it('names each of several unknown keys, and suggests nothing when nothing is close', () => {
    expect(definitionProblems({ colour: 'red', qeue: 'a' })).toEqual(['unknown options "colour", "qeue"; did you mean "queue" for "qeue"?'])
    expect(definitionProblems({ zzzzzzzzzz: 1 })).toEqual(['unknown option "zzzzzzzzzz"'])
  })

  it('uses the same suggestion as the CLI for environment variables', () => {
    expect(closestName('TASKRELAY_WORKR_QUEUES', ['TASKRELAY_WORKER_QUEUES', 'TASKRELAY_RELAY_BATCH_SIZE'])).toBe('TASKRELAY_WORKER_QUEUES')
    expect(closestName('TASKRELAY_NOTHING_LIKE_IT', ['TASKRELAY_WORKER_QUEUES'])).toBeNull()
  })

  it('keeps the plain text for strict objects built without strictOptions', () => {
    const res = z.strictObject({ a: z.number() }).safeParse({ a: 1, b: 2 })
    expect(zodProblems(res.error!)).toEqual(['unknown option "b"'])
  })
})

describe('defineTask, enqueue and schedules share one rule per field', () => {
  it.each([
    ['queue', 'a b'],
    ['priority', 1001],
    ['priority', 0.5],
    ['maxAttempts', 0],
    ['maxAttempts', 1001],
  ])('%s = %j gets the same message everywhere', (field, value) => {
    const fromDefinition = definitionProblems({ [field]: value })
    expect(fromDefinition).toHaveLength(1)
    expect(enqueueProblems({ [field]: value })).toEqual(fromDefinition)
    expect(scheduleProblems({ [field]: value })).toEqual(fromDefinition.map((p) => `options.${p}`))
  })

  it('durations: enqueue delayMs and backoff delays follow the same rule', () => {
    const backoff = definitionProblems({ backoff: { type: 'fixed', delayMs: -1 } })
    expect(backoff).toEqual(['backoff.delayMs: must not be negative'])
    expect(enqueueProblems({ delayMs: -1 })).toEqual(['delayMs: must not be negative'])
    expect(enqueueProblems({ delayMs: 1.5 })).toEqual(definitionProblems({ backoff: { type: 'fixed', delayMs: 1.5 } }).map((p) => p.replace('backoff.', '')))
  })

  it('task names and schedule names use one pattern', () => {
    expect(definitionProblems({ name: 'has space' })).toEqual(['name: use 1-200 characters from A-Z a-z 0-9 _ . : / -'])
    const err = problemsOf(ScheduleError, () => resolveSchedule({ name: 'has space', every: '1m' }, { tasks: new Map(), maxPayloadBytes: 1024, declaredBy: task }))
    expect(err).toEqual(['name: use 1-200 characters from A-Z a-z 0-9 _ . : / -'])
  })
})

describe('parseDuration (the one duration parser)', () => {
  it.each([
    ['1500', 1500],
    ['500ms', 500],
    ['30s', 30_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['2W', 1_209_600_000],
  ])('%s is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms))
  it.each(['', '5 minutes', '-1s', '1y'])('%j is not a duration', (text) => expect(parseDuration(text)).toBeNull())
})

describe('errors users can meet are exported from src/errors.ts with a code', () => {
  it('ScheduleError and TaskTimeoutError are TaskRelayErrors exported by the package', async () => {
    const api = await import('../../src/index.ts')
    const errors = await import('../../src/errors.ts')
    for (const name of ['ScheduleError', 'ScheduleNotFoundError', 'TaskTimeoutError'] as const) {
      expect(api[name]).toBe(errors[name])
      expect(api[name].prototype).toBeInstanceOf(TaskRelayError)
    }
    expect(new errors.TaskTimeoutError(50).code).toBe('TASK_TIMEOUT')
  })
})
