import { z } from 'zod/v4'
import { parseDuration } from './duration.ts'
import { InvalidOptionsError } from './errors.ts'
import { strictOptions, zodProblems } from './config.ts'
import type { QueueSettingsRow } from './db/queue-queries.ts'

export type { QueueSettingsRow }

/** `{ limit: 100, per: '1m' }`: at most `limit` starts per `per` (ms, or a duration such as '1s', '1m'; at least 1 s). */
export interface RateLimit {
  limit: number
  per: number | string
}

/**
 * A queue's flow settings. In configure(), a key left out keeps its value
 * and null clears it; in defineTask's queueSettings, they are the queue's
 * declared defaults.
 */
export interface QueueSettings {
  /** At most this many tasks of the queue running (or on their way to a worker) at once, across all workers. */
  concurrency?: number | null
  /** Starts per period for the whole queue, shared by all workers. */
  rateLimit?: RateLimit | null
  /** At most this many tasks of one group (enqueue's groupKey) at once. */
  groupConcurrency?: number | null
  /** Starts per period for each group. */
  groupRateLimit?: RateLimit | null
}


const MAX_LIMIT = 1_000_000
const MIN_PER_MS = 1000
const MAX_PER_MS = 86_400_000

const limitSchema = z.number().int().min(1, 'must be 1 or more').max(MAX_LIMIT)
const perSchema = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = typeof v === 'number' ? v : parseDuration(v)
  if (ms === null || !Number.isFinite(ms)) {
    ctx.addIssue({ code: 'custom', message: `expected milliseconds or a duration such as "1s", "1m", "1h"; got ${JSON.stringify(v)}` })
    return z.NEVER
  }
  if (ms < MIN_PER_MS || ms > MAX_PER_MS) {
    ctx.addIssue({ code: 'custom', message: `must be between 1s and 24h (a shorter period is a smaller limit per second), got ${ms} ms` })
    return z.NEVER
  }
  return Math.round(ms)
})
const rateSchema = strictOptions({ limit: limitSchema, per: perSchema })

const settingsSchema = strictOptions({
  concurrency: limitSchema.nullable().optional(),
  rateLimit: rateSchema.nullable().optional(),
  groupConcurrency: limitSchema.nullable().optional(),
  groupRateLimit: rateSchema.nullable().optional(),
})

/** Check settings and turn them into the stored form; InvalidOptionsError (naming `where`) when one is wrong. */
export function parseQueueSettings(where: string, settings: unknown): QueueSettingsRow {
  const parsed = settingsSchema.safeParse(settings ?? {})
  if (!parsed.success) throw new InvalidOptionsError(where, zodProblems(parsed.error))
  const s = parsed.data
  const row: QueueSettingsRow = {}
  if (s.concurrency !== undefined) row.concurrency = s.concurrency
  if (s.groupConcurrency !== undefined) row.group_concurrency = s.groupConcurrency
  if (s.rateLimit !== undefined) {
    row.rate_limit = s.rateLimit?.limit ?? null
    row.rate_per_ms = s.rateLimit?.per ?? null
  }
  if (s.groupRateLimit !== undefined) {
    row.group_rate_limit = s.groupRateLimit?.limit ?? null
    row.group_rate_per_ms = s.groupRateLimit?.per ?? null
  }
  return row
}

/**
 * The queue settings a set of tasks declares (defineTask's queueSettings),
 * by queue. Two tasks of one queue that declare different settings are an
 * error: which one should win is not for taskrelay to guess.
 */
export function declaredQueueSettings(tasks: ReadonlyArray<{ name: string; policy: { queue: string }; queueSettings: QueueSettingsRow | null }>): Map<string, QueueSettingsRow> {
  const byQueue = new Map<string, { row: QueueSettingsRow; task: string }>()
  for (const t of tasks) {
    if (t.queueSettings === null) continue
    const seen = byQueue.get(t.policy.queue)
    if (seen && JSON.stringify(seen.row) !== JSON.stringify(t.queueSettings)) {
      throw new InvalidOptionsError(`queue "${t.policy.queue}"`, [
        `tasks "${seen.task}" and "${t.name}" declare different queueSettings for it; declare them on one task, or make them equal`,
      ])
    }
    byQueue.set(t.policy.queue, { row: t.queueSettings, task: t.name })
  }
  return new Map([...byQueue].map(([q, { row }]) => [q, row]))
}
