import type pg from 'pg'
import type { Logger } from 'pino'
import { SchemaVersionError } from '../errors.ts'
import type { Connections, Database } from './connections.ts'
import type { Executor } from './executor.ts'
import { appliedMigrations, currentMigration, latestMigrationId, listMigrations } from './migrate.ts'
import type { channels } from './sql.ts'

/**
 * What the background services (relay, worker, sweeper, scheduler), the
 * schedule functions and metrics need of taskrelay: connections and settings,
 * nothing of the facade's enqueue or read API. `TaskRelay` satisfies it, so
 * `new Relay(tr, …)` works; a test or an embedding may pass anything narrower
 * that has these members. Lives in db/ so services never import the facade
 * (that import made task-relay.ts ↔ scheduler/schedules.ts a cycle).
 */
export interface TaskRelayContext {
  /** Postgres schema holding taskrelay's tables. */
  readonly schema: string
  /** Root logger; each service takes a child of it. */
  readonly logger: Logger
  /** Largest accepted payload: the scheduler checks schedule payloads as enqueue does. */
  readonly maxPayloadBytes: number
  /** Autocommit executor on the caller's pool or Kysely instance. */
  readonly executor: Executor
  /** Claims, heartbeats, hand-backs, sweeper settling (see TaskRelay.batchExecutor). */
  readonly batchExecutor: Executor
  /** The relay's dispatch and the worker's outcomes (see TaskRelay.transitionExecutor). */
  readonly transitionExecutor: Executor
  /** NOTIFY channel names of this schema. */
  readonly channels: ReturnType<typeof channels>
  /** LISTEN-or-poll wake-ups and transactions on the caller's database. */
  readonly connections: Pick<Connections, 'listen' | 'transaction'>
  /** The pg.Pool behind db, null over Kysely: the worker's lease guard needs one. */
  readonly pool: pg.Pool | null
  /** Throw SchemaVersionError unless every shipped migration has been applied. */
  assertSchemaCurrent(): Promise<void>
}

/** Throw SchemaVersionError unless every shipped migration has been applied to `schema`. */
export async function schemaAssertCurrent(db: Database, schema: string): Promise<void> {
  const applied = new Set(await appliedMigrations(db, schema))
  const missing = listMigrations(schema).filter((m) => !applied.has(m.id))
  if (missing.length > 0) {
    throw new SchemaVersionError(await currentMigration(db, schema), latestMigrationId(), schema)
  }
}
