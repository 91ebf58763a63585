/**
 * BullMQ adapter (Redis). Documented fast path: one shared ioredis connection
 * for producers (commands pipeline on their own), Queue.addBulk for batches,
 * a Worker with `concurrency`, auto-removal of completed jobs.
 */
import { readFileSync } from 'node:fs'
import { FlowProducer, Queue, QueueEvents, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import { REDIS_URL, type BenchPayload } from '../common.ts'
import type { ChordRun, ProducerAdapter, WorkerModule, WorkerOptions } from './types.ts'

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
  let redisUrl = REDIS_URL
  // S8: made on the first chord, closed in teardown.
  let flows: { producer: FlowProducer; events: QueueEvents } | null = null
  return {
    name: 'bullmq',
    version: VERSION,
    settings: 'Queue.add (S1, S2, S6), addBulk 1,000 (S3), FlowProducer.add (parent + children, one queue) + QueueEvents "completed" (S8; the parent reads getChildrenValues()); Worker concurrency 50, removeOnComplete',
    async setup(t, o) {
      tag = t
      prefix = `bench:bq:${t}`
      redisUrl = o?.redisUrl ?? REDIS_URL
      redis = connection(false, o?.redisUrl)
      queue = new Queue<BenchPayload>(QUEUE, { connection: redis, prefix, defaultJobOptions: JOB_OPTS })
      queue.on('error', () => {})
      await queue.waitUntilReady()
    },
    async teardown() {
      if (flows) {
        await flows.events.close()
        await flows.producer.close()
        flows = null
      }
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
    async prepareChord(members, base) {
      if (!flows) {
        // Connection options, not an instance: QueueEvents then owns its blocking connection and closes it.
        const u = new URL(redisUrl)
        const events = new QueueEvents(QUEUE, { connection: { host: u.hostname, port: Number(u.port || 6379), maxRetriesPerRequest: null }, prefix })
        events.on('error', () => {})
        await events.waitUntilReady()
        flows = { producer: new FlowProducer({ connection: redis, prefix }), events }
      }
      return flowRun(flows.producer, flows.events, members, base)
    },
    async countStored() {
      const jobs = await queue.getJobs(['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'])
      return { total: jobs.length, distinct: new Set(jobs.map((j) => j?.data?.n)).size }
    },
    noPerGroupLimit: 'BullMQ groups (per-group concurrency and rate limits) are a BullMQ Pro feature, not in the open-source package',
    workerOptions(): WorkerOptions {
      return { system: 'bullmq', tag, concurrency: 50, prefix }
    },
  }
}

/** S8: a parent job with `members` children on one queue; done on QueueEvents' "completed" for the parent. */
function flowRun(producer: FlowProducer, events: QueueEvents, members: number, base: number): ChordRun {
  const jobId = `chord-${base}`
  const children = Array.from({ length: members }, (_, i) => ({ name: 'member', queueName: QUEUE, data: { n: base + i }, opts: JOB_OPTS }))
  const flow = { name: 'parent', queueName: QUEUE, data: { n: base + members }, opts: { ...JOB_OPTS, jobId }, children }
  // Listening before add(): the parent cannot finish before its children, but say so anyway.
  let settle: (err?: Error) => void = () => {}
  const done = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())))
  const onCompleted = ({ jobId: id }: { jobId: string }) => id === jobId && settle()
  const onFailed = ({ jobId: id, failedReason }: { jobId: string; failedReason: string }) => id === jobId && settle(new Error(`the parent failed: ${failedReason}`))
  events.on('completed', onCompleted)
  events.on('failed', onFailed)
  return {
    async enqueue() {
      await producer.add(flow)
    },
    async completed(timeoutMs) {
      const timer = setTimeout(() => settle(new Error(`the parent did not complete within ${timeoutMs} ms`)), timeoutMs)
      try {
        await done
      } finally {
        clearTimeout(timer)
        events.off('completed', onCompleted)
        events.off('failed', onFailed)
      }
    },
    async inspect() {
      return { problem: null, stages: {} }
    },
  }
}

export const worker: WorkerModule = {
  async prepareWorker(opts, onTask) {
    const redis = connection(true, opts.redisUrl)
    const w = new Worker<BenchPayload>(
      QUEUE,
      async (job) => {
        if (!opts.chordMembers) return void onTask(job.data)
        // S8: children return their n; the parent checks it got every child's value, as a chord's callback would.
        if (job.name !== 'parent') {
          onTask(job.data)
          return job.data.n
        }
        const members = opts.chordMembers as number
        const values = Object.values(await job.getChildrenValues<number>()).sort((x, y) => x - y)
        const base = job.data.n - members
        const ok = values.length === members && values.every((v, i) => v === base + i)
        onTask({ n: ok ? job.data.n : -1 })
        return values.length
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
