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
