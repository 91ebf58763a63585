import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { SETTING_DEFS, requestedDefs, resolveSettings, type SettingsRequest } from '../../src/cli/settings.ts'
import { SettingsError } from '../../src/cli/errors.ts'
import { withConfigTable } from '../../src/cli/readme-config.ts'
import { relaySettingsSchema, schedulerSettingsSchema, sweeperSettingsSchema, workerSettingsSchema } from '../../src/config.ts'
import { ROOT, runCli } from './cli-process.ts'

const WORKER: SettingsRequest = {
  process: ['databaseUrl', 'redisUrl', 'schema', 'logLevel', 'tasks'],
  required: ['databaseUrl', 'redisUrl', 'tasks'],
  components: ['worker'],
}
const ENV = { DATABASE_URL: 'postgres://u@db/app', REDIS_URL: 'redis://r:6379', TASKRELAY_TASKS: './tasks.ts' }

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn()
  } catch (err) {
    if (err instanceof SettingsError) return err.problems
    throw err
  }
  throw new Error('expected a SettingsError')
}

describe('resolving settings', () => {
  it('takes flags over env over defaults, converts units, and records where each value came from', () => {
    const s = resolveSettings(WORKER, { concurrency: '7', leaseMs: '1m' }, { ...ENV, TASKRELAY_WORKER_CONCURRENCY: '3', TASKRELAY_WORKER_HEARTBEAT_MS: '5s', TASKRELAY_WORKER_QUEUES: 'a, b' })
    expect(s.worker.concurrency).toBe(7)
    expect(s.worker.leaseMs).toBe(60_000)
    expect(s.worker.heartbeatMs).toBe(5000)
    expect(s.worker.queues).toEqual(['a', 'b'])
    expect(s.worker.blockMs).toBe(workerSettingsSchema.parse({}).blockMs)
    expect(s.process.schema).toBe('taskrelay')
    expect(s.sources).toMatchObject({
      'worker.concurrency': '--concurrency',
      'worker.heartbeatMs': 'TASKRELAY_WORKER_HEARTBEAT_MS',
      'worker.blockMs': 'default',
    })
    expect(Object.isFrozen(s.worker)).toBe(true)
  })

  it('reports every problem at once, naming the flag and the env var, what was given and what is expected', () => {
    const problems = problemsOf(() =>
      resolveSettings(
        WORKER,
        { leaseMs: 'soon' },
        { REDIS_URL: 'ftp://x', TASKRELAY_WORKER_CONCURRENCY: '0', TASKRELAY_WORKER_HEARTBEAT_MS: '20s', TASKRELAY_WORKR_QUEUES: 'a', TASKRELAY_SCHEMA: 'Bad-Name' },
      ),
    )
    const text = problems.join('\n')
    expect(problems).toHaveLength(7)
    expect(text).toContain('TASKRELAY_WORKR_QUEUES: unknown setting; did you mean TASKRELAY_WORKER_QUEUES?')
    expect(text).toContain('process.databaseUrl (--database-url / DATABASE_URL): not set; expected a URL like postgres://')
    expect(text).toContain('process.tasks (--tasks / TASKRELAY_TASKS): not set')
    expect(text).toMatch(/process\.redisUrl \(--redis-url \/ REDIS_URL\): got "ftp:\/\/x" from REDIS_URL; unsupported scheme/)
    expect(text).toContain('worker.leaseMs (--lease-ms / TASKRELAY_WORKER_LEASE_MS): got "soon" from --lease-ms; expected a duration in milliseconds from 100 ms to 2147483647 ms (about 24.8 days)')
    expect(text).toContain('worker.concurrency (--concurrency / TASKRELAY_WORKER_CONCURRENCY): got "0" from TASKRELAY_WORKER_CONCURRENCY; expected a whole number from 1 to 10000')
    expect(text).toContain('process.schema (--schema / TASKRELAY_SCHEMA): got "Bad-Name" from TASKRELAY_SCHEMA; expected a lower-case SQL identifier')
  })

  it("explains cross-field rules with the schema's own reason", () => {
    const problems = problemsOf(() => resolveSettings(WORKER, { leaseMs: '15s' }, { ...ENV, TASKRELAY_WORKER_HEARTBEAT_MS: '10s' }))
    expect(problems).toEqual([
      'worker.leaseMs (--lease-ms / TASKRELAY_WORKER_LEASE_MS): got "15s" from --lease-ms; must be more than twice heartbeatMs (10000), got 15000, or one slow heartbeat loses the lease',
    ])
  })

  it('never shows a password it was given', () => {
    const problems = problemsOf(() => resolveSettings(WORKER, {}, { ...ENV, DATABASE_URL: 'mysql://app:hunter2@db/app', REDIS_URL: 'redis+sentinel://:s3cret@/mymaster' }))
    const text = problems.join('\n')
    expect(problems).toHaveLength(2)
    expect(text).not.toContain('hunter2')
    expect(text).not.toContain('s3cret')
    expect(text).toContain('mysql://app:***@db/app')
  })
})

