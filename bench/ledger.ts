/**
 * The independent exactly-once ledger.
 *
 * Every handler of every system records the bench sequence number of the task
 * it ran (HINCRBY <key> <n> 1) in a Redis database that no system under test
 * uses. At the end of a run the orchestrator reads the hash back: a sequence
 * number that is missing was lost, a count above 1 ran twice. Either makes the
 * run INVALID. Writes are buffered for a few ms and sent as one pipeline, so
 * the ledger costs every system the same small amount and never sits on the
 * handler's await path.
 *
 * For enqueue-only scenarios (S1-S3) the systems' own stores are counted
 * instead (see SystemAdapter.countStored): every sequence number stored exactly once.
 */
import { Redis } from 'ioredis'
import { LEDGER_REDIS_DB, REDIS_URL } from './common.ts'

export function ledgerRedis(): Redis {
  const u = new URL(REDIS_URL)
  return new Redis({ host: u.hostname, port: Number(u.port || 6379), db: LEDGER_REDIS_DB, lazyConnect: false, maxRetriesPerRequest: 3 })
}

export function ledgerKey(runTag: string): string {
  return `bench:ledger:${runTag}`
}

/** Used inside worker processes. */
export class LedgerWriter {
  readonly #redis: Redis
  readonly #key: string
  #buffer: number[] = []
  #timer: NodeJS.Timeout | null = null
  #inflight: Promise<unknown> = Promise.resolve()
  /** Tasks this process recorded (including those still buffered). */
  count = 0

  constructor(key: string, redis: Redis = ledgerRedis()) {
    this.#redis = redis
    this.#key = key
  }

  record(n: number): void {
    this.count++
    this.#buffer.push(n)
    if (this.#buffer.length >= 1000) this.#flushNow()
    else this.#timer ??= setTimeout(() => this.#flushNow(), 5)
  }

  #flushNow(): void {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    const batch = this.#buffer
    if (batch.length === 0) return
    this.#buffer = []
    const p = this.#redis.pipeline()
    for (const n of batch) p.hincrby(this.#key, String(n), 1)
    const sent = p.exec()
    this.#inflight = Promise.all([this.#inflight, sent])
  }

  async flush(): Promise<void> {
    this.#flushNow()
    await this.#inflight
  }

  async close(): Promise<void> {
    await this.flush()
    this.#redis.disconnect()
  }
}

export interface LedgerVerdict {
  expected: number
  /** distinct sequence numbers that ran at least once */
  ran: number
  missing: number
  /** sequence numbers that ran more than once */
  duplicated: number
  /** sequence numbers outside 0..expected-1 */
  unknown: number
  valid: boolean
  detail: string
}

/** Compare the ledger with the sequence numbers 0..expected-1. */
export async function verifyLedger(redis: Redis, key: string, expected: number): Promise<LedgerVerdict> {
  const all = await redis.hgetall(key)
  let ran = 0
  let duplicated = 0
  let unknown = 0
  const seen = new Uint8Array(expected)
  for (const [field, value] of Object.entries(all)) {
    const n = Number(field)
    const c = Number(value)
    if (!Number.isInteger(n) || n < 0 || n >= expected) {
      unknown++
      continue
    }
    seen[n] = 1
    ran++
    if (c > 1) duplicated++
  }
  const missing = expected - ran
  const valid = missing === 0 && duplicated === 0 && unknown === 0
  return { expected, ran, missing, duplicated, unknown, valid, detail: verdictText(valid, missing, duplicated, unknown, expected, 'ran') }
}

export function verdictText(valid: boolean, missing: number, duplicated: number, unknown: number, expected: number, verb: string): string {
  if (valid) return `all ${expected} ${verb} exactly once`
  const parts = []
  if (missing) parts.push(`${missing} missing`)
  if (duplicated) parts.push(`${duplicated} ${verb} twice or more`)
  if (unknown) parts.push(`${unknown} unknown`)
  return `INVALID: ${parts.join(', ')} (of ${expected})`
}

export async function dropLedger(redis: Redis, key: string): Promise<void> {
  await redis.del(key)
}
