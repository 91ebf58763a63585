import { z } from 'zod/v4'
import { MAX_DELAY_MS, MAX_TIMER_MS } from '../duration.ts'
import { closestName } from './did-you-mean.ts'

/**
 * Field rules shared by every option schema (defineTask, enqueue, schedules,
 * services, TaskRelay): one rule, one message, wherever the field appears.
 */

/** Task names: stored in each row. */
export const TASK_NAME_PATTERN = /^[A-Za-z0-9_.:/-]{1,200}$/
/** Queue names: stored in each row and part of Redis keys. */
export const QUEUE_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,100}$/

export const taskNameSchema = z.string().regex(TASK_NAME_PATTERN, 'use 1-200 characters from A-Z a-z 0-9 _ . : / -')
export const queueNameSchema = z.string().regex(QUEUE_NAME_PATTERN, 'use 1-100 characters from A-Z a-z 0-9 _ . -')
/** -1000..1000, higher first. */
export const prioritySchema = z.number().int().min(-1000).max(1000)
export const maxAttemptsSchema = z.number().int().min(1).max(1000)

/** Prefix of every Redis key a relay and worker use. */
export const keyPrefixSchema = z.string().regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'use 1-100 characters from A-Z a-z 0-9 _ . : -')

/** Largest accepted payload by default, as JSON bytes (TaskRelayOptions.maxPayloadBytes; the CLI's enqueue uses it too). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024

export const schemaNameSchema = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'use a lower-case SQL identifier (a-z, 0-9, _), at most 63 characters')

/** A bound in ms and in words: "2147483647 ms (about 24.8 days)", "315360000000 ms (10 years)". */
export function msInWords(ms: number): string {
  const days = ms / 86_400_000
  if (days >= 365 && Number.isInteger(days / 365)) return `${ms} ms (${days / 365} years)`
  if (days >= 1) return `${ms} ms (${Number.isInteger(days) ? '' : 'about '}${Math.floor(days * 10) / 10} days)`
  return `${ms} ms`
}

// Integer check as a refinement, after max: z.int() would add "expected int to be <=9007199254740991" to a too-big value.
const wholeMs = (min: number, max: number, tooBig: string) =>
  z
    .number()
    .min(min, min === 0 ? 'must not be negative' : undefined)
    .max(max, tooBig)
    .refine(Number.isInteger, 'must be an integer number of milliseconds')

/** A duration that drives a timer in this process: at most MAX_TIMER_MS (src/duration.ts has the rule). */
export const timerMs = (min: number, max = MAX_TIMER_MS) =>
  wholeMs(min, max, `must be at most ${msInWords(max)}${max === MAX_TIMER_MS ? "; Node's timers cannot wait longer" : ''}`)

/** A delay or window that only goes to Postgres (run_at, SQL intervals): at most MAX_DELAY_MS. */
export const delayMs = (min: number) => wholeMs(min, MAX_DELAY_MS, `must be at most ${msInWords(MAX_DELAY_MS)}`)

/** `unknown option "qeue"; did you mean "queue"?` */
export function unknownKeysText(keys: readonly string[], known: readonly string[]): string {
  const hints = keys.map((k) => [k, closestName(k, known)] as const).filter(([, hint]) => hint !== null)
  const list = keys.map((k) => `"${k}"`).join(', ')
  const hint = hints.map(([k, h]) => (keys.length > 1 ? `"${h}" for "${k}"` : `"${h}"`)).join(', ')
  return `unknown option${keys.length > 1 ? 's' : ''} ${list}${hint ? `; did you mean ${hint}?` : ''}`
}

/**
 * An options object whose unknown keys are errors that suggest the closest
 * known key. The known keys are read from the schema that failed, so an
 * .extend()ed schema suggests its added keys too.
 */
export function strictOptions<Shape extends z.core.$ZodLooseShape>(shape: Shape) {
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code !== 'unrecognized_keys') return undefined
      const inst = issue.inst as { _zod?: { def?: { shape?: object } } } | undefined
      return unknownKeysText(issue.keys, Object.keys(inst?._zod?.def?.shape ?? {}))
    },
  })
}
