/**
 * Where does S5's latency go? Runs taskrelay's relay and worker in their own
 * processes (as the bench does), enqueues one task every 10 ms, and records a
 * timestamp at every hop of every task, on one clock
 * (performance.timeOrigin + now(), comparable across processes):
 *
 *   enqueue call → enqueue returned (committed) → relay got NOTIFY →
 *   dispatch query returned → RPUSH replied → worker BLMPOP returned →
 *   claim query returned → handler started
 *
 * or, when an idle worker claims straight from Postgres on the enqueue's
 * NOTIFY (the Postgres lane beside Redis, issue 17):
 *
 *   enqueue call → enqueue returned → worker got NOTIFY → claim returned → handler started
 *
 * Each path is reported apart, then every task end to end.
 * Prints the p50, p90 and p99 of each hop. Bench-only; nothing in src/ knows.
 *
 *   node bench/tools/latency-trace.ts [tasks=300] [intervalMs=10]
 */
import { fork } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type pgTypes from 'pg'
import type { Redis as RedisType } from 'ioredis'
import { z } from 'zod'
import { TaskRelay, defineTask } from '../../src/index.ts'
import { Relay } from '../../src/relay/relay.ts'
import { Worker } from '../../src/worker/worker.ts'
import { DATABASE_URL, REDIS_URL, nowMs, percentile, sleep } from '../common.ts'
import { stageFields, stageNote, stageSplitSql } from '../stages.ts'

const requireFromSrc = createRequire(new URL('../../src/index.ts', import.meta.url))
const pg = requireFromSrc('pg') as typeof pgTypes
// The ioredis that src/ uses (bench/ has its own copy for the peers).
const { Redis } = requireFromSrc('ioredis') as { Redis: typeof RedisType }
const schema = 'bench_trace'
const prefix = 'bench:trace'

type Mark = [label: string, t: number]
const marks: Mark[] = []
const mark = (label: string) => marks.push([label, nowMs()])

/** Record when queries whose text contains `needle` return, under `label`. */
function traceQueries(rules: Array<[needle: string, label: string]>, notifyLabel: string) {
  const orig = pg.Pool.prototype.query as (...a: unknown[]) => unknown
  pg.Pool.prototype.query = function (this: unknown, ...args: unknown[]) {
    const cfg = args[0] as { text?: string } | string
    const text = typeof cfg === 'string' ? cfg : (cfg?.text ?? '')
    const rule = rules.find(([needle]) => text.includes(needle))
    const res = orig.apply(this, args)
    if (rule && res && typeof (res as Promise<unknown>).then === 'function') {
      void (res as Promise<{ rowCount?: number }>).then((r) => {
        if ((r?.rowCount ?? 0) > 0) mark(rule[1])
      }, () => {})
    }
    return res
  } as typeof pg.Pool.prototype.query
  const emit = pg.Client.prototype.emit
  pg.Client.prototype.emit = function (this: pgTypes.Client, event: string | symbol, ...a: unknown[]) {
    if (event === 'notification') mark(notifyLabel)
    return emit.call(this, event, ...a)
  } as typeof emit
}

function traceRedis(rules: Array<[command: string, label: string]>) {
  const orig = Redis.prototype.sendCommand
  Redis.prototype.sendCommand = function (this: RedisType, command: { name: string; promise: Promise<unknown> }, ...rest: unknown[]) {
    const rule = rules.find(([name]) => command.name === name)
    const out = (orig as (...a: unknown[]) => unknown).call(this, command, ...rest)
    if (rule) void command.promise.then((r) => r && mark(rule[1]), () => {})
    return out
  } as typeof orig
}

const task = defineTask({ name: 'trace.noop', payload: z.object({ n: z.number() }), run: () => void mark('worker: handler started') })

async function child(role: string) {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 8 })
  const tr = new TaskRelay({ db: pool, schema })
  let service: { start(): Promise<void>; stop(): Promise<void> }
  if (role === 'relay') {
    traceQueries([["set state = 'dispatched'", 'relay: dispatch returned']], 'relay: NOTIFY arrived')
    traceRedis([['rpush', 'relay: RPUSH replied']])
    service = new Relay(tr, { redis: REDIS_URL, keyPrefix: prefix })
  } else {
    traceQueries([["set state = 'running'", 'worker: claim returned']], 'worker: NOTIFY arrived')
    traceRedis([['blmpop', 'worker: BLMPOP returned']])
    service = new Worker(tr, { redis: REDIS_URL, keyPrefix: prefix, tasks: [task], concurrency: 50 })
  }
  await service.start()
  process.send!({ type: 'ready' })
  process.on('message', async () => {
    await service.stop()
    await tr.close()
    await pool.end()
    process.send!({ type: 'marks', marks })
    setTimeout(() => process.exit(0), 20)
  })
}

