/**
 * The progress bar of `npm run bench` (moved out of report.ts).
 */
/** A one-line progress bar on stderr (redrawn in place on a TTY, a plain line per cell otherwise). */
export class Progress {
  readonly #total: number
  readonly #tty = process.stderr.isTTY === true
  readonly #t0 = Date.now()
  #done = 0
  #label = ''
  #fraction = 0
  #lastDraw = 0

  constructor(total: number) {
    this.#total = total
  }

  begin(label: string): void {
    this.#label = label
    this.#fraction = 0
    if (!this.#tty) process.stderr.write(`[${this.#done + 1}/${this.#total}] ${label} ...\n`)
    this.draw(true)
  }

  update(fraction: number): void {
    this.#fraction = Math.max(0, Math.min(1, fraction))
    this.draw(false)
  }

  end(summary: string): void {
    this.#done++
    this.#fraction = 0
    if (this.#tty) {
      process.stderr.write(`\r\x1b[2K  ${this.#label}: ${summary}\n`)
      this.draw(true)
    } else {
      process.stderr.write(`      ${summary}\n`)
    }
  }

  draw(force: boolean): void {
    if (!this.#tty) return
    const now = Date.now()
    if (!force && now - this.#lastDraw < 80) return
    this.#lastDraw = now
    const width = 30
    const overall = (this.#done + this.#fraction) / this.#total
    const filled = Math.round(overall * width)
    const secs = Math.round((now - this.#t0) / 1000)
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled)
    process.stderr.write(`\r\x1b[2K${bar} ${String(Math.round(overall * 100)).padStart(3)}%  ${this.#done}/${this.#total}  ${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}  ${this.#label}`)
  }

  finish(): void {
    if (this.#tty) process.stderr.write('\r\x1b[2K')
  }
}
