import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Executor } from '../db/executor.ts'
import { taskEventListenerRemove, taskEventListenerRenew } from '../db/task-events-queries.ts'

/** How long a registration counts without renewal; renewed three times within it. */
const TTL_MS = 60_000

/**
 * Tells Postgres that this TaskRelay has event subscribers: the hot-path
 * statements announce events only while some registration is fresh (0019),
 * because a NOTIFY serializes its transaction's commit with every other
 * notifying one. start() registers (and resolves once the row is
 * committed, so what starts after is announced), then renews every 20 s;
 * stop() removes the row. A crashed process's row expires after a minute.
 */
export class ListenerRegistration {
  readonly #db: Executor
  readonly #schema: string
  readonly #log: Logger
  readonly #id = randomUUID()
  #timer: NodeJS.Timeout | null = null

  constructor(db: Executor, schema: string, log: Logger) {
    this.#db = db
    this.#schema = schema
    this.#log = log
  }

  async start(): Promise<void> {
    await this.#renew()
    this.#timer ??= setInterval(() => {
      this.#renew().catch((err: unknown) => this.#log.warn({ err }, 'could not renew the task events registration; retrying in 20 s'))
    }, TTL_MS / 3)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
    await taskEventListenerRemove(this.#db, { schema: this.#schema, id: this.#id }).catch((err: unknown) =>
      this.#log.warn({ err }, 'could not remove the task events registration; it expires within a minute'),
    )
  }

  #renew(): Promise<void> {
    return taskEventListenerRenew(this.#db, { schema: this.#schema, id: this.#id, ttlMs: TTL_MS })
  }
}
