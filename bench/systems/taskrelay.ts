/**
 * taskrelay adapter. Producer side uses the public enqueue API; the worker
 * side drives the Relay and Worker classes from src/relay and src/worker,
 * each in its own process.
 *
 * pg is loaded the way src/ loads it (from the repo root), so the Pool given to
 * TaskRelay is the class TaskRelay checks against.
 */
import { createRequire } from 'node:module'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import type pgTypes from 'pg'
import { z } from 'zod'
import { Redis } from 'ioredis'
import { TaskRelay, defineTask } from '../../src/index.ts'
import { DATABASE_URL, REDIS_URL, nowMs, type BenchPayload } from '../common.ts'
import type { TaskRelayEvents } from '../../src/events.ts'
import { stageFields, stageSplitSql } from '../stages.ts'
import { chordTasks, prepareChord } from './taskrelay-chord.ts'
import type { ProducerAdapter, ServiceEvent, WorkerModule, WorkerOptions } from './types.ts'

const requireFromSrc = createRequire(new URL('../../src/index.ts', import.meta.url))
const pg = requireFromSrc('pg') as typeof pgTypes

const ROOT = new URL('../../', import.meta.url)
const RELAY_FILE = new URL('src/relay/relay.ts', ROOT)
const WORKER_FILE = new URL('src/worker/worker.ts', ROOT)

/** For experiments: JSON merged over every TaskRelay's options here, e.g. {"durableTransitions":true}. */
const TR_OPTS = JSON.parse(process.env.BENCH_TASKRELAY_OPTS ?? '{}') as object

/** The queue every bench task goes to (the default). */
const QUEUE = 'default'

const payloadSchema = z.object({ n: z.number().int(), t: z.number().optional(), g: z.number().int().optional() })

function benchTask(run: (p: BenchPayload) => void = () => {}) {
  return defineTask({ name: 'bench.noop', payload: payloadSchema, maxAttempts: 3, run: (p) => run(p) })
}

async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    out.push(...keys)
  } while (cursor !== '0')
  return out
}

function version(): string {
  try {
    // The last commit that touched what runs (bench/ commits do not change taskrelay).
    const rev = execFileSync('git', ['log', '-1', '--format=%h', '--', 'src', 'migrations'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'migrations'], { cwd: ROOT, encoding: 'utf8' }).trim()
    // Uncommitted changes to src/ or migrations/ are part of what runs: fingerprint them.
    const wip = dirty ? '+wip.' + createHash('sha1').update(execFileSync('git', ['diff', 'HEAD', '--', 'src', 'migrations'], { cwd: ROOT, encoding: 'utf8' })).digest('hex').slice(0, 7) : ''
    return `git ${rev}${wip}`
  } catch {
    return 'unknown'
  }
}

/** True when the delivery pipeline (Relay, Worker) exists in src/. */
export function deliveryAvailable(): boolean {
  return existsSync(RELAY_FILE) && existsSync(WORKER_FILE)
}