describe('settings stay in step with the schemas and the README', () => {
  it('has a flag, an env var and a description for every field of every component schema', () => {
    const schemas = { relay: relaySettingsSchema, worker: workerSettingsSchema, sweeper: sweeperSettingsSchema, scheduler: schedulerSettingsSchema }
    for (const [group, schema] of Object.entries(schemas)) {
      const fields = Object.keys(schema.parse({})).sort()
      const defs = SETTING_DEFS.filter((d) => d.group === group)
      // Optional fields without a default do not show up in parse(undefined): compare as a superset.
      expect(fields.length).toBeGreaterThan(2)
      expect(defs.map((d) => d.field)).toEqual(expect.arrayContaining(fields))
    }
    const undocumented = SETTING_DEFS.filter((d) => !d.description).map((d) => d.key)
    expect(undocumented, 'add a description in src/cli/settings.ts DESCRIPTIONS').toEqual([])
  })

  it('uses each flag and env var once, even in `dev`, which takes every component', () => {
    const dev = requestedDefs({ process: ['databaseUrl', 'redisUrl', 'schema', 'keyPrefix', 'logLevel', 'logFormat', 'healthPort', 'tasks'], components: ['relay', 'worker', 'sweeper', 'scheduler'] })
    expect(new Set(dev.map((d) => d.flag)).size).toBe(dev.length)
    expect(new Set(SETTING_DEFS.map((d) => d.env)).size).toBe(SETTING_DEFS.length)
  })

  it('README.md has the configuration table generated from the schemas (run `npm run docs:config` when this fails)', () => {
    const readme = readFileSync(new URL('README.md', `file://${ROOT}`), 'utf8')
    expect(readme).toBe(withConfigTable(readme))
  })
})

describe('bad configuration from the command line', () => {
  it('lists every problem, exits 2, prints no stack trace and no password', async () => {
    const res = await runCli(['worker', '--concurrency', 'many', '--lease-ms', '10'], {
      DATABASE_URL: 'postgres://app:hunter2@127.0.0.1:1/app',
      REDIS_URL: 'redis://:s3cret@127.0.0.1:6379/x',
      TASKRELAY_WORKER_FLUSH_INTERVAL_MS: '-5',
      TASKRELAY_SWEEPR_INTERVAL_MS: '5s',
    })
    expect(res.code).toBe(2)
    expect(res.stdout).toBe('')
    expect(res.stderr).toContain('invalid configuration (7 problems)')
    for (const name of ['--concurrency', '--lease-ms', 'TASKRELAY_WORKER_FLUSH_INTERVAL_MS', 'TASKRELAY_SWEEPR_INTERVAL_MS', 'process.tasks']) {
      expect(res.stderr).toContain(name)
    }
    expect(res.stderr).toContain('REDIS_URL') // the bad /x database number
    expect(res.stderr).not.toMatch(/\n\s+at /)
    expect(res.stderr).not.toContain('hunter2')
    expect(res.stderr).not.toContain('s3cret')
  })

  it('refuses intervals a timer cannot wait (25 days) with exit 2, before connecting to anything', async () => {
    // Port 1: if the settings were accepted, the process would fail to connect and exit 1 instead.
    const env = { DATABASE_URL: 'postgres://app@127.0.0.1:1/app', REDIS_URL: 'redis://127.0.0.1:1' }
    const [sweeper, relay] = await Promise.all([runCli(['sweeper', '--sweep-interval-ms', '25d'], env), runCli(['relay', '--poll-interval-ms', '25d'], env)])
    expect(sweeper.code, sweeper.stderr).toBe(2)
    expect(sweeper.stderr).toContain(
      'sweeper.intervalMs (--sweep-interval-ms / TASKRELAY_SWEEPER_INTERVAL_MS): got "25d" from --sweep-interval-ms; expected a duration in milliseconds from 10 ms to 2147483647 ms (about 24.8 days)',
    )
    expect(relay.code, relay.stderr).toBe(2)
    expect(relay.stderr).toContain(
      'relay.pollIntervalMs (--poll-interval-ms / TASKRELAY_RELAY_POLL_INTERVAL_MS): got "25d" from --poll-interval-ms; expected a duration in milliseconds from 10 ms to 2147483647 ms (about 24.8 days)',
    )
    for (const res of [sweeper, relay]) expect(res.stderr).not.toContain('Cannot connect')
  })

  it('stats --watch refuses an --interval a timer cannot wait, with exit 2', async () => {
    // Accepted, it would redraw in a hot loop (a 25-day timer fires after 1 ms) and never exit.
    const res = await runCli(['stats', '--watch', '--interval', '25d'], { DATABASE_URL: 'postgres://app@127.0.0.1:1/app' })
    expect(res.code, res.stderr).toBe(2)
    expect(res.stderr).toContain('--interval: expected a duration from 100ms to')
  })

  it('rejects an unknown command and an unknown flag with exit 2 and a hint', async () => {
    const [cmd, flag, none] = await Promise.all([runCli(['wroker']), runCli(['status', '1', '--jsn']), runCli([])])
    expect(cmd.code).toBe(2)
    expect(cmd.stderr).toContain("unknown command 'wroker'")
    expect(cmd.stderr).toContain('worker')
    expect(flag.code).toBe(2)
    expect(flag.stderr).toContain("unknown option '--jsn'")
    expect(flag.stderr).toContain('--help')
    expect(none.code).toBe(2)
    expect(none.stdout).toContain('Usage: taskrelay')
  })
})
