import { z } from 'zod'

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

const ms = (min: number) => z.number().int().min(min)
const positive = ms(1)

export const schemaNameSchema = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'use a lower-case SQL identifier (a-z, 0-9, _), at most 63 characters')

export const relaySettingsSchema = z
  .strictObject({
    /** rows claimed per round trip */
    batchSize: positive.max(10_000).default(500),
    /** safety-net poll when no NOTIFY arrives */
    pollIntervalMs: ms(10).default(1000),
    /** at most this many dispatched-but-unclaimed tasks per queue sit in Redis */
    maxBacklogPerQueue: positive.default(5000),
    /** after its last dispatch, a relay keeps polling every 2 ms for this long (enqueues skip NOTIFY meanwhile) */
    lingerMs: ms(0).max(10_000).default(100),
    /** on a Redis failover/reconnect, tasks dispatched this recently are re-dispatched */
    failoverWindowMs: ms(0).default(10_000),
  })
  .default({} as never)

export const workerSettingsSchema = z
  .strictObject({
    queues: z.array(z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, 'invalid queue name')).min(1).default(['default']),
    /** hard cap on handlers running at once in this process */
    concurrency: positive.max(10_000).default(10),
    /** a running task whose lease expires is presumed lost */
    leaseMs: ms(100).default(30_000),
    /** renew leases of all in-flight tasks this often (one UPDATE) */
    heartbeatMs: ms(50).default(10_000),
    /** on SIGTERM, how long in-flight tasks may finish before being handed back */
    shutdownGraceMs: ms(0).default(10_000),
    /** how long one blocking Redis read waits */
    blockMs: ms(10).default(2000),
    /** tasks claimed ahead of free slots, so the next batch is ready when handlers finish (leased like running ones) */
    prefetch: ms(0).max(10_000).optional(),
    /** group commit: outcomes are flushed at most this late */
    flushIntervalMs: ms(0).default(2),
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
    intervalMs: ms(10).default(5000),
    /** a dispatched task not claimed within this goes back to pending */
    dispatchTimeoutMs: ms(100).default(30_000),
    /** finished tasks older than this are deleted */
    retentionMs: ms(0).default(7 * 24 * 3600 * 1000),
    /** rows deleted per statement while pruning */
    pruneBatchSize: positive.max(100_000).default(1000),
    /** delay before retrying a task whose worker was lost */
    lostWorkerRetryDelayMs: ms(0).default(1000),
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
