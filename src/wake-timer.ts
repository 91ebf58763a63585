/** One pending wake-up, at the earliest time asked for (an unref'd timer: it never keeps the process alive). */
export class WakeTimer {
  readonly #wake: () => void
  #timer: NodeJS.Timeout | null = null
  /** performance.now() when the set timer fires */
  #at = Infinity

  constructor(wake: () => void) {
    this.#wake = wake
  }

  /** Wake in `inMs`, unless an earlier wake-up is already set. */
  in(inMs: number): void {
    const at = performance.now() + inMs
    if (this.#timer && this.#at <= at) return
    if (this.#timer) clearTimeout(this.#timer)
    this.#at = at
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#at = Infinity
      this.#wake()
    }, inMs)
    this.#timer.unref()
  }

  clear(): void {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    this.#at = Infinity
  }
}

/**
 * Wake-ups from task_ready notifications, for whatever takes due tasks (a
 * relay, a worker's Postgres lane). Enqueues send '' (due now); retries send
 * the milliseconds until the first is due: wake then, not at the next poll.
 */
export class TaskReadyWakeups {
  readonly #wake: () => void
  readonly #timer: WakeTimer

  constructor(wake: () => void) {
    this.#wake = wake
    this.#timer = new WakeTimer(wake)
  }

  onNotify(payload: string): void {
    const inMs = payload === '' ? 0 : Number(payload)
    if (!(inMs > 0) || !Number.isFinite(inMs)) return this.#wake()
    this.#timer.in(inMs)
  }

  /** The earliest delayed task falls due in `inMs` (null: none): wake then, if sooner than `withinMs` (the next poll). */
  nextDueIn(inMs: number | null, withinMs: number): void {
    if (inMs != null && inMs < withinMs) this.#timer.in(Math.max(1, Math.ceil(inMs)))
  }

  clear(): void {
    this.#timer.clear()
  }
}
