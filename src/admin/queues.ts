import { queueConfigure, queueSetPaused, queueStatus, type QueueStatusRow } from '../db/queue-queries.ts'
import { queueNameSchema, zodProblems } from '../config.ts'
import { InvalidOptionsError } from '../errors.ts'
import { parseQueueSettings, type QueueSettings } from '../queue-settings.ts'
import type { AdminContext } from './context.ts'

/** A rate as stored: `limit` starts per `perMs`. */
export interface StoredRateLimit {
  limit: number
  perMs: number
}

/** A queue's flow settings and what is in it now (the queue_status view). */
export interface QueueInfo {
  queue: string
  /** nothing new starts while paused; running tasks finish */
  paused: boolean
  /** groups paused on their own */
  pausedGroups: string[]
  concurrency: number | null
  rateLimit: StoredRateLimit | null
  groupConcurrency: number | null
  groupRateLimit: StoredRateLimit | null
  /** a handler's ctx.rateLimited() holds the whole queue until then (null: not held) */
  throttledUntil: Date | null
  /** where the settings come from: 'code' (defineTask's queueSettings), 'runtime' (configure, CLI, SQL) or 'none' */
  source: 'code' | 'runtime' | 'none'
  /** pending and due (waiting for a slot, a token or the relay) */
  due: number
  /** pending with a run time in the future */
  delayed: number
  dispatched: number
  running: number
}

type Ctx = Pick<AdminContext, 'executor' | 'schema'>

function rate(limit: number | null, perMs: string | null): StoredRateLimit | null {
  return limit === null || perMs === null ? null : { limit, perMs: Number(perMs) }
}

function toQueueInfo(r: QueueStatusRow): QueueInfo {
  return {
    queue: r.queue,
    paused: r.paused,
    pausedGroups: r.paused_groups,
    concurrency: r.concurrency,
    rateLimit: rate(r.rate_limit, r.rate_per_ms),
    groupConcurrency: r.group_concurrency,
    groupRateLimit: rate(r.group_rate_limit, r.group_rate_per_ms),
    throttledUntil: r.throttled_until,
    source: r.source,
    due: r.due,
    delayed: r.delayed,
    dispatched: r.dispatched,
    running: r.running,
  }
}

/** Every queue with unfinished tasks, settings or registered task types. */
export async function listQueues(ctx: Ctx): Promise<QueueInfo[]> {
  return (await queueStatus(ctx.executor, { schema: ctx.schema, queue: null })).map(toQueueInfo)
}

/** One queue's settings and counts, or null when taskrelay knows no such queue. */
export async function readQueue(ctx: Ctx, queue: string): Promise<QueueInfo | null> {
  const [row] = await queueStatus(ctx.executor, { schema: ctx.schema, queue })
  return row ? toQueueInfo(row) : null
}

function checkName(where: string, name: unknown): string {
  const parsed = queueNameSchema.safeParse(name)
  if (!parsed.success) throw new InvalidOptionsError(where, zodProblems(parsed.error).map((p) => `queue name: ${p}`))
  return parsed.data
}

function checkGroup(where: string, group: unknown): string | null {
  if (group === undefined || group === null) return null
  if (typeof group !== 'string' || group.length < 1 || group.length > 200) {
    throw new InvalidOptionsError(where, [`group: expected a group key of 1-200 characters, got ${JSON.stringify(group)}`])
  }
  return group
}

/**
 * One queue's flow control, from code: `tr.queue('emails').configure({ concurrency: 5 })`.
 * Settings live in Postgres (taskrelay.queues) and apply to every relay and
 * worker within a round, without a restart.
 */
export class QueueHandle {
  readonly name: string
  readonly #ctx: Ctx

  constructor(ctx: Ctx, name: string) {
    this.name = checkName('tr.queue()', name)
    this.#ctx = ctx
  }

  /** Set the given settings (null clears one; keys left out stay); returns the queue as it is now. */
  async configure(settings: QueueSettings): Promise<QueueInfo> {
    const row = parseQueueSettings(`settings of queue "${this.name}"`, settings)
    await queueConfigure(this.#ctx.executor, { schema: this.#ctx.schema, queue: this.name, settings: row })
    return (await this.info())!
  }

  /** Nothing new of the queue (or of one group) starts once this resolves; running tasks finish, the backlog waits. */
  async pause(options: { group?: string } = {}): Promise<void> {
    const group = checkGroup(`pause of queue "${this.name}"`, options.group)
    await queueSetPaused(this.#ctx.executor, { schema: this.#ctx.schema, queue: this.name, group, paused: true })
  }

  /** Let the queue (or the group) start tasks again; false when it was not paused. */
  async resume(options: { group?: string } = {}): Promise<boolean> {
    const group = checkGroup(`resume of queue "${this.name}"`, options.group)
    return queueSetPaused(this.#ctx.executor, { schema: this.#ctx.schema, queue: this.name, group, paused: false })
  }

  /** Settings and counts; null when the queue has no tasks, settings or task types. */
  info(): Promise<QueueInfo | null> {
    return readQueue(this.#ctx, this.name)
  }
}
