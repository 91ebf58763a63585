import { workerList } from '../db/admin-queries.ts'
import type { AdminContext } from './context.ts'

/** A worker process as `taskrelay workers` and the dashboard show it. */
export interface WorkerInfo {
  id: string
  queues: string[]
  tasks: string[]
  startedAt: Date
  lastSeenAt: Date
  /** when its row expires unless renewed; past: the sweeper retries what it held */
  expiresAt: Date
  /** still renewing its row (presenceMs); false: dead, or cut off from Postgres */
  alive: boolean
  /** tasks it holds now (running or claimed ahead) */
  running: number
}

/** Live workers first; with `silent`, also workers that stopped renewing their row in the last day. */
export async function listWorkers(ctx: Pick<AdminContext, 'executor' | 'schema'>, options: { silent?: boolean } = {}): Promise<WorkerInfo[]> {
  const rows = await workerList(ctx.executor, { schema: ctx.schema, silent: options.silent ?? false })
  return rows.map((r) => ({
    id: r.id,
    queues: r.queues,
    tasks: r.tasks,
    startedAt: r.started_at,
    lastSeenAt: r.last_seen_at,
    expiresAt: r.expires_at,
    alive: r.alive,
    running: r.running,
  }))
}
