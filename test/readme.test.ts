import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { EventEmitter } from 'node:events'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { Kysely, PostgresDialect, type Generated } from 'kysely'
import pg from 'pg'
import { z } from 'zod'
import * as taskrelay from '../src/index.ts'
import { TaskRelay as BaseTaskRelay, defineTask, Relay as BaseRelay, Sweeper, Worker as BaseWorker, type RelayOptions, type Task, type TaskRelayOptions, type WorkerOptions } from '../src/index.ts'
import { buildProgram } from '../src/cli/program.ts'
import { createTestDb, databaseUrl, redisUrl, waitUntil, type TestDb } from './support/db.ts'
import { makeTask, MIN, dbNow } from './support/factory.ts'
import { forSchema, questionFor, statusQueries } from '../examples/status.ts'
import { baseEnv, ROOT, runCli } from './cli/cli-process.ts'

/**
 * The README cannot rot: its first screen names the two commands and the
 * peer dependencies package.json has; its two TypeScript examples are the
 * bodies of `readmeExample` and `inProcessExample` (compared, then run); its
 * SQL queries are examples/status-queries.sql (compared, then run); its CLI
 * reference names the CLI's commands; its quickstart's npm scripts run here.
 */
const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
const SELF = readFileSync(new URL(import.meta.url), 'utf8')
const FIRST_SCREEN = README.slice(0, README.indexOf('\n## '))
type PackageJson = { scripts: Record<string, string>; peerDependencies?: Record<string, string> }
const PKG = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as PackageJson

interface Mailer {
  send(to: string, subject: string, options: { signal: AbortSignal }): Promise<void>
}

async function readmeExample(TaskRelay: typeof BaseTaskRelay, mailer: Mailer, email: string) {
  // readme-example:start
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL })
  const db = new Kysely<{ users: { id: Generated<number>; email: string } }>({ dialect: new PostgresDialect({ pool }) })
  const tr = new TaskRelay({ db: pool })
  await tr.migrate() // creates or upgrades the taskrelay schema; safe from many processes at once

  const sendWelcome = defineTask({
    name: 'email.welcome',
    payload: z.object({ userId: z.number(), email: z.email() }),
    async run({ email }, ctx) {
      await mailer.send(email, 'Welcome!', { signal: ctx.signal })
    },
  })

  await db.transaction().execute(async (trx) => {
    const user = await trx.insertInto('users').values({ email }).returning('id').executeTakeFirstOrThrow()
    await tr.enqueue(trx, sendWelcome, { userId: user.id, email }) // commits or rolls back with the user
  })
  // readme-example:end
  return { pool, db, tr, sendWelcome }
}

/** What the in-process example needs of `process`: a test passes its own, to send SIGTERM. */
interface ProcessLike {
  env: Record<string, string | undefined>
  once(signal: 'SIGTERM', listener: () => Promise<void>): unknown
}

async function inProcessExample(tr: BaseTaskRelay, pool: pg.Pool, sendWelcome: Task, process: ProcessLike, Relay: typeof BaseRelay, Worker: typeof BaseWorker) {
  // readme-in-process:start
  const redis = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
  const services = [new Relay(tr, { redis }), new Sweeper(tr), new Worker(tr, { redis, tasks: [sendWelcome], concurrency: 20 })]
  await Promise.all(services.map((service) => service.start()))

  process.once('SIGTERM', async () => {
    // Running handlers get shutdownGraceMs (default 10 s) to finish; the rest are handed back, no attempt lost.
    await Promise.all(services.map((service) => service.stop()))
    await tr.close()
    await pool.end()
  })
  // readme-in-process:end
  return services
}

function codeBlocks(markdown: string, lang: string): string[] {
  return [...markdown.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!.trimEnd())
}

/** The lines between `// <name>:start` and `// <name>:end` in this file, dedented by one level. */
function region(name: string): string {
  const text = SELF.slice(SELF.indexOf(`// ${name}:start\n`) + name.length + 10, SELF.indexOf(`  // ${name}:end`))
  return text.replace(/^ {2}/gm, '').trim()
}

