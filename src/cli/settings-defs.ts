import { z } from 'zod/v4'
import { msInWords, processSettingsSchema, relaySettingsSchema, schedulerSettingsSchema, sweeperSettingsSchema, workerSettingsSchema, type ProcessSettings } from '../config.ts'
import { formatDuration } from '../duration.ts'

/**
 * Every setting of every command, from flags, environment variables or
 * defaults, validated by the zod schemas of src/config.ts (component
 * settings, and `processSettingsSchema` for connections and logging).
 *
 * Component settings are derived from the schemas' shapes — flag
 * `--lease-ms`, env `TASKRELAY_WORKER_LEASE_MS` for `worker.leaseMs` — so a
 * field added to src/config.ts gets a flag and an env var without touching
 * this file; test/cli/settings.test.ts fails until it also has a description
 * here and the README table is regenerated (`npm run docs:config`).
 */

/** The process settings' schema lives in src/config/process.ts; re-exported for the CLI's modules. */
export type ProcessKey = keyof ProcessSettings

export const COMPONENT_SCHEMAS = {
  relay: relaySettingsSchema,
  worker: workerSettingsSchema,
  sweeper: sweeperSettingsSchema,
  scheduler: schedulerSettingsSchema,
} as const satisfies Record<string, z.ZodType>

export type Component = keyof typeof COMPONENT_SCHEMAS
export const COMPONENTS = Object.keys(COMPONENT_SCHEMAS) as Component[]
export type Group = 'process' | Component

export type Kind = 'int' | 'ms' | 'list' | 'string' | 'enum' | 'url' | 'bool'

export interface SettingDef {
  /** "worker.concurrency" */
  key: string
  group: Group
  field: string
  /** long flag without the dashes */
  flag: string
  env: string
  kind: Kind
  description: string
  /** what a valid value looks like, in plain words */
  expected: string
  /** the field's own zod schema (for its default and bounds) */
  schema: z.ZodType
}

/** One line per setting; README's configuration table is generated from these. */
const DESCRIPTIONS: Record<string, string> = {
  'process.databaseUrl': 'PostgreSQL connection URL',
  'process.redisUrl': 'Redis URL (see Deployment with Redis Sentinel)',
  'process.schema': 'Postgres schema holding taskrelay tables and functions',
  'process.keyPrefix': 'prefix of every Redis key (lets deployments share one Redis)',
  'process.logLevel': 'log level',
  'process.logFormat': 'log output: auto = human-readable on a terminal, JSON otherwise',
  'process.healthPort': 'serve GET /healthz and GET /metrics (Prometheus) on this port (long-running commands)',
  'process.dashboardToken': 'dashboard: operators log in with this token (or send Authorization: Bearer) to retry, cancel, pause and run schedules',
  'process.dashboardUser': 'dashboard: operator user name for the login form (with the password)',
  'process.dashboardPassword': 'dashboard: operator password for the login form (with the user)',
  'process.tasks': 'module whose exported tasks (defineTask) this process runs or validates',
  'relay.batchSize': 'rows moved to Redis per round trip',
  'relay.pollIntervalMs': 'safety-net poll when no NOTIFY arrives',
  'relay.maxBacklogPerQueue': 'stop dispatching to a queue holding this many unclaimed tasks in Redis',
  'relay.lingerMs': 'after its last dispatch, a relay keeps polling briefly this long (enqueues skip NOTIFY meanwhile)',
  'relay.failoverWindowMs': 'after a Redis failover, re-dispatch tasks dispatched this recently',
  'worker.queues': 'queues this worker takes tasks from, comma-separated',
  'worker.concurrency': 'most handlers running at once in this process',
  'worker.leaseMs': 'a running task whose lease expires is presumed lost and retried',
  'worker.heartbeatMs': 'how often leases of running tasks are renewed',
  'worker.shutdownGraceMs': 'on SIGTERM, how long running tasks may finish before being handed back',
  'worker.blockMs': 'how long one blocking Redis read waits',
  'worker.prefetch': 'tasks claimed ahead of free slots (leased like running ones)',
  'worker.flushIntervalMs': 'group commit: outcomes are written at most this late',
  'worker.lane': 'where tasks come from: auto = Redis, and Postgres while Redis is unreachable; redis = Redis only; postgres = Postgres only (no relay needed)',
  'worker.presenceMs': 'how often a worker renews its row in the workers table',
  'worker.lostAfterMs': 'a worker silent this long is presumed dead and the sweeper retries its tasks',
  'sweeper.intervalMs': 'how often the sweeper runs',
  'sweeper.dispatchTimeoutMs': 'a dispatched task not claimed within this goes back to pending (once the workers of its queue, if any are running, have read past it)',
  'sweeper.retentionMs': 'finished tasks older than this are deleted',
  'sweeper.pruneBatchSize': 'rows deleted per statement while pruning',
  'sweeper.lostWorkerRetryDelayMs': 'delay before retrying a task whose worker was lost',
  'scheduler.batchSize': 'due schedules claimed per tick (one transaction)',
  'scheduler.maxSleepMs': 'longest sleep between ticks (a schedule change wakes schedulers earlier)',
  'scheduler.misfireGraceMs': 'a fire time at most this late still fires under every misfire policy',
  'scheduler.maxCatchUp': 'misfire "all": at most this many missed fire times per schedule are fired',
  'scheduler.syncSchedules': 'at start, create/update/remove the schedules declared in defineTask({ schedules })',
}

