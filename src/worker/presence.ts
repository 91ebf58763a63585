import type { Logger } from 'pino'
import type { Executor } from '../db/executor.ts'
import { workerRegister, workerUnregister, workersPrune } from '../db/worker-queries.ts'

type PresenceRow = Parameters<typeof workerRegister>[1]

/**
 * A worker's row in <schema>.workers, renewed every heartbeatMs: which queues
 * and tasks a live worker serves, for `status` and `stats`. Never on the task
 * path; a failed renewal is a warning, and a row nobody renews expires.
 */
export class WorkerPresence {
  readonly #db: Executor
  readonly #row: PresenceRow
  readonly #everyMs: number
  readonly #log: Logger
  #timer: NodeJS.Timeout | null = null

  constructor(db: Executor, row: PresenceRow, everyMs: number, log: Logger) {
    this.#db = db
    this.#row = row
    this.#everyMs = everyMs
    this.#log = log
  }

  /** Register now (a failure fails the worker's start, like its other start-up checks), then keep renewing. */
  async start(): Promise<void> {
    await workersPrune(this.#db, this.#row)
    await workerRegister(this.#db, this.#row)
    this.#timer = setInterval(() => {
      workerRegister(this.#db, this.#row).catch((err: unknown) =>
        this.#log.warn({ err }, 'could not renew this worker in the workers table; status may call its queues unserved'),
      )
    }, this.#everyMs)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
    await workerUnregister(this.#db, this.#row).catch((err: unknown) =>
      this.#log.warn({ err }, 'could not remove this worker from the workers table; it expires on its own'),
    )
  }
}
