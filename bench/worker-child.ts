/**
 * A worker (or relay) process, forked by the orchestrator for S4-S6.
 *
 *   parent → child: {type:'start'} | {type:'stop'}
 *   child → parent: {type:'ready'} | {type:'started'} | {type:'count', n} |
 *                   {type:'stopped', count, latencies, events} | {type:'error', message}
 *
 * The handler is a no-op that records the task's bench sequence number in the
 * ledger and, when the payload carries the enqueue time (S5), the latency.
 */
import { LedgerWriter } from './ledger.ts'
import { nowMs, type BenchPayload } from './common.ts'
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

  if (args.role === 'worker') {
    service = await mod.worker.prepareWorker(args.opts, (p: BenchPayload) => {
      if (p.t !== undefined) latencies.push(nowMs() - p.t)
      ledger!.record(p.n)
    })
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
        send({ type: 'stopped', count: ledger?.count ?? 0, latencies, events: service.events?.() ?? [] })
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
