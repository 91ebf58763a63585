/**
 * How soon after a Sentinel promotion do taskrelay's Redis clients work
 * again? Per trial: a fresh primary, one replica and three sentinels (real
 * redis-server processes, test/support/redis-servers.ts), a `commands` client
 * writing in a loop and a `blocking` client, both made by createRedis. The
 * primary is SIGKILLed; the sentinels promote the replica. Reported, from the
 * first +switch-master any sentinel publishes:
 *  - write: the first write through the commands client that succeeds after the kill;
 *  - ready: the blocking client's first 'ready' after the kill.
 * Negative: the client got through before that sentinel's announcement (it
 * asked a sentinel that had switched already).
 *
 *   node bench/tools/failover-resume.ts [--trials 5] [--down-after-ms 1000]
 */
import { Redis } from 'ioredis'
import { createRedis, closeRedis } from '../../src/redis/connection.ts'
import { silentLogger } from '../../src/logger.ts'
import { startSentinelSet } from '../../test/support/redis-servers.ts'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const trials = arg('--trials', 5)
const downAfterMs = arg('--down-after-ms', 1000)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Trial {
  killToSwitchMs: number
  writeAfterSwitchMs: number
  readyAfterSwitchMs: number
}

async function trial(): Promise<Trial> {
  const set = await startSentinelSet({ replicas: 1, sentinels: 3, downAfterMs })
  const log = silentLogger()
  const commands = createRedis(set.url, { role: 'commands', commandTimeoutMs: 5000 }, log)
  const blocking = createRedis(set.url, { role: 'blocking' }, log)
  const watchers = set.sentinels.map((s) => new Redis({ host: '127.0.0.1', port: s.port, lazyConnect: true }))
  try {
    await Promise.all([commands.connect(), blocking.connect()])
    let switchedAt: number | null = null
    for (const w of watchers) {
      w.on('error', () => {})
      w.on('message', () => (switchedAt ??= performance.now()))
      await w.connect()
      await w.subscribe('+switch-master')
    }
    let killedAt = Infinity
    let readyAt: number | null = null
    blocking.on('ready', () => {
      if (performance.now() > killedAt) readyAt ??= performance.now()
    })
    let writtenAt: number | null = null
    let stop = false
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        try {
          await commands.set('failover-resume', String(i))
          if (performance.now() > killedAt) writtenAt ??= performance.now()
        } catch {
          /* refused while the primary is gone: try again */
        }
        await sleep(1)
      }
    })()
    await sleep(200)
    await set.primary.kill()
    // From here on (the process is gone) a write can only succeed on the new primary.
    killedAt = performance.now()
    const deadline = performance.now() + 30_000
    while ((switchedAt === null || writtenAt === null || readyAt === null) && performance.now() < deadline) await sleep(5)
    stop = true
    await writer
    if (switchedAt === null || writtenAt === null || readyAt === null) throw new Error('no failover or no resume within 30 s')
    return { killToSwitchMs: switchedAt - killedAt, writeAfterSwitchMs: writtenAt - switchedAt, readyAfterSwitchMs: readyAt - switchedAt }
  } finally {
    for (const w of watchers) w.disconnect()
    closeRedis(commands)
    closeRedis(blocking)
    await set.stop()
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const results: Trial[] = []
for (let i = 0; i < trials; i++) {
  const t = await trial()
  results.push(t)
  console.log(`trial ${i + 1}: kill→switch ${t.killToSwitchMs.toFixed(0)} ms, switch→write ${t.writeAfterSwitchMs.toFixed(0)} ms, switch→ready(blocking) ${t.readyAfterSwitchMs.toFixed(0)} ms`)
}
const w = results.map((r) => r.writeAfterSwitchMs)
const b = results.map((r) => r.readyAfterSwitchMs)
console.log(`median switch→write ${median(w).toFixed(0)} ms (max ${Math.max(...w).toFixed(0)}), median switch→ready ${median(b).toFixed(0)} ms (max ${Math.max(...b).toFixed(0)})`)
process.exit(0)
