/**
 * A worker's slot accounting, without I/O: at most `concurrency` handlers
 * run at once, and up to `prefetch` more tasks may be claimed ahead of free
 * slots. A handler that outlives its attempt (it ignored the abort after a
 * timeout) keeps its slot as `stuck`; once stuck handlers hold every slot,
 * nothing is prefetched, because a prefetched task could not start.
 */
export class Slots {
  readonly concurrency: number
  readonly prefetch: number
  /** handlers whose code has not settled: what the concurrency cap counts */
  busy = 0
  /** of those, handlers whose attempt is over but whose code runs on */
  stuck = 0
  #waiters: Array<() => void> = []

  constructor(concurrency: number, prefetch: number) {
    this.concurrency = concurrency
    this.prefetch = prefetch
  }

  /** A handler may start now. */
  get canStart(): boolean {
    return this.busy < this.concurrency
  }

  /** Stuck handlers hold every slot: the worker can run nothing. */
  get allStuck(): boolean {
    return this.stuck >= this.concurrency
  }

  /** How many more tasks to take, given how many are claimed and not started or still being claimed. */
  free(queued: number): number {
    const prefetch = this.allStuck ? 0 : this.prefetch
    return Math.max(0, this.concurrency + prefetch - this.busy - queued)
  }

  /** How many tasks to take, waiting until there is room (or `signal` is aborted). */
  async whenFree(queued: () => number, signal: AbortSignal): Promise<number> {
    for (;;) {
      const free = this.free(queued())
      if (free > 0 || signal.aborted) return free
      await this.changed(signal)
      // Handlers that finish together free their slots in the same turn of the
      // event loop: collect them all, so the next read pops a batch, not one.
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
  }

  /** Resolves at the next notify(), or at once when `signal` is (or gets) aborted. */
  changed(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const onAbort = () => resolve()
      signal.addEventListener('abort', onAbort, { once: true })
      this.#waiters.push(() => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      })
    })
  }

  /** Wake everything waiting in changed(). */
  notify(): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const w of waiters) w()
  }
}