/** A README code block split into its import lines and the code after them; the names imported from 'taskrelay' must exist. */
function importsAndBody(block: string): { imports: string[]; body: string } {
  const lines = block.split('\n')
  const imports = lines.filter((l) => l.startsWith('import '))
  const fromPackage = imports.find((l) => l.endsWith("from 'taskrelay'"))
  expect(fromPackage, "an import from 'taskrelay'").toBeDefined()
  for (const name of /\{ (.*) \}/.exec(fromPackage!)![1]!.split(', ')) expect(taskrelay, name).toHaveProperty(name)
  return { imports, body: lines.slice(imports.length).join('\n').trim() }
}

/** The arguments an npm script gives node ("node --conditions=x examples/app.ts" → ["--conditions=x", "examples/app.ts"]). */
function scriptArgs(name: string): string[] {
  const [command, ...args] = (PKG.scripts[name] ?? '').split(' ')
  expect(command, `npm script ${name}`).toBe('node')
  return args
}

function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`)
  expect(start, `README section "${title}"`).toBeGreaterThan(0)
  const end = README.indexOf('\n## ', start + 4)
  return README.slice(start, end < 0 ? undefined : end)
}

let db: TestDb

beforeAll(async () => {
  db = await createTestDb()
  await db.pool.query(`create table "${db.schema}".users (id integer generated always as identity primary key, email text not null unique)`)
})
afterAll(async () => {
  await db?.cleanup()
})

describe('the first code example', () => {
  it('is the body of readmeExample(), about 15 lines, with imports the package really exports', () => {
    const { imports, body } = importsAndBody(codeBlocks(FIRST_SCREEN, 'ts')[0]!)
    expect(body).toBe(region('readme-example'))
    expect(imports.length).toBeLessThanOrEqual(4)
    expect(body.split('\n').filter((l) => l.trim() !== '').length).toBeLessThanOrEqual(16)
  })

  it('comes with the two commands and an install line naming the peer dependencies package.json has', () => {
    const commands = codeBlocks(FIRST_SCREEN, 'sh').join('\n')
    expect(commands).toContain('npm install && npm run dev')
    expect(commands).toContain('npm install && npm test')
    const install = commands.split('\n').find((l) => l.startsWith('npm install taskrelay'))!
    const peers = Object.entries(PKG.peerDependencies ?? {})
    expect(peers.length).toBeGreaterThan(0)
    // `pg` 8.11+: the README states each peer's lowest supported version.
    for (const [name, range] of peers) {
      expect(install.split(' '), name).toContain(name)
      expect(FIRST_SCREEN, `${name} ${range}`).toContain(`\`${name}\` ${/(\d+\.\d+)/.exec(range)![1]}`)
    }
  })

  it('commits the user and the task together, and the task runs', async () => {
    const schema = db.schema
    // The example uses the default schema and an unqualified "users": point both at this file's schema.
    class SchemaTaskRelay extends BaseTaskRelay {
      constructor(options: TaskRelayOptions) {
        super({ ...options, schema })
      }
    }
    const sent: string[] = []
    const mailer: Mailer = { send: async (to) => void sent.push(to) }
    const previousUrl = process.env.DATABASE_URL
    process.env.DATABASE_URL = `${databaseUrl()}${databaseUrl().includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`
    const example = await readmeExample(SchemaTaskRelay, mailer, 'ada@example.com').finally(() => (process.env.DATABASE_URL = previousUrl))
    try {
      const tasks = await db.pool.query(`select id, name, payload, state from "${schema}".tasks where name = 'email.welcome'`)
      const user = await db.pool.query(`select id from "${schema}".users where email = 'ada@example.com'`)
      expect(tasks.rows).toEqual([expect.objectContaining({ payload: { userId: user.rows[0].id, email: 'ada@example.com' }, state: 'pending' })])

      // The same transaction failing (the email is taken) leaves no task behind.
      await expect(
        example.db.transaction().execute(async (trx) => {
          await example.tr.enqueue(trx, example.sendWelcome, { userId: 999, email: 'ada@example.com' })
          await trx.insertInto('users').values({ email: 'ada@example.com' }).execute()
        }),
      ).rejects.toThrow(/duplicate key/)
      expect((await db.pool.query(`select count(*)::int as n from "${schema}".tasks`)).rows[0].n).toBe(1)

      // The second example, in the same process: relay, sweeper and worker run the task; SIGTERM stops them and ends the pool.
      const keyPrefix = `readme-${schema}` // the example uses Redis's default key prefix: this file has its own
      class PrefixedRelay extends BaseRelay {
        constructor(tr: BaseTaskRelay, options: RelayOptions) {
          super(tr, { ...options, keyPrefix })
        }
      }
      class PrefixedWorker extends BaseWorker {
        constructor(tr: BaseTaskRelay, options: WorkerOptions) {
          super(tr, { ...options, keyPrefix })
        }
      }
      const signals = new EventEmitter()
      const fakeProcess: ProcessLike = { env: { REDIS_URL: redisUrl() }, once: (signal, listener) => signals.once(signal, listener) }
      const services = await inProcessExample(example.tr, example.pool, example.sendWelcome, fakeProcess, PrefixedRelay, PrefixedWorker)
      try {
        await example.tr.waitFor(tasks.rows[0].id, { timeoutMs: 20_000 })
        expect(sent).toEqual(['ada@example.com'])
      } finally {
        signals.emit('SIGTERM')
        await waitUntil(() => example.pool.ended && services.every((service) => !service.running), { what: 'SIGTERM to stop the services and end the pool' })
      }
    } finally {
      if (!example.pool.ended) await example.tr.close()
      if (!example.pool.ended) await example.db.destroy()
    }
  })
})

