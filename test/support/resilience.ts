import { databaseUrl, redisUrl } from './db.ts'
import { Pipeline, type Child } from '../resilience/fixtures/pipeline-harness.ts'

/** What the resilience tests repeat around their Pipeline of child processes. */

/** A Pipeline on the suite's shared Postgres and Redis; pair with cleanupShared(). */
export function createShared(label: string): Promise<Pipeline> {
  return Pipeline.create({ databaseUrl: databaseUrl(), redisUrl: redisUrl(), label })
}

/** Stop the children and drop the schema; the shared Redis keeps running, only this pipeline's keys go. */
export async function cleanupShared(p: Pipeline | undefined): Promise<void> {
  await p?.cleanup({ sharedRedisUrl: redisUrl() })
}

/** How many tasks the sweepers among `children` re-dispatched, summed over their runs. */
export function sweptCount(children: Child[]): number {
  return children.flatMap((c) => c.events('sweeper:run')).reduce((n, e) => n + Number(e.redispatched), 0)
}
