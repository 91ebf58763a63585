import type pg from 'pg'
import type { Logger } from 'pino'
import { PgListener } from './listener.ts'

/**
 * waitFor()'s shared LISTEN on `<schema>.task_finished`, whose payload is a
 * comma-separated list of ids that reached a final state. After a reconnect
 * every waiter re-reads its row, since notifications in the gap are lost.
 */
export class TaskListener {
  readonly #waiters = new Map<string, Set<() => void>>()
  readonly #listener: PgListener

  constructor(pool: pg.Pool, channel: string, log: Logger) {
    this.#listener = new PgListener(
      pool,
      [channel],
      (_channel, payload) => {
        for (const id of payload.split(',')) for (const fn of this.#waiters.get(id) ?? []) fn()
      },
      log,
      () => {
        for (const set of this.#waiters.values()) for (const fn of set) fn()
      },
    )
  }

  subscribe(id: string, onFinished: () => void): () => void {
    let set = this.#waiters.get(id)
    if (!set) this.#waiters.set(id, (set = new Set()))
    set.add(onFinished)
    return () => {
      set.delete(onFinished)
      if (set.size === 0) this.#waiters.delete(id)
    }
  }

  ready(): Promise<void> {
    return this.#listener.ready()
  }

  close(): Promise<void> {
    return this.#listener.close()
  }
}
