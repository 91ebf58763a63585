import { expect } from 'vitest'
import { z } from 'zod'
import {
  InvalidOptionsError,
  PayloadNotSerializableError,
  PayloadTooLargeError,
  PayloadValidationError,
  TaskRelayError,
  defineTask,
  type Task,
} from '../../src/index.ts'

/**
 * The tasks the enqueue tests share, and the bad-input table: every input
 * enqueue must refuse with a typed error before any SQL runs. Pure: the unit
 * test checks the table against prepareTask(), the integration test checks
 * that enqueue and enqueueMany refuse the same rows and write nothing.
 */

export const run = async () => {}
export const welcome = defineTask({ name: 'email.welcome', payload: z.object({ userId: z.number().int() }), run })
export const report = defineTask({
  name: 'report.build',
  payload: z.object({ day: z.string() }),
  queue: 'reports',
  priority: 5,
  maxAttempts: 7,
  run,
})
export const nested = defineTask({
  name: 'user.sync',
  payload: z.object({ user: z.object({ id: z.number(), email: z.string() }), tags: z.array(z.string()) }),
  run,
})
export const big = defineTask({ name: 'big.number', payload: z.object({ n: z.bigint() }), run })
export const loose = defineTask({ name: 'loose', payload: z.record(z.string(), z.unknown()), run })
export const withDefault = defineTask({ name: 'with.default', payload: z.object({ n: z.number().default(3) }), run })

export interface BadCase {
  what: string
  task: Task
  payload: unknown
  options?: unknown
  error: new (...args: any[]) => TaskRelayError
  code: string
  message: RegExp
  check?: (err: any) => void
}

const cycle: Record<string, unknown> = { a: 1 }
cycle.self = cycle

export const badEnqueueCases: BadCase[] = [
  {
    what: 'payload not matching the schema',
    task: welcome,
    payload: { userId: 'one' },
    error: PayloadValidationError,
    code: 'PAYLOAD_INVALID',
    message: /payload for task "email\.welcome" is invalid:\n {2}- userId: /,
    check: (err: PayloadValidationError) => {
      expect(err.taskName).toBe('email.welcome')
      expect(err.issues).toEqual([{ path: 'userId', message: expect.any(String) }])
    },
  },
  {
    what: 'payload with several problems (every zod issue listed)',
    task: nested,
    payload: { user: { id: 'x' }, tags: ['ok', 2] },
    error: PayloadValidationError,
    code: 'PAYLOAD_INVALID',
    message: /- user\.id: [^\n]+\n {2}- user\.email: [^\n]+\n {2}- tags\.1: /,
    check: (err: PayloadValidationError) => {
      expect(err.issues.map((i) => i.path)).toEqual(['user.id', 'user.email', 'tags.1'])
    },
  },
  {
    what: 'payload missing',
    task: welcome,
    payload: undefined,
    error: PayloadValidationError,
    code: 'PAYLOAD_INVALID',
    message: /- \(root\): /,
    check: (err: PayloadValidationError) => expect(err.issues).toEqual([{ path: '', message: expect.any(String) }]),
  },
  {
    what: 'unknown option',
    task: welcome,
    payload: { userId: 1 },
    options: { priorty: 3 },
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /unknown option "priorty"/,
    // One problem; the wording may go on with a "did you mean" (issue 14, item 5).
    check: (err: InvalidOptionsError) => expect(err.problems).toEqual([expect.stringMatching(/^unknown option "priorty"/)]),
  },
  {
    what: 'options that are not an object',
    task: welcome,
    payload: { userId: 1 },
    options: 'soon',
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /invalid enqueue options for task "email\.welcome"/,
  },
  {
    what: 'negative delayMs',
    task: welcome,
    payload: { userId: 1 },
    options: { delayMs: -1 },
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /delayMs: must not be negative/,
  },
  {
    what: 'fractional delayMs',
    task: welcome,
    payload: { userId: 1 },
    options: { delayMs: 1.5 },
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /delayMs: must be an integer/,
  },
  {
    what: 'runAt and delayMs together',
    task: welcome,
    payload: { userId: 1 },
    options: { runAt: new Date(), delayMs: 1000 },
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /give runAt or delayMs, not both/,
  },
  {
    what: 'invalid runAt date',
    task: welcome,
    payload: { userId: 1 },
    options: { runAt: new Date('not a date') },
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /runAt: /,
  },
  {
    what: 'runAt given as a string',
    task: welcome,
    payload: { userId: 1 },
    options: { runAt: '2030-01-01T00:00:00Z' },
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /runAt: /,
  },
  ...[1001, -1001, 2.5].map((priority) => ({
    what: `priority ${priority}`,
    task: welcome,
    payload: { userId: 1 },
    options: { priority },
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /priority: /,
  })),
  ...[0, 1001].map((maxAttempts) => ({
    what: `maxAttempts ${maxAttempts}`,
    task: welcome,
    payload: { userId: 1 },
    options: { maxAttempts },
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /maxAttempts: /,
  })),
  {
    what: 'invalid queue name',
    task: welcome,
    payload: { userId: 1 },
    options: { queue: 'has spaces' },
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /queue: use 1-100 characters/,
  },
  ...['', 'k'.repeat(501)].map((idempotencyKey) => ({
    what: `idempotencyKey of length ${idempotencyKey.length}`,
    task: welcome,
    payload: { userId: 1 },
    options: { idempotencyKey },
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /idempotencyKey: /,
  })),
  {
    what: 'several bad options at once (all listed)',
    task: welcome,
    payload: { userId: 1 },
    options: { priority: 5000, delayMs: -5, colour: 'red' },
    error: InvalidOptionsError,
    code: 'OPTIONS_INVALID',
    message: /unknown option "colour"/,
    check: (err: InvalidOptionsError) => {
      expect(err.problems).toHaveLength(3)
      expect(err.message).toMatch(/priority: /)
      expect(err.message).toMatch(/delayMs: /)
    },
  },
  {
    what: 'payload with a BigInt (not JSON)',
    task: big,
    payload: { n: 10n },
    error: PayloadNotSerializableError,
    code: 'PAYLOAD_NOT_JSON',
    message: /payload for task "big\.number" cannot be stored as JSON: .*BigInt/,
  },
  {
    what: 'payload with a cycle (not JSON)',
    task: loose,
    payload: cycle,
    error: PayloadNotSerializableError,
    code: 'PAYLOAD_NOT_JSON',
    message: /cannot be stored as JSON: .*circular/i,
  },
  {
    what: 'payload over the default 1 MiB limit',
    task: loose,
    payload: { blob: 'x'.repeat(1024 * 1024) },
    error: PayloadTooLargeError,
    code: 'PAYLOAD_TOO_LARGE',
    message: /is 1048587 bytes, over the limit of 1048576 bytes/,
  },
]

/** The error a bad case must throw: its class, code and message. */
export function expectRefusal(err: unknown, c: BadCase): void {
  expect(err).toBeInstanceOf(c.error)
  expect(err).toMatchObject({ code: c.code, message: expect.stringMatching(c.message) })
}