describe('running it in your own process', () => {
  it('is the body of inProcessExample(), which the first example runs (above)', () => {
    expect(importsAndBody(codeBlocks(section('Running it in your own process'), 'ts')[0]!).body).toBe(region('readme-in-process'))
  })
})

describe('SQL status queries', () => {
  it('are the queries of examples/status-queries.sql, and they answer the questions', async () => {
    const fromReadme = codeBlocks(section('Task status from SQL'), 'sql')
    const queries = statusQueries()
    expect(fromReadme).toEqual(queries.map((q) => q.sql))

    const failed = await makeTask(db.pool, db.schema, { state: 'failed', name: 'status.q', finishedAt: dbNow(-5 * MIN) })
    await makeTask(db.pool, db.schema, { state: 'failed', name: 'status.q', finishedAt: dbNow(-2 * 60 * MIN) })
    await makeTask(db.pool, db.schema, { state: 'pending', name: 'status.q', queue: 'status', runAt: dbNow(-MIN) })
    await makeTask(db.pool, db.schema, { state: 'pending', name: 'status.q', queue: 'status', runAt: dbNow(60 * MIN) })
    const run = async (name: string, taskId?: string) => {
      const { text, values } = forSchema(queries.find((q) => q.name === name)!.sql, db.schema, taskId)
      return (await db.pool.query(text, values)).rows
    }
    expect(await run('failed-last-hour')).toEqual([expect.objectContaining({ name: 'status.q', failed: '1' })])
    expect(await run('task-history', failed)).toEqual([expect.objectContaining({ id: failed, state: 'failed', error: 'test failure' })])
    const depth = await run('queue-depth')
    expect(depth.find((r) => r.queue === 'status')).toMatchObject({ state: 'pending', tasks: '2' })
    expect(depth.find((r) => r.queue === 'status')!.oldest_due).toBeInstanceOf(Date)
    const waiting = await makeTask(db.pool, db.schema, { state: 'waiting', name: 'status.q' })
    await db.pool.query(`insert into "${db.schema}".task_dependencies (task_id, depends_on) values ($1, $2)`, [waiting, failed])
    expect(await run('waiting-on', waiting)).toEqual([expect.objectContaining({ task_id: failed, state: 'failed', error: 'test failure' })])
  })
})

