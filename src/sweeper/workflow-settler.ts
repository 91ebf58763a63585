import type { TaskRelayContext } from '../db/context.ts'
import { loadSql } from '../db/sql.ts'

const BATCH = 500
const START = '00000000-0000-0000-0000-000000000000'

/**
 * The sweeper's pass over open workflows (sweeper-settle-workflows.sql): a
 * failed step's compensations and error callback, enqueued once, and
 * finished workflows closed. A cursor over workflow ids, so each pass reads
 * one batch of open workflows, never the finished history.
 */
export class WorkflowSettler {
  readonly #tr: TaskRelayContext
  #cursor = START

  constructor(tr: TaskRelayContext) {
    this.#tr = tr
  }

  async settle(): Promise<{ failuresHandled: number; compensationsEnqueued: number; finished: number }> {
    const res = await this.#tr.executor.query<{ scanned: number; last_id: string | null; failed_handled: number; enqueued: number; finished: number }>(
      loadSql('sweeper-settle-workflows.sql', this.#tr.schema),
      [this.#cursor, BATCH],
    )
    const r = res.rows[0]!
    // A short batch reached the end: start from the lowest id next time.
    this.#cursor = r.scanned < BATCH || r.last_id === null ? START : r.last_id
    return { failuresHandled: r.failed_handled, compensationsEnqueued: r.enqueued, finished: r.finished }
  }
}
