import type { TaskRelayContext } from '../db/context.ts'
import { loadSql } from '../db/sql.ts'

/** The longest range of finish times one pass rolls up: catching up after downtime goes a chunk per pass. */
const CHUNK_MS = 10 * 60_000
const PRUNE_BATCH = 10_000

export interface RollupResult {
  /** finished tasks added to the rollups */
  tasks: number
  /** (minute, queue) rows written */
  minutes: number
  /** more than one chunk was due: run again soon */
  behind: boolean
}

/**
 * The sweeper's per-minute rollups of finished tasks (0017): counts and
 * wait/run histograms per queue and minute, which stats, charts and rates
 * read instead of the finished history. One transaction per pass: lock the
 * watermark, choose the horizon (rollup-lock.sql), add [watermark, horizon)
 * and move the watermark (rollup-write.sql). Sweepers side by side take
 * turns on the lock; a crash in between rolls both back.
 */
export class RollupWriter {
  readonly #tr: TaskRelayContext
  readonly #chunkMs: number

  constructor(tr: TaskRelayContext, opts: { chunkMs?: number } = {}) {
    this.#tr = tr
    this.#chunkMs = opts.chunkMs ?? CHUNK_MS
  }

  async write(): Promise<RollupResult> {
    const schema = this.#tr.schema
    return this.#tr.connections.transaction(async (trx) => {
      const lock = await trx.query<{ lo: string; hi: string; behind: boolean }>(loadSql('rollup-lock.sql', schema), [this.#chunkMs])
      const r = lock.rows[0]
      if (!r || r.hi === r.lo) return { tasks: 0, minutes: 0, behind: false }
      const res = await trx.query<{ tasks: number; minutes: number }>(loadSql('rollup-write.sql', schema), [r.lo, r.hi])
      return { tasks: res.rows[0]?.tasks ?? 0, minutes: res.rows[0]?.minutes ?? 0, behind: r.behind }
    })
  }

  /** Drop rollup minutes older than the tasks' retention; returns how many. */
  async prune(retentionMs: number): Promise<number> {
    const res = await this.#tr.executor.query(loadSql('rollup-prune.sql', this.#tr.schema), [retentionMs, PRUNE_BATCH])
    return res.rowCount
  }
}
