import { z } from 'zod/v4'
import { MAX_DELAY_MS, MAX_TIMER_MS } from './duration.ts'

/**
 * Settings of every part, as zod schemas: strict (unknown keys are errors),
 * with defaults, cross-field rules, then frozen. Error text is derived from the
 * schema path so it cannot go stale. The CLI maps flags and env vars onto these
 * same schemas (src/cli/settings.ts); the README table is checked against them.
 */

export function zodProblems(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join('.')
    if (issue.code === 'unrecognized_keys') {
      return `${path ? path + ': ' : ''}unknown option${issue.keys.length > 1 ? 's' : ''} ${issue.keys
        .map((k) => `"${k}"`)
        .join(', ')}`
    }
    return `${path || '(root)'}: ${issue.message}`
  })
}

/** A bound in ms and in words: "2147483647 ms (about 24.8 days)", "315360000000 ms (10 years)". */
export function msInWords(ms: number): string {
  const days = ms / 86_400_000
  if (days >= 365 && Number.isInteger(days / 365)) return `${ms} ms (${days / 365} years)`
  if (days >= 1) return `${ms} ms (${Number.isInteger(days) ? '' : 'about '}${Math.floor(days * 10) / 10} days)`
  return `${ms} ms`
}

// Integer check as a refinement: z.int() would add "expected int to be <=9007199254740991" to a too-big value.
const wholeMs = (min: number, max: number, tooBig: string) =>
  z.number().min(min).max(max, tooBig).refine(Number.isInteger, 'must be a whole number of milliseconds')

/** A duration that drives a timer in this process: at most MAX_TIMER_MS (src/duration.ts has the rule). */
export const timerMs = (min: number, max = MAX_TIMER_MS) =>
  wholeMs(min, max, `must be at most ${msInWords(max)}${max === MAX_TIMER_MS ? "; Node's timers cannot wait longer" : ''}`)

/** A delay or window that only goes to Postgres (run_at, SQL intervals): at most MAX_DELAY_MS. */
export const delayMs = (min: number) => wholeMs(min, MAX_DELAY_MS, `must be at most ${msInWords(MAX_DELAY_MS)}`)

const positive = z.number().int().min(1)

export const schemaNameSchema = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'use a lower-case SQL identifier (a-z, 0-9, _), at most 63 characters')

export const relaySettingsSchema = z
  .strictObject({
    /** rows claimed per round trip */
    batchSize: positive.max(10_000).default(500),
    /** safety-net poll when no NOTIFY arrives */
    pollIntervalMs: timerMs(10).default(1000),
    /** at most this many dispatched-but-unclaimed tasks per queue sit in Redis */
    maxBacklogPerQueue: positive.default(5000),
    /** after its last dispatch, a relay keeps polling every 2 ms for this long (enqueues skip NOTIFY meanwhile) */
    lingerMs: timerMs(0, 10_000).default(100),
    /** on a Redis failover/reconnect, tasks dispatched this recently are re-dispatched */
    failoverWindowMs: delayMs(0).default(10_000),
  })
  .default({} as never)

export const workerSettingsSchema = z
  .strictObject({
    queues: z.array(z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, 'invalid queue name')).min(1).default(['default']),
    /** hard cap on handlers running at once in this process */
    concurrency: positive.max(10_000).default(10),
    /** a running task whose lease expires is presumed lost */
    leaseMs: timerMs(100).default(30_000),
    /** renew leases of all in-flight tasks this often (one UPDATE) */
    heartbeatMs: timerMs(50).default(10_000),
    /** on SIGTERM, how long in-flight tasks may finish before being handed back */
    shutdownGraceMs: timerMs(0).default(10_000),
    /** how long one blocking Redis read waits */
    blockMs: timerMs(10).default(2000),
    /** tasks claimed ahead of free slots, so the next batch is ready when handlers finish (leased like running ones) */
    prefetch: z.number().int().min(0).max(10_000).optional(),
    /** group commit: outcomes are flushed at most this late */
    flushIntervalMs: timerMs(0).default(2),
  })
  .default({} as never)
  .superRefine((w, ctx) => {
    if (w.leaseMs <= 2 * w.heartbeatMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['leaseMs'],
        message: `must be more than twice heartbeatMs (${w.heartbeatMs}), got ${w.leaseMs}, or one slow heartbeat loses the lease`,
      })
    }
  })

export const sweeperSettingsSchema = z
  .strictObject({
    intervalMs: timerMs(10).default(5000),
    /** a dispatched task not claimed within this goes back to pending */
    dispatchTimeoutMs: delayMs(100).default(30_000),
    /** finished tasks older than this are deleted */
    retentionMs: delayMs(0).default(7 * 24 * 3600 * 1000),
    /** rows deleted per statement while pruning */
    pruneBatchSize: positive.max(100_000).default(1000),
    /** delay before retrying a task whose worker was lost */
    lostWorkerRetryDelayMs: delayMs(0).default(1000),
  })
  .default({} as never)

export type RelaySettings = z.output<typeof relaySettingsSchema>
export type WorkerSettings = z.output<typeof workerSettingsSchema>
export type SweeperSettings = z.output<typeof sweeperSettingsSchema>

/** Parse settings or throw one error listing every problem. */
export function parseSettings<S extends z.ZodType>(
  schema: S,
  input: unknown,
  where: string,
  makeError: (where: string, problems: string[]) => Error,
): Readonly<z.output<S>> {
  const res = schema.safeParse(input ?? {})
  if (!res.success) throw makeError(where, zodProblems(res.error))
  return Object.freeze(res.data)
}