describe('CLI reference and commands', () => {
  it('lists exactly the commands the CLI has', () => {
    const reference = section('CLI reference')
    const commands = buildProgram().commands.map((c) => c.name())
    for (const name of commands) expect(reference, name).toContain(`\`taskrelay ${name}`)
    // Every command line the README shows (`taskrelay x`, npx taskrelay x, bin/taskrelay.js x) names a real command.
    const mentioned = new Set([...README.matchAll(/(?:`|npx |bin\/)taskrelay(?:\.js)? ([a-z][\w-]*)/g)].map((m) => m[1]!))
    expect(mentioned.size).toBeGreaterThan(10)
    expect([...mentioned].filter((w) => !commands.includes(w))).toEqual([])
  })

  it('`npm run dev` is the dev command', async () => {
    expect(PKG.scripts.dev).toMatch(/^node (--[\w=-]+ )*src\/cli\/main\.ts dev$/)
    expect(PKG.scripts.test).toBe('vitest run')
    const help = await runCli(['dev', '--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('Usage: taskrelay dev')
  })
})

describe('quickstart: the example app', () => {
  it('signs a user up with both tasks in one transaction, refuses a duplicate without tasks, and shows task status', async () => {
    // The app's own users table, apart from the one the first example uses.
    const appSchema = `${db.schema}_app`
    await db.pool.query(`create schema "${appSchema}"`)
    onTestFinished(() => db.pool.query(`drop schema "${appSchema}" cascade`).then(() => {}))
    const env = baseEnv({ DATABASE_URL: databaseUrl(), TASKRELAY_SCHEMA: db.schema, APP_SCHEMA: appSchema, PORT: '0', LOG_LEVEL: 'info' })
    // What the quickstart runs: `npm run example:app`, then `npm run example:status -- <id>`.
    for (const script of ['example:app', 'example:status']) expect(section('Quickstart: the example app')).toContain(`npm run ${script}`)
    const app = spawn(process.execPath, scriptArgs('example:app'), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    app.stdout.on('data', (d: Buffer) => (out += d.toString()))
    app.stderr.on('data', (d: Buffer) => (out += d.toString()))
    try {
      const port = await waitUntil(() => /"port":(\d+)/.exec(out)?.[1], { what: `the example app to listen (output: ${out})` })
      const signup = (email: string) =>
        fetch(`http://127.0.0.1:${port}/signup`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, name: 'Grace' }) })
      const before = (await db.pool.query(`select count(*)::int as n from "${db.schema}".tasks`)).rows[0].n as number
      const created = await signup('grace@example.com')
      expect(created.status).toBe(201)
      const body = (await created.json()) as { userId: number; taskIds: { welcomeEmail: string; crmSync: string } }
      const rows = await db.pool.query(`select id, name, payload from "${db.schema}".tasks where id = any($1::bigint[]) order by id`, [[body.taskIds.welcomeEmail, body.taskIds.crmSync]])
      expect(rows.rows.map((r) => [r.name, r.payload.userId])).toEqual([
        ['email.welcome', body.userId],
        ['crm.sync-contact', body.userId],
      ])

      const duplicate = await signup('grace@example.com')
      expect(duplicate.status).toBe(409)
      expect((await db.pool.query(`select count(*)::int as n from "${db.schema}".tasks`)).rows[0].n).toBe(before + 2)

      const task = await fetch(`http://127.0.0.1:${port}/tasks/${body.taskIds.welcomeEmail}`)
      expect(await task.json()).toMatchObject({ id: body.taskIds.welcomeEmail, name: 'email.welcome', state: 'pending' })

      const status = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [...scriptArgs('example:status'), body.taskIds.welcomeEmail], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
        let text = ''
        child.stdout.on('data', (d: Buffer) => (text += d.toString()))
        child.stderr.on('data', (d: Buffer) => (text += d.toString()))
        child.on('close', (code) => resolve({ code, out: text }))
      })
      expect(status.code, status.out).toBe(0)
      for (const q of statusQueries()) expect(status.out).toContain(questionFor(q, body.taskIds.welcomeEmail))
      expect(status.out).toContain('email.welcome')
    } finally {
      app.kill('SIGTERM')
    }
  })
})
