/**
 * graphile-worker adapter (Postgres). Documented fast path: WorkerUtils.addJob
 * on a shared pool (quickAddJob opens a pool per call, which the docs advise
 * against for repeated use), addJobs for batches, and a runner with
 * `concurrency`, LISTEN/NOTIFY wake-ups (always on), and the batching options
 * from the project's performance page: localQueue, completeJobBatchDelay 0,
 * failJobBatchDelay 0.
 */
import { readFileSync } from 'node:fs'
import pg from 'pg'
import { Logger, makeWorkerUtils, run, runMigrations, type WorkerUtils } from 'graphile-worker'
import { DATABASE_URL, type BenchPayload } from '../common.ts'
import type { ProducerAdapter, WorkerModule, WorkerOptions } from './types.ts'

const VERSION = (JSON.parse(readFileSync(new URL('../node_modules/graphile-worker/package.json', import.meta.url), 'utf8')) as { version: string }).version
const TASK = 'bench'
const silent = new Logger(() => () => {})

export function createProducer(): ProducerAdapter {
  let pool: pg.Pool
  let utils: WorkerUtils
  let schema = ''
  let tag = ''
  return {
    name: 'graphile-worker',
    version: VERSION,
    settings: 'WorkerUtils.addJob (S1, S2, S6), addJobs 1,000 (S3); run concurrency 50, localQueue 500, completeJobBatchDelay 0, LISTEN/NOTIFY',
    async setup(t) {
      tag = t
      schema = `bench_gw_${t}`
      pool = new pg.Pool({ connectionString: DATABASE_URL, max: 17 })
      pool.on('error', () => {})
    pool.on('connect', (c) => c.on('error', () => {}))
      await pool.query(`drop schema if exists "${schema}" cascade`)
      utils = await makeWorkerUtils({ pgPool: pool, schema, logger: silent })
      await utils.migrate()
    },
    async teardown() {
      await utils.release()
      await pool.query(`drop schema if exists "${schema}" cascade`)
      await pool.end()
    },
    async enqueueOne(p) {
      await utils.addJob(TASK, p)
    },
    async enqueueConcurrent(p) {
      await utils.addJob(TASK, p)
    },
    async enqueueBulk(ps) {
      // S9: a payload's group g is the job's named queue; graphile-worker runs a named queue's jobs one at a time.
      await utils.addJobs(ps.map((payload) => (payload.g === undefined ? { identifier: TASK, payload } : { identifier: TASK, payload, queueName: `g${payload.g}` })))
    },
    perGroupLimit: "addJobs with queueName 'g<n>' per job: a named queue's jobs run one at a time (serial queues), so the limit is fixed at 1",
    async countStored() {
      const r = await pool.query(`select count(*)::int as total, count(distinct (payload->>'n'))::int as distinct from "${schema}"._private_jobs`)
      return r.rows[0]
    },
    workerOptions(): WorkerOptions {
      return { system: 'graphile-worker', tag, concurrency: 50, schema }
    },
  }
}

export const worker: WorkerModule = {
  async prepareWorker(opts, onTask) {
    const schema = opts.schema as string
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 12 })
    pool.on('error', () => {})
    pool.on('connect', (c) => c.on('error', () => {}))
    await runMigrations({ pgPool: pool, schema, logger: silent })
    let runner: Awaited<ReturnType<typeof run>> | null = null
    return {
      async start() {
        runner = await run({
          pgPool: pool,
          schema,
          concurrency: opts.concurrency,
          noHandleSignals: true,
          logger: silent,
          taskList: {
            [TASK]: async (payload) => {
              const r = onTask(payload as BenchPayload)
              if (r) await r
            },
          },
          preset: {
            worker: {
              localQueue: { size: 500 },
              completeJobBatchDelay: 0,
              failJobBatchDelay: 0,
            },
          },
        })
      },
      async stop() {
        await runner?.stop()
        await pool.end()
      },
    }
  },
}
