/**
 * What a component listens with: a LISTEN connection (PgListener) or, where
 * none can be had, a Poller. Both call their owner's catch-up callback (a
 * relay's wake(), a waiter's re-read) — the poller on every tick.
 */
export interface Wakeups {
  readonly connected: boolean
  /** Start listening (or polling); resolves once it does. */
  ready(): Promise<void>
  /** Stop; ready() may start again. */
  close(): Promise<void>
}

/**
 * Polling for a db that cannot LISTEN (a Kysely instance hides its pg client).
 * Its timer keeps the process alive while it runs, as a LISTEN socket would:
 * a script awaiting waitFor() must not exit early.
 */
export class Poller implements Wakeups {
  readonly #everyMs: number
  readonly #onTick: () => void
  #timer: NodeJS.Timeout | null = null

  constructor(everyMs: number, onTick: () => void) {
    this.#everyMs = everyMs
    this.#onTick = onTick
  }

  get connected(): boolean {
    return true
  }

  ready(): Promise<void> {
    this.#timer ??= setInterval(this.#onTick, this.#everyMs)
    return Promise.resolve()
  }

  close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
    return Promise.resolve()
  }
}
