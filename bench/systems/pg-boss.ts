/**
 * pg-boss adapter (Postgres). Documented fast path: send() / insert() for
 * producers; a worker with batch fetch (batchSize), the queue's `notify`
 * option with the instance's LISTEN/NOTIFY listener (useListenNotify), the
 * shortest polling interval (0.5 s) as backstop, and burstWhenBatchFull so a
 * backlog drains without waiting between full batches.
 */
import { readFileSync } from 'node:fs'
import { PgBoss } from 'pg-boss'
import pg from 'pg'
import { DATABASE_URL, type BenchPayload } from '../common.ts'
import type { ProducerAdapter, WorkerModule, WorkerOptions } from './types.ts'

const VERSION = (JSON.parse(readFileSync(new URL('../node_modules/pg-boss/package.json', import.meta.url), 'utf8')) as { version: string }).version
const QUEUE = 'bench'
const LOCAL_CONCURRENCY = Number(process.env.BENCH_PGBOSS_LOCAL_CONCURRENCY ?? 1)

export function createProducer(): ProducerAdapter {
  let boss: PgBoss
  let schema = ''
  let tag = ''
  return {
    name: 'pg-boss',
    version: VERSION,
    settings: 'send (S1, S2, S6), insert 1,000 (S3); work batchSize 50, queue notify + useListenNotify, polling 0.5 s, burstWhenBatchFull',
    async setup(t) {
      tag = t
      schema = `bench_pgb_${t}`
      // A send-only instance: maintenance and scheduling run in the worker process.
      boss = new PgBoss({ connectionString: DATABASE_URL, schema, max: 17, supervise: false, schedule: false, useListenNotify: false })
      boss.on('error', () => {})
      await boss.start()
      await boss.createQueue(QUEUE, { notify: true })
    },
    async teardown() {
      await boss.stop({ graceful: false }).catch(() => {})
      // The schema is ours alone: drop it through a plain connection.
      const client = new pg.Client({ connectionString: DATABASE_URL })
      await client.connect()
      await client.query(`drop schema if exists "${schema}" cascade`)
      await client.end()
    },
    async enqueueOne(p) {
      await boss.send(QUEUE, p)
    },
    async enqueueConcurrent(p) {
      await boss.send(QUEUE, p)
    },
    async enqueueBulk(ps) {
      await boss.insert(
        QUEUE,
        // S9: a payload's group g is the job's group.
        ps.map((data) => (data.g === undefined ? { data } : { data, group: { id: `g${data.g}` } })),
      )
    },
    perGroupLimit: "insert with group { id: 'g<n>' } per job, work() with groupConcurrency: 1 (global, tracked in the database)",
    async countStored() {
      const client = new pg.Client({ connectionString: DATABASE_URL })
      await client.connect()
      try {
        const r = await client.query(`select count(*)::int as total, count(distinct (data->>'n'))::int as distinct from "${schema}".job where name = $1`, [QUEUE])
        return r.rows[0]
      } finally {
        await client.end()
      }
    },
    workerOptions(): WorkerOptions {
      return { system: 'pg-boss', tag, concurrency: 50, schema }
    },
  }
}

export const worker: WorkerModule = {
  async prepareWorker(opts, onTask) {
    const boss = new PgBoss({ connectionString: DATABASE_URL, schema: opts.schema as string, max: 10, useListenNotify: true, migrate: false })
    boss.on('error', () => {})
    await boss.start()
    return {
      async start() {
        await boss.work<BenchPayload>(
          QUEUE,
          {
            // concurrency = localConcurrency pollers × batchSize jobs each
            localConcurrency: LOCAL_CONCURRENCY,
            batchSize: Math.ceil(opts.concurrency / LOCAL_CONCURRENCY),
            pollingIntervalSeconds: 0.5,
            notifyPollingIntervalSeconds: 0.5,
            burstWhenBatchFull: true,
            // S9: at most this many jobs of one group active at once, across all workers.
            ...(opts.perGroupLimit ? { groupConcurrency: opts.perGroupLimit } : {}),
          },
          async (jobs) => {
            const pending: Promise<void>[] = []
            for (const job of jobs) {
              const r = onTask(job.data)
              if (r) pending.push(r)
            }
            // S9's handler sleeps (handlerMs): the batch completes when every job's has.
            if (pending.length) await Promise.all(pending)
          },
        )
      },
      async stop() {
        await boss.stop({ graceful: true, timeout: 5000 }).catch(() => {})
      },
    }
  },
}
