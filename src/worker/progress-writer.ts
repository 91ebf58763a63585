import type { Logger } from 'pino'
import type { Executor } from '../db/executor.ts'
import { loadSql } from '../db/sql.ts'
import { InvalidOptionsError } from '../errors.ts'
import { jsonbProblem } from '../jsonb.ts'
import type { Attempt } from './attempt.ts'

/** Largest `info` of ctx.progress(), as JSON bytes. */
export const MAX_PROGRESS_INFO_BYTES = 8192

export interface Report {
  value: number
  /** JSON text, or null */
  info: string | null
}

/**
 * ctx.progress() of this worker's attempts, throttled: only the latest report
 * of each attempt is kept, and all of them are written in one statement at
 * most once per `intervalMs` (task-progress-batch.sql). A report is a hint,
 * not an outcome: one lost to a crash or a busy row is simply superseded.
 */
export class ProgressWriter {
  readonly #db: Executor
  readonly #sql: string
  readonly #intervalMs: number
  readonly #log: Logger
  #latest = new Map<Attempt, Report>()
  #timer: NodeJS.Timeout | null = null
  #flushing: Promise<void> | null = null
  #lastFlushAt = 0

  constructor(db: Executor, schema: string, intervalMs: number, log: Logger) {
    this.#db = db
    this.#sql = loadSql('task-progress-batch.sql', schema)
    this.#intervalMs = intervalMs
    this.#log = log
  }

  /** Keep `value` (0 to 100) and `info` (JSON) as the attempt's progress; InvalidOptionsError for bad input. */
  report(attempt: Attempt, value: number, info: unknown): void {
    this.#latest.set(attempt, progressReport(value, info))
    this.#schedule()
  }

  #schedule(): void {
    if (this.#timer || this.#flushing) return
    const delay = Math.max(0, this.#lastFlushAt + this.#intervalMs - Date.now())
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#flushing = this.#flush().finally(() => {
        this.#flushing = null
        if (this.#latest.size > 0) this.#schedule()
      })
    }, delay)
    this.#timer.unref()
  }

  async #flush(): Promise<void> {
    this.#lastFlushAt = Date.now()
    const batch = [...this.#latest].filter(([a]) => a.active && !a.recording)
    this.#latest = new Map()
    if (batch.length === 0) return
    try {
      const res = await this.#db.query<{ id: string }>(this.#sql, [
        batch.map(([a]) => a.id),
        batch.map(([a]) => a.attempt),
        batch.map(([, r]) => r.value),
        batch.map(([, r]) => r.info),
      ])
      const written = new Set(res.rows.map((r) => String(r.id)))
      // Skipped (row busy): try again next time, unless a newer report came meanwhile.
      for (const [a, r] of batch) if (!written.has(a.id) && a.active && !this.#latest.has(a)) this.#latest.set(a, r)
    } catch (err) {
      this.#log.warn({ err, attempts: batch.length }, 'could not write task progress; the next report replaces it')
    }
  }

  /** Write what is kept (once), then stop. */
  async stop(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    await this.#flushing
    if (this.#latest.size > 0) await this.#flush()
  }
}

/** A ctx.progress() report checked and made storable; InvalidOptionsError says what is wrong. */
export function progressReport(value: number, info: unknown): Report {
  return { value: checkValue(value), info: checkInfo(info) }
}

function checkValue(value: number): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 100) return value
  throw new InvalidOptionsError('ctx.progress()', [`value: expected a number from 0 to 100 (a percentage), got ${typeof value === 'number' ? value : typeof value}`])
}

function checkInfo(info: unknown): string | null {
  if (info === undefined || info === null) return null
  let json: string | undefined
  try {
    json = JSON.stringify(info)
  } catch (err) {
    throw new InvalidOptionsError('ctx.progress()', [`info: not JSON (${(err as Error).message})`])
  }
  if (json === undefined) throw new InvalidOptionsError('ctx.progress()', [`info: ${typeof info} is not JSON; pass an object, array, string, number or boolean`])
  const problem = jsonbProblem(json)
  if (problem) throw new InvalidOptionsError('ctx.progress()', [`info: cannot be stored: ${problem}`])
  const bytes = Buffer.byteLength(json)
  if (bytes > MAX_PROGRESS_INFO_BYTES) {
    throw new InvalidOptionsError('ctx.progress()', [`info: ${bytes} bytes of JSON, over the limit of ${MAX_PROGRESS_INFO_BYTES}; keep progress small (counts, a step name)`])
  }
  return json
}
