import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import pg from 'pg'
import { z } from 'zod'
import { TaskRelay, createLogger } from 'taskrelay'
import { sendWelcomeEmail, syncCrmContact } from './tasks.ts'

/**
 * The example app: a signup endpoint that creates the user and enqueues the
 * welcome email and the CRM sync in the same transaction. If the INSERT fails
 * (say, the email is taken) or the process dies before COMMIT, no task exists;
 * once COMMIT returns, the tasks will run — that is the whole point.
 *
 *   POST /signup {"email": "ada@example.com", "name": "Ada"}  → 201 {userId, taskIds}
 *   GET  /tasks/:id                                          → the task row (state, result, error)
 *   GET  /healthz
 *
 * Settings: DATABASE_URL, TASKRELAY_SCHEMA (default taskrelay), PORT (default
 * 3000; 0 picks a free one), APP_SCHEMA (where the users table lives, default public).
 */
const log = createLogger()
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' })
pool.on('error', (err) => log.warn({ err }, 'idle postgres connection failed'))
const tr = new TaskRelay({ db: pool, schema: process.env.TASKRELAY_SCHEMA ?? 'taskrelay', logger: log })
const users = `"${(process.env.APP_SCHEMA ?? 'public').replaceAll('"', '""')}".users`

await pool.query(`create table if not exists ${users} (
  id         bigint generated always as identity primary key,
  email      text not null unique,
  name       text,
  created_at timestamptz not null default now()
)`)

const signupBody = z.object({ email: z.email(), name: z.string().min(1).max(200).optional() })

async function signup(body: unknown, res: ServerResponse) {
  const parsed = signupBody.safeParse(body)
  if (!parsed.success) return send(res, 400, { error: z.prettifyError(parsed.error) })
  const { email, name } = parsed.data
  const client = await pool.connect()
  try {
    await client.query('begin')
    const user = await client.query<{ id: string }>(`insert into ${users} (email, name) values ($1, $2) returning id`, [email, name ?? null])
    const userId = Number(user.rows[0]!.id)
    // Same client, same transaction: the task rows commit or roll back with the user.
    const { ids } = await tr.enqueueMany(client, [
      { task: sendWelcomeEmail, payload: { userId, email, ...(name ? { name } : {}) } },
      { task: syncCrmContact, payload: { userId, email } },
    ])
    await client.query('commit')
    send(res, 201, { userId, taskIds: { welcomeEmail: ids[0], crmSync: ids[1] } })
  } catch (err) {
    await client.query('rollback').catch(() => {})
    if ((err as { code?: string }).code === '23505') return send(res, 409, { error: `${email} is already signed up` })
    throw err
  } finally {
    client.release()
  }
}

function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let text = ''
  for await (const chunk of req) text += chunk
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const server = createServer((req, res) => {
  const handle = async () => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (req.method === 'POST' && url.pathname === '/signup') return signup(await readJson(req), res)
    const task = /^\/tasks\/(\d+)$/.exec(url.pathname)
    if (req.method === 'GET' && task) {
      const row = await tr.getTask(task[1]!)
      return row ? send(res, 200, row) : send(res, 404, { error: `no task ${task[1]}` })
    }
    if (req.method === 'GET' && url.pathname === '/healthz') return send(res, 200, { ok: true })
    send(res, 404, { error: 'try POST /signup or GET /tasks/:id' })
  }
  handle().catch((err: unknown) => {
    log.error({ err }, 'request failed')
    if (!res.headersSent) send(res, 500, { error: 'internal error' })
  })
})

server.listen(Number(process.env.PORT ?? 3000), () => {
  const { port } = server.address() as { port: number }
  log.info({ port }, `example app listening on http://127.0.0.1:${port}`)
})

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    server.close()
    void tr.close().then(() => pool.end()).then(() => process.exit(0))
  })
}
