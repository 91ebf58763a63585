import type { Executor } from './db/executor.ts'
import type { PreparedTask } from './db/task-insert.ts'
import { taskInsertMany, taskInsertOne } from './db/task-insert.ts'

interface Pending {
  task: PreparedTask
  resolve: (id: string) => void
  reject: (err: unknown) => void
}

/** Rows per shared INSERT: the batch statement's own sweet spot (S3's batches). */
const MAX_BATCH = 1000
/** Payload bytes per shared INSERT: far below node-pg's and Postgres' limits for one parameter. */
const MAX_BATCH_BYTES = 8 * 1024 * 1024

/**
 * Group commit for enqueues that have no caller transaction (`enqueue(task,
 * payload)`): calls that arrive while `maxInFlight` INSERTs are already on
 * their way share the next one, and so its commit. A lone call is sent at
 * once (calls made in the same tick go together), so coalescing costs a
 * trickle no latency and turns a burst of concurrent calls into a few
 * multi-row INSERTs instead of one commit each. Every call still resolves
 * only after its row committed. Only keyless tasks without dependencies
 * come here (TaskRelay.enqueue): a keyed INSERT may wait for another
 * transaction holding the same (task name, key), and must not make its
 * neighbours wait.
 *
 * Input Postgres would refuse (NUL, lone surrogates, out-of-range times) is
 * refused by prepareTask() before it gets here; the per-row fallback below
 * is for what only the server can see (constraints, triggers).
 *
 * Callers share a commit, not a fate: a batch the server refused for a
 * per-row reason (class 22 data exception, class 23 integrity violation) was
 * rolled back whole, so each of its tasks is then written on its own and
 * only the bad one fails. Any other error reaches every caller of the batch,
 * as it would have reached each of them alone; after a lost connection it is
 * unknown whether the rows committed, and writing them again could enqueue a
 * task twice.
 */
export class EnqueueCoalescer {
  readonly #db: Executor
  readonly #schema: string
  readonly #maxInFlight: number
  #queue: Pending[] = []
  #inFlight = new Set<Promise<void>>()
  #scheduled = false

  constructor(db: Executor, schema: string, maxInFlight: number) {
    this.#db = db
    this.#schema = schema
    this.#maxInFlight = maxInFlight
  }

  /** Write one prepared task; resolves with its id once committed. */
  add(task: PreparedTask): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      this.#queue.push({ task, resolve, reject })
      this.#schedule()
    })
  }

  /**
   * Send everything queued now, and wait for it and for the INSERTs on
   * their way. Calls made meanwhile are not waited for (TaskRelay.close()
   * sends those on their own).
   */
  async drain(): Promise<void> {
    const flights = [...this.#inFlight]
    while (this.#queue.length > 0) flights.push(this.#flush())
    await Promise.allSettled(flights)
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight.size >= this.#maxInFlight) return
    // A microtask, not a timer: calls made in the same tick (a Promise.all of
    // enqueues) join the batch, and nothing waits for a clock.
    this.#scheduled = true
    queueMicrotask(() => {
      this.#scheduled = false
      while (this.#queue.length > 0 && this.#inFlight.size < this.#maxInFlight) this.#flush()
    })
  }

  #flush(): Promise<void> {
    let bytes = 0
    let count = 0
    while (count < this.#queue.length && count < MAX_BATCH) {
      bytes += this.#queue[count]!.task.payloadJson.length
      if (count > 0 && bytes > MAX_BATCH_BYTES) break
      count++
    }
    const batch = this.#queue.splice(0, count)
    const flight: Promise<void> = this.#write(batch).finally(() => {
      this.#inFlight.delete(flight)
      // Whatever queued meanwhile goes now, as one batch.
      if (this.#queue.length > 0) this.#schedule()
    })
    this.#inFlight.add(flight)
    return flight
  }

  async #write(batch: Pending[]): Promise<void> {
    if (batch.length === 1) return this.#writeAlone(batch[0]!)
    let ids: string[]
    try {
      ids = await taskInsertMany(this.#db, this.#schema, batch.map((p) => p.task))
    } catch (err) {
      if (!rolledBackForOneRow(err)) {
        for (const p of batch) p.reject(err)
        return
      }
      // One after another: this rare path must not crowd the pool.
      for (const p of batch) await this.#writeAlone(p)
      return
    }
    batch.forEach((p, i) => p.resolve(ids[i]!))
  }

  async #writeAlone(p: Pending): Promise<void> {
    try {
      p.resolve((await taskInsertOne(this.#db, this.#schema, p.task)).id)
    } catch (err) {
      p.reject(err)
    }
  }
}

/**
 * The server answered with a data exception (22xxx) or an integrity
 * violation (23xxx): the statement, and with it the autocommit transaction,
 * rolled back, and one row may be the cause.
 */
function rolledBackForOneRow(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code)
}
