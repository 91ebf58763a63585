import { z } from 'zod/v4'
import { ConfigError } from '../errors.ts'
import { parseRedisUrl } from '../redis/connection.ts'
import { keyPrefixSchema, schemaNameSchema } from './fields.ts'

/**
 * Settings of a taskrelay process started by the CLI: connections, names,
 * logging. Commands pick the ones they use; src/cli/settings-defs.ts maps
 * them to flags and environment variables.
 */

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const

function checkDatabaseUrl(value: string, ctx: z.RefinementCtx) {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    ctx.addIssue({ code: 'custom', message: 'not a URL' })
    return
  }
  if (!['postgres:', 'postgresql:', 'socket:'].includes(url.protocol)) {
    ctx.addIssue({ code: 'custom', message: `unsupported scheme "${url.protocol}"` })
  }
}

function checkRedisUrl(value: string, ctx: z.RefinementCtx) {
  try {
    const parsed = parseRedisUrl(value)
    // parseRedisUrl reads "/x" as database NaN; ioredis would then silently use 0.
    if (parsed.db !== undefined && !(Number.isInteger(parsed.db) && parsed.db >= 0)) {
      ctx.addIssue({ code: 'custom', message: 'the database number after the last "/" must be a whole number such as 0' })
    }
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems : [(err as Error).message]
    for (const p of problems) ctx.addIssue({ code: 'custom', message: p.replace(/^REDIS_URL: /, '') })
  }
}

/** Process-level settings: connections, names, logging. Commands pick the ones they use. */
export const processSettingsSchema = z.strictObject({
  databaseUrl: z.string().superRefine(checkDatabaseUrl).optional(),
  redisUrl: z.string().superRefine(checkRedisUrl).optional(),
  schema: schemaNameSchema.default('taskrelay'),
  keyPrefix: keyPrefixSchema.default('taskrelay'),
  logLevel: z.enum(LOG_LEVELS).default('info'),
  logFormat: z.enum(LOG_FORMATS).default('auto'),
  healthPort: z.number().int().min(1).max(65_535).optional(),
  tasks: z.string().min(1).optional(),
  // Secrets: no format rule, so a problem message never has a reason to quote them.
  dashboardToken: z.string().optional(),
  dashboardUser: z.string().optional(),
  dashboardPassword: z.string().optional(),
})

export type ProcessSettings = z.output<typeof processSettingsSchema>