async function main() {
  const total = Number(process.argv[2] ?? 300)
  const interval = Number(process.argv[3] ?? 10)
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 })
  await pool.query(`drop schema if exists ${schema} cascade`)
  const tr = new TaskRelay({ db: pool, schema })
  await tr.migrate()
  const redis = new Redis(REDIS_URL)
  const stale = await redis.keys(`${prefix}*`)
  if (stale.length) await redis.del(...stale)
  const self = fileURLToPath(import.meta.url)
  const children = ['relay', 'worker'].map((role) => fork(self, ['--child', role]))
  await Promise.all(children.map((c) => new Promise((r) => c.once('message', r))))
  await sleep(300)
  for (let n = 0; n < total; n++) {
    mark('enqueue call')
    await tr.enqueue(task, { n })
    mark('enqueue returned')
    await sleep(interval)
  }
  await sleep(300)
  const childMarks = await Promise.all(
    children.map((c) => new Promise<Mark[]>((r) => {
      c.on('message', (m: { type: string; marks: Mark[] }) => m.type === 'marks' && r(m.marks))
      c.send({ type: 'stop' })
    })),
  )
  const all = [...marks, ...childMarks.flat()].sort((a, b) => a[1] - b[1])
  // Split the timeline into one segment per task: each starts at an "enqueue call".
  const viaRedis = ['enqueue call', 'enqueue returned', 'relay: NOTIFY arrived', 'relay: dispatch returned', 'relay: RPUSH replied', 'worker: BLMPOP returned', 'worker: claim returned', 'worker: handler started']
  const direct = ['enqueue call', 'enqueue returned', 'worker: NOTIFY arrived', 'worker: claim returned', 'worker: handler started']
  const hops = new Map<string, number[]>()
  const add = (key: string, x: number) => hops.set(key, [...(hops.get(key) ?? []), x])
  let seg: Mark[] = []
  const flush = () => {
    const first = new Map<string, number>()
    for (const [l, t] of seg) if (!first.has(l)) first.set(l, t)
    // A task the relay dispatched went through Redis; one it did not, straight from Postgres.
    const order = first.has('relay: dispatch returned') ? viaRedis : direct
    const path = order === viaRedis ? 'via relay and Redis' : 'claimed from Postgres by the idle worker'
    if (order.every((l) => first.has(l))) {
      for (let i = 1; i < order.length; i++) {
        const [from, to] = [order[i - 1]!, order[i]!]
        add(`[${path}] ${from} → ${to}`, first.get(to)! - first.get(from)!)
      }
      add(`[${path}] TOTAL`, first.get(order.at(-1)!)! - first.get(order[0]!)!)
      add('ALL TASKS: enqueue call → handler started', first.get(order.at(-1)!)! - first.get(order[0]!)!)
    }
    seg = []
  }
  for (const m of all) {
    if (m[0] === 'enqueue call') flush()
    seg.push(m)
  }
  flush()
  const ms = (xs: number[], p: number) => percentile(xs, p).toFixed(3).padStart(7)
  console.log(`complete traces: ${hops.get('ALL TASKS: enqueue call → handler started')?.length ?? 0} of ${total}`)
  for (const [k, xs] of [...hops].sort(([a], [b]) => a.localeCompare(b))) {
    console.log(`${ms(xs, 50)} ms p50 ${ms(xs, 90)} ms p90 ${ms(xs, 99)} ms p99  (${String(xs.length).padStart(3)})  ${k}`)
  }
  // The bench's stage split tells the paths apart from the rows alone (dispatched_at = started_at:
  // claimed straight from Postgres); its counts should match the trace's.
  const rows = stageFields((await pool.query(stageSplitSql(schema))).rows[0])
  console.log(`task rows (bench/stages.ts): ${rows.directPct!.toFixed(1)} % with dispatched_at = started_at (direct); ${stageNote(rows)}`)
  await pool.query(`drop schema if exists ${schema} cascade`)
  await tr.close()
  await pool.end()
  redis.disconnect()
}

if (process.argv[2] === '--child') void child(process.argv[3]!)
else await main()
