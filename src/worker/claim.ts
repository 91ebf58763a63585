import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { Executor } from '../db/executor.ts'
import { taskClaimBatch, type ClaimedTask } from '../db/worker-queries.ts'
import { errorBackoffMs } from '../service.ts'

/**
 * The claim statement, sent again while it fails, for up to half a lease: a
 * failure may come after the commit (the reply lost with its connection),
 * and the statement gives this worker back what it already claimed
 * (task-claim-batch.sql). null: give the messages back to Redis.
 */
export async function claimWithRetry(
  db: Executor,
  p: { schema: string; ids: string[]; tokens: string[]; leaseMs: number; workerId: string },
  log: Logger,
  stopSignal: AbortSignal,
): Promise<ClaimedTask[] | null> {
  const giveUpAt = Date.now() + p.leaseMs / 2
  for (let tries = 1; ; tries++) {
    try {
      const rows = await taskClaimBatch(db, p)
      if (tries > 1) log.info({ tries, count: rows.length }, 'claim went through after failing')
      return rows
    } catch (err) {
      const delayMs = errorBackoffMs(tries)
      if (stopSignal.aborted || Date.now() + delayMs > giveUpAt) {
        log.warn({ err, tries, count: p.ids.length }, 'claim failed; pushing messages back to redis')
        return null
      }
      if (tries === 1) log.warn({ err, count: p.ids.length }, 'claim failed; sending it again (it may have committed)')
      await sleep(delayMs, undefined, { signal: stopSignal }).catch(() => {}) // stop cuts the wait short
    }
  }
}
