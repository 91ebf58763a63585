/**
 * BullMQ adapter (Redis). Documented fast path: one shared ioredis connection
 * for producers (commands pipeline on their own), Queue.addBulk for batches,
 * a Worker with `concurrency`, auto-removal of completed jobs.
 */
import { readFileSync } from 'node:fs'
import { Queue, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import { REDIS_URL, type BenchPayload } from '../common.ts'
import type { ProducerAdapter, WorkerModule, WorkerOptions } from './types.ts'

const VERSION = (JSON.parse(readFileSync(new URL('../node_modules/bullmq/package.json', import.meta.url), 'utf8')) as { version: string }).version
const QUEUE = 'bench'
const JOB_OPTS = { removeOnComplete: true, removeOnFail: 1000 }

function connection(forWorker: boolean, url = REDIS_URL): Redis {
  const u = new URL(url)
  // Workers need maxRetriesPerRequest: null (blocking commands); producers fail fast.
  const r = new Redis({ host: u.hostname, port: Number(u.port || 6379), maxRetriesPerRequest: forWorker ? null : 3 })
  // S7 kills Redis: refused reconnects are expected there, and surface as failed calls.
  r.on('error', () => {})
  return r
}

export function createProducer(): ProducerAdapter {
  let redis: Redis
  let queue: Queue<BenchPayload>
  let prefix = ''
  let tag = ''
  return {
    name: 'bullmq',
    version: VERSION,
    settings: 'Queue.add (S1, S2, S6), addBulk 1,000 (S3); Worker concurrency 50, removeOnComplete',
    async setup(t, o) {
      tag = t
      prefix = `bench:bq:${t}`
      redis = connection(false, o?.redisUrl)
      queue = new Queue<BenchPayload>(QUEUE, { connection: redis, prefix, defaultJobOptions: JOB_OPTS })
      queue.on('error', () => {})
      await queue.waitUntilReady()
    },
    async teardown() {
      await queue.obliterate({ force: true }).catch(() => {})
      await queue.close()
      redis.disconnect()
    },
    async enqueueOne(p) {
      await queue.add('noop', p)
    },
    async enqueueConcurrent(p) {
      await queue.add('noop', p)
    },
    async enqueueBulk(ps) {
      await queue.addBulk(ps.map((data) => ({ name: 'noop', data })))
    },
    async countStored() {
      const jobs = await queue.getJobs(['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'])
      return { total: jobs.length, distinct: new Set(jobs.map((j) => j?.data?.n)).size }
    },
    workerOptions(): WorkerOptions {
      return { system: 'bullmq', tag, concurrency: 50, prefix }
    },
  }
}

export const worker: WorkerModule = {
  async prepareWorker(opts, onTask) {
    const redis = connection(true, opts.redisUrl)
    const w = new Worker<BenchPayload>(
      QUEUE,
      async (job) => {
        onTask(job.data)
      },
      {
        connection: redis,
        prefix: opts.prefix as string,
        concurrency: opts.concurrency,
        autorun: false,
        removeOnComplete: { count: 0 },
        removeOnFail: { count: 1000 },
      },
    )
    w.on('error', () => {})
    await w.waitUntilReady()
    return {
      async start() {
        void w.run()
      },
      async stop() {
        await w.close()
        redis.disconnect()
      },
    }
  },
}
