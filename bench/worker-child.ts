/**
 * A worker (or relay) process, forked by the orchestrator for S4-S6.
 *
 *   parent → child: {type:'start'} | {type:'stop'}
 *   child → parent: {type:'ready'} | {type:'started'} | {type:'count', n} |
 *                   {type:'stopped', count, latencies, events, groups} | {type:'error', message}
 *
 * The handler is a no-op that records the task's bench sequence number in the
 * ledger and, when the payload carries the enqueue time (S5), the latency.
 * With opts.handlerMs (S9) it first sleeps that long; for a payload with a
 * group (S9) it tracks, per group, when its last task finished and how many
 * of its tasks were in the handler at once (the per-group limit, checked).
 */
import { LedgerWriter } from './ledger.ts'
import { nowMs, sleep, type BenchPayload } from './common.ts'
import type { PreparedService, WorkerModule, WorkerOptions } from './systems/types.ts'

interface ChildArgs {
  role: 'worker' | string
  opts: WorkerOptions
  ledgerKey: string
}

const args = JSON.parse(process.argv[2]!) as ChildArgs
const send = (m: object) => process.send?.(m)

process.on('uncaughtException', (err) => {
  send({ type: 'error', message: `${err.name}: ${err.message}` })
})
process.on('unhandledRejection', (err) => {
  send({ type: 'error', message: String((err as Error)?.stack ?? err) })
})

async function main() {
  const mod = (await import(`./systems/${args.opts.system}.ts`)) as { worker: WorkerModule }
  let service: PreparedService
  const ledger = args.role === 'worker' ? new LedgerWriter(args.ledgerKey) : null
  const latencies: number[] = []
  let lastSent = -1
  let ticker: NodeJS.Timeout | null = null

  // S9, per group: when its last task finished (nowMs), tasks in the handler now, and at most.
  const groups = new Map<number, { lastAt: number; active: number; maxActive: number; done: number }>()
  const handlerMs = args.opts.handlerMs ?? 0

  if (args.role === 'worker') {
    const record = (p: BenchPayload) => {
      if (p.t !== undefined) latencies.push(nowMs() - p.t)
      ledger!.record(p.n)
    }
    service = await mod.worker.prepareWorker(
      args.opts,
      handlerMs > 0
        ? async (p: BenchPayload) => {
            const g = p.g === undefined ? null : groups.get(p.g) ?? groups.set(p.g, { lastAt: 0, active: 0, maxActive: 0, done: 0 }).get(p.g)!
            if (g) g.maxActive = Math.max(g.maxActive, ++g.active)
            await sleep(handlerMs)
            if (g) {
              g.active--
              g.done++
              g.lastAt = nowMs()
            }
            record(p)
          }
        : record,
    )
  } else {
    if (!mod.worker.prepareRole) throw new Error(`${args.opts.system} has no role ${args.role}`)
    service = await mod.worker.prepareRole(args.role, args.opts)
  }

  process.on('message', async (m: { type: string }) => {
    try {
      if (m.type === 'start') {
        await service.start()
        if (ledger) {
          ticker = setInterval(() => {
            if (ledger.count !== lastSent) {
              lastSent = ledger.count
              send({ type: 'count', n: ledger.count })
            }
          }, 10)
        }
        send({ type: 'started' })
      } else if (m.type === 'stop') {
        if (ticker) clearInterval(ticker)
        await service.stop()
        await ledger?.close()
        send({ type: 'stopped', count: ledger?.count ?? 0, latencies, events: service.events?.() ?? [], groups: Object.fromEntries(groups) })
        setTimeout(() => process.exit(0), 50)
      }
    } catch (err) {
      send({ type: 'error', message: String((err as Error)?.stack ?? err) })
    }
  })
  send({ type: 'ready' })
}

main().catch((err) => {
  send({ type: 'error', message: String((err as Error)?.stack ?? err) })
  setTimeout(() => process.exit(1), 50)
})
