import type { Redis } from 'ioredis'
import type { Executor } from '../db/executor.ts'
import { loadSql, plainArray } from '../db/sql.ts'
import { decodeMessage, type Keys } from '../redis/keys.ts'

export interface StaleMessagesResult {
  /** queue keys looked at in this pass */
  keysScanned: number
  messagesChecked: number
  messagesRemoved: number
  /** the pass reached the end of the keyspace: the next one starts over */
  cycleDone: boolean
}

/** Queue keys per pass (SCAN goes on from where the previous pass stopped). */
const KEYS_PER_PASS = 100
/** SCAN calls per pass, at 1,000 keys each: a Redis shared with much else is walked over several passes. */
const SCANS_PER_PASS = 10
/** Messages read from the head of each list per pass, where unread messages pile up. */
const MESSAGES_PER_KEY = 200

/**
 * Removes Redis messages that can never claim anything. Every re-dispatch
 * (sweeper, relay after a failover) leaves the old message behind with a
 * token no row has any more; workers drop such messages as they pop them,
 * but a queue nobody reads keeps them, one more per re-dispatch, and keeps
 * its key after its tasks are gone. A list emptied here disappears from
 * Redis, so a queue with no dispatched task left leaves no key.
 *
 * Safe beside relays and workers: a message is removed only if Postgres says
 * its task is not dispatched with its token. The relay commits a dispatch
 * before pushing it, so a message in the list was committed before it was
 * read here, and once a task moved on its old token never comes back.
 */
export class StaleMessageCollector {
  readonly #db: Executor
  readonly #schema: string
  readonly #keys: Keys
  #cursor = '0'

  constructor(db: Executor, schema: string, keys: Keys) {
    this.#db = db
    this.#schema = schema
    this.#keys = keys
  }

  /** One bounded pass: a few SCAN calls, one LRANGE pipeline, one query, one LREM pipeline. */
  async runPass(redis: Redis): Promise<StaleMessagesResult> {
    const keys = new Set<string>()
    let scans = 0
    do {
      const [next, found] = await redis.scan(this.#cursor, 'MATCH', this.#keys.readyPattern(), 'COUNT', 1000)
      this.#cursor = next
      for (const key of found) keys.add(key)
    } while (this.#cursor !== '0' && keys.size < KEYS_PER_PASS && ++scans < SCANS_PER_PASS)
    const cycleDone = this.#cursor === '0'
    if (keys.size === 0) return { keysScanned: 0, messagesChecked: 0, messagesRemoved: 0, cycleDone }

    const read = redis.pipeline()
    for (const key of keys) read.lrange(key, 0, MESSAGES_PER_KEY - 1)
    const replies = (await read.exec()) ?? []
    const messages: Array<{ key: string; message: string }> = []
    ;[...keys].forEach((key, i) => {
      const [err, list] = replies[i] ?? [new Error('no reply'), null]
      if (!err && Array.isArray(list)) for (const message of list as string[]) messages.push({ key, message })
    })

    // Messages that do not parse can claim nothing either (workers skip them).
    const ids: string[] = []
    const tokens: string[] = []
    const checked: number[] = []
    messages.forEach(({ message }, i) => {
      // decodeMessage checks ids and tokens as Postgres casts them (bigint, uuid).
      const m = decodeMessage(message)
      if (m) {
        ids.push(m.id)
        tokens.push(m.token)
        checked.push(i)
      }
    })
    const live = new Set<number>()
    if (ids.length > 0) {
      const res = await this.#db.query<{ i: number }>(loadSql('relay-live-messages.sql', this.#schema), [plainArray(ids), plainArray(tokens)])
      for (const row of res.rows) live.add(checked[row.i - 1]!)
    }
    const stale = messages.filter((_, i) => !live.has(i))
    let removed = 0
    if (stale.length > 0) {
      const remove = redis.pipeline()
      // One occurrence each, from the head, where LRANGE read it: no walk of the whole list.
      for (const { key, message } of stale) remove.lrem(key, 1, message)
      for (const [err, count] of (await remove.exec()) ?? []) {
        if (err) throw new Error(`could not remove stale messages: ${err.message}`, { cause: err })
        removed += Number(count)
      }
    }
    return { keysScanned: keys.size, messagesChecked: messages.length, messagesRemoved: removed, cycleDone }
  }
}

/**
 * Runs the collector's passes beside the relay's rounds, never inside them: a
 * pass that hangs on Redis (a paused or partitioned server) must not hold up
 * the next dispatch. One pass at a time; a cycle's passes follow one another
 * round after round, then the next cycle waits `everyMs`.
 */
export class StaleMessageSchedule {
  readonly #everyMs: number
  readonly #onError: (err: unknown) => void
  #running: Promise<void> | null = null
  #dueAt = 0

  constructor(everyMs: number, onError: (err: unknown) => void) {
    this.#everyMs = everyMs
    this.#onError = onError
  }

  /** Start a pass if one is due and none runs; `pass` runs it (the relay logs what it removed). */
  maybeStart(now: number, pass: () => Promise<StaleMessagesResult>): void {
    if (this.#running || now < this.#dueAt) return
    this.#running = pass()
      .then(
        (result) => {
          this.#dueAt = result.cycleDone ? now + this.#everyMs : now
        },
        (err: unknown) => {
          this.#onError(err)
          this.#dueAt = now + this.#everyMs
        },
      )
      .finally(() => (this.#running = null))
  }

  /** Resolves once no pass runs (at stop, and for tests that drive runOnce()). */
  async settled(): Promise<void> {
    await this.#running
  }
}