export function createProducer(): ProducerAdapter {
  let pool: pgTypes.Pool
  let tr: TaskRelay
  let schema = ''
  let tag = ''
  let client: pgTypes.PoolClient | null = null
  const task = benchTask()
  let insertBusiness = ''

  return {
    name: 'taskrelay',
    get version() {
      return version()
    },
    settings:
      'enqueue in caller tx (S1) / own pool autocommit, concurrent calls sharing commits (enqueueCoalescing 2, the default; S2, S6), enqueueMany (S3), enqueueWorkflow(chord(group(...), step(callback))) + waitFor(callback) (S8); queue settings through tr.queue(\'default\').configure() (S4L: concurrency 10,000; S9: groupConcurrency 1, groupKey per task); relay process + worker process, concurrency 50, prefetch 450 (500 tasks in hand, as graphile-worker\'s localQueue)' +
      (process.env.BENCH_TASKRELAY_OPTS ? `; TaskRelay options ${process.env.BENCH_TASKRELAY_OPTS}` : ''),
    extraRoles: ['relay'],
    async setup(t) {
      tag = t
      schema = `bench_tr_${t}`
      pool = new pg.Pool({ connectionString: DATABASE_URL, max: 17 })
      pool.on('error', () => {})
      tr = new TaskRelay({ db: pool, schema, ...TR_OPTS })
      await pool.query(`drop schema if exists "${schema}" cascade`)
      await tr.migrate()
      // The caller's own table for S1: one business row per transaction.
      await pool.query(`create table "${schema}".bench_orders (id bigint generated always as identity primary key, n integer not null, created_at timestamptz not null default now())`)
      insertBusiness = `insert into "${schema}".bench_orders (n) values ($1)`
    },
    async teardown() {
      client?.release()
      client = null
      await tr.close()
      await pool.query(`drop schema if exists "${schema}" cascade`)
      await pool.end()
      // The relay's and worker's Redis keys (ready lists, epoch marker) of this run.
      const u = new URL(REDIS_URL)
      const redis = new Redis({ host: u.hostname, port: Number(u.port || 6379), maxRetriesPerRequest: 3 })
      try {
        const keys = await scanKeys(redis, `bench:tr:${tag}*`)
        if (keys.length) await redis.del(...keys)
      } finally {
        redis.disconnect()
      }
    },
    async enqueueOne(p) {
      // S1 (and only S1 runs it one after another): the caller's transaction
      // inserts its business row and enqueues in the same commit.
      client ??= await pool.connect()
      await client.query('begin')
      await client.query({ text: insertBusiness, values: [p.n], name: 'bench_business' })
      await tr.enqueue(client, task, p)
      await client.query('commit')
    },
    async enqueueConcurrent(p) {
      // S2, S6: no surrounding transaction; an autocommit INSERT on taskrelay's
      // pool, shared with the calls other loops make meanwhile (group commit).
      await tr.enqueue(task, p)
    },
    async businessOnly(p) {
      client ??= await pool.connect()
      await client.query('begin')
      await client.query({ text: insertBusiness, values: [p.n], name: 'bench_business' })
      await client.query('commit')
    },
    async enqueueBulk(ps) {
      // S9: a payload's group g is its groupKey.
      await tr.enqueueMany(ps.map((payload) => (payload.g === undefined ? { task, payload } : { task, payload, options: { groupKey: `g${payload.g}` } })))
    },
    queueSettings: {
      // Through the public API (tr.queue().configure()), read back from the row itself.
      async set(settings) {
        await tr.queue(QUEUE).configure(settings)
      },
      async read() {
        const r = await pool.query(`select concurrency, group_concurrency from "${schema}".queues where name = $1`, [QUEUE])
        return r.rows[0] ? { concurrency: r.rows[0].concurrency, groupConcurrency: r.rows[0].group_concurrency } : null
      },
      async reset() {
        // configure() with every setting null keeps the row, and a queue with a
        // row stays flow-controlled: only deleting it makes the queue plain again.
        await pool.query(`delete from "${schema}".queues where name = $1`, [QUEUE])
      },
    },
    perGroupLimit: "enqueueMany with groupKey 'g<n>' per task, tr.queue('default').configure({ groupConcurrency: 1 })",
    async stageBreakdown() {
      // Per path (direct from Postgres / via the relay): see stages.ts.
      const r = await pool.query(stageSplitSql(schema))
      return stageFields(r.rows[0])
    },
    async prepareChord(members, base) {
      return prepareChord(tr, pool, schema, members, base)
    },
    async countStored() {
      const r = await pool.query(`select count(*)::int as total, count(distinct (payload->>'n'))::int as distinct from "${schema}".tasks`)
      return r.rows[0]
    },
    workerOptions(): WorkerOptions {
      return { system: 'taskrelay', tag, concurrency: 50, schema, keyPrefix: `bench:tr:${tag}` }
    },
  }
}


