import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { SETTING_DEFS } from '../../src/cli/settings.ts'
import { parseRedisUrl } from '../../src/redis/connection.ts'
import { ROOT, runCli } from './cli-process.ts'

/**
 * docker-compose.yml cannot be run here (no Docker engine), so it is checked
 * from the outside: every taskrelay service runs a command the CLI really
 * has, with flags it really takes, and with its environment it gets as far as
 * connecting to the database (so the settings and the tasks module are valid).
 * `.ci/checks` validates the file itself with docker-compose.
 */
interface Service {
  image?: string
  build?: unknown
  entrypoint?: string[]
  command?: string[]
  environment?: Record<string, string>
  healthcheck?: { test?: string[]; disable?: boolean }
  depends_on?: Record<string, { condition: string }>
}

const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service> }
const services = Object.entries(compose.services)
const ours = services.filter(([, s]) => s.image === 'taskrelay:local')
const cliServices = ours.filter(([, s]) => !s.entrypoint)

/** "worker --concurrency 20" → ["worker"]; "schedules list --json" → ["schedules", "list"] */
function subcommand(argv: string[]): string[] {
  const firstFlag = argv.findIndex((a) => a.startsWith('-'))
  return firstFlag === -1 ? argv : argv.slice(0, firstFlag)
}

describe('docker-compose.yml', () => {
  it('has the parts of the system: postgres, redis primary + replica, three sentinels, migrate, relay, sweeper, scheduler, two workers, the dashboard, the app', () => {
    const commands = cliServices.map(([, s]) => s.command![0])
    expect(commands.sort()).toEqual(['dashboard', 'migrate', 'relay', 'scheduler', 'sweeper', 'worker', 'worker'])
    expect(services.map(([name]) => name)).toEqual(expect.arrayContaining(['postgres', 'redis-primary', 'redis-replica', 'sentinel-1', 'sentinel-2', 'sentinel-3', 'app']))
    for (const [name, s] of services) {
      if (name !== 'migrate') expect(s.healthcheck?.test, `${name} health check`).toBeDefined()
    }
  })

  it('wires the Sentinel URL into every taskrelay service and uses only settings the CLI knows', () => {
    const known = new Set(SETTING_DEFS.map((d) => d.env))
    for (const [name, s] of ours) {
      const url = s.environment?.REDIS_URL
      expect(url, name).toBe('redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/mymaster')
      expect(parseRedisUrl(url!).sentinels).toHaveLength(3)
      for (const key of Object.keys(s.environment ?? {})) {
        if (key.startsWith('TASKRELAY_') || key === 'LOG_LEVEL') expect(known.has(key), `${name}: ${key}`).toBe(true)
      }
      if (name !== 'migrate' && name !== 'app') expect(s.depends_on?.migrate?.condition, name).toBe('service_completed_successfully')
    }
  })

  it("runs only commands and flags the CLI really has (checked with each command's --help)", async () => {
    const argvs = cliServices.map(([name, s]) => [name, s.command!] as const)
    const helps = await Promise.all(argvs.map(([, argv]) => runCli([...subcommand(argv), '--help'])))
    argvs.forEach(([name, argv], i) => {
      const help = helps[i]!
      expect(help.code, `${name}: ${help.stderr}`).toBe(0)
      expect(help.stdout).toContain(`Usage: taskrelay ${subcommand(argv).join(' ')}`)
      for (const flag of argv.filter((a) => a.startsWith('--'))) expect(help.stdout, `${name} ${flag}`).toContain(`${flag} `)
      // The health check probes the port the command serves.
      const port = argv[argv.indexOf('--health-port') + 1]
      if (argv.includes('--health-port')) expect(s(name).healthcheck!.test!.join(' ')).toContain(`127.0.0.1:${port}/healthz`)
      if (argv[0] === 'dashboard') expect(s(name).healthcheck!.test!.join(' ')).toContain(`127.0.0.1:${argv[argv.indexOf('--port') + 1]}/api/stats`)
    })
    const app = compose.services.app!
    expect(app.entrypoint![0]).toBe('node')
    // node [--conditions=taskrelay-source] examples/app.ts: the file it runs exists.
    const file = app.entrypoint!.slice(1).find((arg) => !arg.startsWith('--'))!
    expect(existsSync(join(ROOT, file))).toBe(true)
  })

  it('starts each command with its compose environment as far as connecting to Postgres (settings and tasks module are valid)', async () => {
    const results = await Promise.all(cliServices.map(([, s]) => runCli(s.command!, { ...s.environment, LOG_LEVEL: 'silent' })))
    results.forEach((res, i) => {
      const [name] = cliServices[i]!
      // Exit 2 would mean a configuration or tasks-module problem; 1 with this message means it got to the network.
      expect(res.code, `${name}: ${res.stderr}`).toBe(1)
      expect(res.stderr, name).toContain('Cannot connect to PostgreSQL at postgres://postgres:***@postgres:5432/app')
    })
  })
})

function s(name: string): Service {
  return compose.services[name]!
}
