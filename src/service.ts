import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { systemClock, type Clock } from './clock.ts'
import { silentLogger } from './logger.ts'
import { TaskRelayEvents } from './events.ts'
import { coerceError } from './errors.ts'
import { MAX_TIMER_MS } from './duration.ts'
import { isRedisConnectionLoss } from './redis/failover.ts'

/** What every background service receives besides its settings (never public config). */
export interface ServiceDeps {
  logger?: Logger
  clock?: Clock
  events?: TaskRelayEvents
}

/**
 * Start/stop plumbing around one loop: `runOnce()` → sleep `delayAfter(result)`
 * (cut short by `wake()`) → repeat. An iteration that throws is logged and
 * retried with jittered exponential backoff; the loop never exits on errors
 * (a database or broker outage costs time, not the process).
 */
export abstract class Service<R> {
  protected readonly log: Logger
  protected readonly clock: Clock
  readonly events: TaskRelayEvents
  /** Last time runOnce() completed without throwing: for health checks. */
  lastSuccessAt: Date | null = null
  consecutiveErrors = 0
  #loop: Promise<void> | null = null
  #stopController = new AbortController()
  #sleepController: AbortController | null = null
  #wakeRequested = false

  constructor(component: string, deps: ServiceDeps = {}) {
    this.log = (deps.logger ?? silentLogger()).child({ component })
    this.clock = deps.clock ?? systemClock
    this.events = deps.events ?? new TaskRelayEvents()
  }

  /** One iteration of the loop; tests call it directly. */
  abstract runOnce(): Promise<R>
  /** How long to sleep after a successful iteration (0: go again at once). */
  protected abstract delayAfter(result: R): number
  protected async onStart(): Promise<void> {}
  /** Called after the loop has ended. */
  protected async onStop(): Promise<void> {}

  get running(): boolean {
    return this.#loop !== null
  }

  /** Aborted when stop() begins. */
  protected get stopSignal(): AbortSignal {
    return this.#stopController.signal
  }

  async start(): Promise<void> {
    if (this.#loop) return
    this.#stopController = new AbortController()
    await this.onStart()
    this.#loop = this.#run()
  }

  async stop(): Promise<void> {
    if (!this.#loop) return
    this.#stopController.abort()
    this.wake()
    const loop = this.#loop
    await loop
    this.#loop = null
    await this.onStop()
  }

  /** Run the next iteration now (e.g. on NOTIFY) instead of after the sleep. */
  wake(): void {
    this.#wakeRequested = true
    this.#sleepController?.abort()
  }

  async #run(): Promise<void> {
    while (!this.#stopController.signal.aborted) {
      this.#wakeRequested = false
      let delay: number
      try {
        const result = await this.runOnce()
        this.lastSuccessAt = new Date()
        this.consecutiveErrors = 0
        delay = this.delayAfter(result)
      } catch (thrown) {
        this.consecutiveErrors++
        const error = coerceError(thrown)
        delay = errorBackoffMs(this.consecutiveErrors)
        const fields = { err: error, consecutiveErrors: this.consecutiveErrors, retryInMs: delay }
        // A failover cuts commands off; that is expected and retried, not an error.
        if (isRedisConnectionLoss(error)) this.log.warn(fields, 'loop iteration failed: the redis connection was lost (a failover or restart); retrying')
        else this.log.error(fields, 'loop iteration failed')
        this.events.emit('service:error', { component: this.constructor.name, error })
      }
      if (delay > 0 && !this.#wakeRequested && !this.#stopController.signal.aborted) {
        this.#sleepController = new AbortController()
        // Past MAX_TIMER_MS Node fires after 1 ms: a long sleep must not become a hot loop.
        await sleep(Math.min(delay, MAX_TIMER_MS), undefined, { signal: this.#sleepController.signal }).catch(() => {})
        this.#sleepController = null
      }
    }
  }
}

/** 100 ms doubling to 10 s, with ±25 % jitter so replicas don't retry in lockstep. */
export function errorBackoffMs(consecutiveErrors: number): number {
  const base = Math.min(100 * 2 ** (consecutiveErrors - 1), 10_000)
  return Math.round(base * (0.75 + Math.random() * 0.5))
}