/** Flags that would be ambiguous where several components share a command (`dev`). */
const FLAG_OVERRIDES: Record<string, string> = {
  'sweeper.intervalMs': 'sweep-interval-ms',
  'scheduler.batchSize': 'schedule-batch-size',
}

const PROCESS_NAMES: Record<ProcessKey, { flag: string; env: string; kind: Kind; expected?: string }> = {
  databaseUrl: { flag: 'database-url', env: 'DATABASE_URL', kind: 'url', expected: 'a URL like postgres://user:password@host:5432/dbname' },
  redisUrl: {
    flag: 'redis-url',
    env: 'REDIS_URL',
    kind: 'url',
    expected: 'redis://host:6379, rediss://host:6380 or redis+sentinel://host1:26379,host2:26379/mymaster',
  },
  schema: { flag: 'schema', env: 'TASKRELAY_SCHEMA', kind: 'string', expected: 'a lower-case SQL identifier such as taskrelay' },
  keyPrefix: { flag: 'key-prefix', env: 'TASKRELAY_KEY_PREFIX', kind: 'string', expected: '1-100 characters from A-Z a-z 0-9 _ . : -' },
  logLevel: { flag: 'log-level', env: 'LOG_LEVEL', kind: 'enum' },
  logFormat: { flag: 'log-format', env: 'TASKRELAY_LOG_FORMAT', kind: 'enum' },
  healthPort: { flag: 'health-port', env: 'TASKRELAY_HEALTH_PORT', kind: 'int' },
  tasks: { flag: 'tasks', env: 'TASKRELAY_TASKS', kind: 'string', expected: 'a path to a .ts or .js module' },
  dashboardToken: { flag: 'dashboard-token', env: 'TASKRELAY_DASHBOARD_TOKEN', kind: 'string', expected: 'a random secret of at least 16 characters (prefer the variable: flags show in ps)' },
  dashboardUser: { flag: 'dashboard-user', env: 'TASKRELAY_DASHBOARD_USER', kind: 'string', expected: 'a user name, with TASKRELAY_DASHBOARD_PASSWORD' },
  dashboardPassword: { flag: 'dashboard-password', env: 'TASKRELAY_DASHBOARD_PASSWORD', kind: 'string', expected: 'a password of at least 12 characters (prefer the variable: flags show in ps)' },
}

/** Strip default/optional wrappers down to the value's own schema. */
export function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema as z.ZodType & { def: { type: string; innerType?: z.ZodType } }
  while ((s.def.type === 'default' || s.def.type === 'optional' || s.def.type === 'prefault') && s.def.innerType) {
    s = s.def.innerType as typeof s
  }
  return s
}

function shapeOf(schema: z.ZodType): Record<string, z.ZodType> {
  const inner = unwrap(schema) as unknown as { shape?: Record<string, z.ZodType> }
  if (!inner.shape) throw new Error('settings schema is not an object')
  return inner.shape
}

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
const upperSnake = (s: string) => s.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase()

