import type pg from 'pg'
import type { Kysely } from 'kysely'
import type { Logger } from 'pino'
import { z } from 'zod/v4'
import { isKysely, isPgPool } from './db-kinds.ts'
import { DEFAULT_MAX_PAYLOAD_BYTES, schemaNameSchema, strictOptions } from './fields.ts'

/** `new TaskRelay(options)`; the documented option type is TaskRelayOptions in src/task-relay.ts. */
export const taskRelayOptionsSchema = strictOptions({
  db: z
    .custom<pg.Pool | string | Kysely<any>>(
      (v) => typeof v === 'string' || isPgPool(v) || isKysely(v),
      'expected a pg.Pool (pg 8), a postgres:// connection string or a Kysely instance',
    )
    .refine((v) => !(v as { isTransaction?: unknown }).isTransaction, 'expected the Kysely instance, not a transaction (pass trx to enqueue instead)'),
  schema: schemaNameSchema.default('taskrelay'),
  maxPayloadBytes: z.number().int().min(1).default(DEFAULT_MAX_PAYLOAD_BYTES),
  durableTransitions: z.boolean().default(false),
  enqueueCoalescing: z.number().int().min(0).max(100).default(2),
  logger: z.custom<Logger>((v) => typeof v === 'object' && v !== null && 'child' in v, 'expected a pino logger').optional(),
})