type Service = { start(): Promise<void> | void; stop(): Promise<void> | void; events: TaskRelayEvents }

/** Records what S7 reports: lane switches, stale messages dropped, re-dispatches, the relay losing Redis. */
function recordEvents(events: TaskRelayEvents): () => ServiceEvent[] {
  const out: ServiceEvent[] = []
  const add = (type: string, count = 1, detail?: string) => out.push({ type, at: nowMs(), count, ...(detail ? { detail } : {}) })
  events.on('worker:lane', (e) => add('worker:lane', 1, e.lane))
  events.on('worker:stale-messages', (e) => add('worker:stale-messages', e.count))
  events.on('relay:redispatch', (e) => add('relay:redispatch', e.count, e.reason))
  events.on('relay:redis', (e) => add('relay:redis', 1, e.reachable ? 'reachable' : 'unreachable'))
  return () => out
}

export const worker: WorkerModule = {
  async prepareWorker(opts, onTask) {
    if (!existsSync(WORKER_FILE)) throw new Error('src/worker/worker.ts does not exist yet')
    const { Worker } = (await import(WORKER_FILE.href)) as { Worker: new (tr: TaskRelay, o: object) => Service }
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 12 })
    pool.on('error', () => {})
    const tr = new TaskRelay({ db: pool, schema: opts.schema as string, ...TR_OPTS })
    // S8: the chord's member and callback tasks as well.
    const chord = opts.chordMembers ? chordTasks(onTask, opts.chordMembers as number) : null
    const w = new Worker(tr, {
      redis: opts.redisUrl ?? REDIS_URL,
      keyPrefix: opts.keyPrefix as string,
      tasks: chord ? [benchTask(onTask), chord.member, chord.callback] : [benchTask(onTask)],
      queues: [QUEUE],
      concurrency: opts.concurrency,
      // The documented setting for many short tasks (README, "Tuning for
      // throughput"): up to 500 tasks per Redis read and per claim, the same
      // number in hand as graphile-worker's localQueue here.
      prefetch: 500 - (opts.concurrency as number),
      // For experiments: JSON merged over these options.
      ...JSON.parse(process.env.BENCH_TASKRELAY_WORKER_OPTS ?? '{}'),
    })
    const events = recordEvents(w.events)
    // Diagnosis: say when one task id starts twice in this worker (BENCH_TRACE_DUPES=1).
    if (process.env.BENCH_TRACE_DUPES) {
      const seen = new Map<string, number>()
      w.events.on('task:started', (e) => {
        const prev = seen.get(e.id)
        if (prev !== undefined) console.error(`DUPLICATE START task ${e.id} attempt ${e.attempt}, ${(nowMs() - prev).toFixed(2)} ms after the first`)
        seen.set(e.id, nowMs())
      })
    }
    return {
      events,
      async start() {
        await w.start()
      },
      async stop() {
        await w.stop()
        await tr.close()
        await pool.end()
      },
    }
  },
  async prepareRole(role, opts) {
    if (role !== 'relay') throw new Error(`unknown role ${role}`)
    if (!existsSync(RELAY_FILE)) throw new Error('src/relay/relay.ts does not exist yet')
    const { Relay } = (await import(RELAY_FILE.href)) as { Relay: new (tr: TaskRelay, o: object) => Service }
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 })
    pool.on('error', () => {})
    const tr = new TaskRelay({ db: pool, schema: opts.schema as string, ...TR_OPTS })
    // For experiments: JSON merged over these options.
    const r = new Relay(tr, { redis: opts.redisUrl ?? REDIS_URL, keyPrefix: opts.keyPrefix as string, ...JSON.parse(process.env.BENCH_TASKRELAY_RELAY_OPTS ?? '{}') })
    const events = recordEvents(r.events)
    return {
      events,
      async start() {
        await r.start()
      },
      async stop() {
        await r.stop()
        await tr.close()
        await pool.end()
      },
    }
  },
}