function kindOf(field: string, schema: z.ZodType): Kind {
  const type = (unwrap(schema) as { def: { type: string } }).def.type
  if (type === 'number') return field.endsWith('Ms') ? 'ms' : 'int'
  if (type === 'array') return 'list'
  if (type === 'enum') return 'enum'
  if (type === 'boolean') return 'bool'
  return 'string'
}

function bounds(schema: z.ZodType): { min: number | null; max: number | null } {
  const n = unwrap(schema) as { minValue?: number | null; maxValue?: number | null }
  const max = n.maxValue != null && n.maxValue < Number.MAX_SAFE_INTEGER ? n.maxValue : null
  const min = n.minValue != null && n.minValue > Number.MIN_SAFE_INTEGER ? n.minValue : null
  return { min, max }
}

function expectedOf(kind: Kind, schema: z.ZodType): string {
  const { min, max } = bounds(schema)
  const range = (show: (n: number) => string) =>
    min !== null && max !== null ? ` from ${show(min)} to ${show(max)}` : min !== null ? ` of at least ${show(min)}` : ''
  switch (kind) {
    case 'int':
      return `a whole number${range(String)}`
    case 'ms':
      return `a duration in milliseconds${range(msInWords)} (a number, or with a unit: 500ms, 30s, 5m, 1h)`
    case 'list':
      return 'a comma-separated list (e.g. default,emails)'
    case 'enum':
      return `one of: ${(unwrap(schema) as unknown as { options: string[] }).options.join(', ')}`
    case 'bool':
      return 'true or false'
    default:
      return 'a non-empty text'
  }
}

function buildDefs(): SettingDef[] {
  const defs: SettingDef[] = []
  const processShape = processSettingsSchema.shape as Record<ProcessKey, z.ZodType>
  for (const field of Object.keys(processShape) as ProcessKey[]) {
    const names = PROCESS_NAMES[field]
    const schema = processShape[field]
    const key = `process.${field}`
    defs.push({
      key,
      group: 'process',
      field,
      ...names,
      description: DESCRIPTIONS[key] ?? schema.description ?? '',
      expected: names.expected ?? expectedOf(names.kind, schema),
      schema,
    })
  }
  for (const group of COMPONENTS) {
    for (const [field, schema] of Object.entries(shapeOf(COMPONENT_SCHEMAS[group]))) {
      const key = `${group}.${field}`
      const kind = kindOf(field, schema)
      defs.push({
        key,
        group,
        field,
        flag: FLAG_OVERRIDES[key] ?? kebab(field),
        env: `TASKRELAY_${group.toUpperCase()}_${upperSnake(field)}`,
        kind,
        description: DESCRIPTIONS[key] ?? schema.description ?? '',
        expected: expectedOf(kind, schema),
        schema,
      })
    }
  }
  return defs
}

export const SETTING_DEFS: readonly SettingDef[] = buildDefs()

export function settingDef(key: string): SettingDef {
  const def = SETTING_DEFS.find((d) => d.key === key)
  if (!def) throw new Error(`unknown setting ${key}`)
  return def
}

/** The default as text, for help and the README ("" when there is none). */
export function defaultText(def: SettingDef): string {
  const d = (def.schema as { def: { type: string; defaultValue?: unknown } }).def
  if (d.type !== 'default') return ''
  const v = d.defaultValue
  if (def.kind === 'ms' && typeof v === 'number') return `${v} (${formatDuration(v)})`
  return Array.isArray(v) ? v.join(',') : String(v)
}

/** What a command reads: some process settings, whole components. */
export interface SettingsRequest {
  process: readonly ProcessKey[]
  /** process settings that must be given (no default) */
  required?: readonly ProcessKey[]
  components: readonly Component[]
  /** defaults that differ from the schema's (e.g. `dev` uses the local servers) */
  defaults?: Partial<Record<ProcessKey, string>>
}

export function requestedDefs(req: SettingsRequest): SettingDef[] {
  return SETTING_DEFS.filter((d) => (d.group === 'process' ? req.process.includes(d.field as ProcessKey) : req.components.includes(d.group)))
}
