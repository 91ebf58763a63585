import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { Kysely, PostgresDialect, type Generated } from 'kysely'
import pg from 'pg'
import { z } from 'zod'
import * as taskrelay from '../src/index.ts'
import { TaskRelay as BaseTaskRelay, defineTask, Relay, Worker, type TaskRelayOptions } from '../src/index.ts'
import { buildProgram } from '../src/cli/program.ts'
import { createTestDb, databaseUrl, redisUrl, waitUntil, type TestDb } from './support/db.ts'
import { makeTask, MIN, dbNow } from './support/factory.ts'
import { forSchema, statusQueries } from '../examples/status.ts'
import { baseEnv, ROOT, runCli } from './cli/cli-process.ts'

/**
 * The README cannot rot: its first code example is the body of
 * `readmeExample` below (compared line by line, then executed), its SQL
 * queries are examples/status-queries.sql (compared, then run), its CLI
 * reference names exactly the commands the CLI has, and its quickstart
 * (example app, status script) runs here.
 */
const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
const SELF = readFileSync(new URL(import.meta.url), 'utf8')

interface Mailer {
  send(to: string, subject: string, options: { signal: AbortSignal }): Promise<void>
}

async function readmeExample(TaskRelay: typeof BaseTaskRelay, mailer: Mailer, email: string) {
  // readme-example:start
  interface DB { users: { id: Generated<number>; email: string } }
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL })
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) })
  const tr = new TaskRelay({ db: pool })

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

function codeBlocks(markdown: string, lang: string): string[] {
  return [...markdown.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!.trimEnd())
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
  it('is the body of readmeExample(), with imports the package really exports', () => {
    const block = codeBlocks(README.slice(0, README.indexOf('\n## ')), 'ts')[0]!
    const lines = block.split('\n')
    const imports = lines.filter((l) => l.startsWith('import '))
    const body = lines.slice(imports.length).join('\n').trim()
    const region = SELF.slice(SELF.indexOf('// readme-example:start\n') + 24, SELF.indexOf('  // readme-example:end'))
    const dedented = region
      .split('\n')
      .map((l) => l.replace(/^ {2}/, ''))
      .join('\n')
      .trim()
    expect(body).toBe(dedented)
    expect(body.split('\n').length + imports.length).toBeLessThanOrEqual(25)
    const fromPackage = imports.find((l) => l.endsWith("from 'taskrelay'"))!
    for (const name of /\{ (.*) \}/.exec(fromPackage)![1]!.split(', ')) expect(taskrelay, name).toHaveProperty(name)
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

      const keyPrefix = `readme-${schema}`
      const relay = new Relay(example.tr, { redis: redisUrl(), keyPrefix })
      const worker = new Worker(example.tr, { redis: redisUrl(), keyPrefix, tasks: [example.sendWelcome] })
      await Promise.all([relay.start(), worker.start()])
      try {
        await example.tr.waitFor(tasks.rows[0].id, { timeoutMs: 20_000 })
        expect(sent).toEqual(['ada@example.com'])
      } finally {
        await Promise.all([relay.stop(), worker.stop()])
      }
    } finally {
      await example.tr.close()
      await example.db.destroy()
    }
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
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }
    expect(pkg.scripts.dev).toBe('node src/cli/main.ts dev')
    expect(pkg.scripts.test).toBe('vitest run')
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
    const app = spawn(process.execPath, ['examples/app.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
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
        const child = spawn(process.execPath, ['examples/status.ts', body.taskIds.welcomeEmail], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
        let text = ''
        child.stdout.on('data', (d: Buffer) => (text += d.toString()))
        child.stderr.on('data', (d: Buffer) => (text += d.toString()))
        child.on('close', (code) => resolve({ code, out: text }))
      })
      expect(status.code, status.out).toBe(0)
      for (const q of statusQueries()) expect(status.out).toContain(q.question)
      expect(status.out).toContain('email.welcome')
    } finally {
      app.kill('SIGTERM')
    }
  })
})
