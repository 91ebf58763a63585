/**
 * The app the tarball test installs taskrelay into, as source text: a user's
 * app with its own pg, zod and kysely, running every service in its own
 * process. Strings, so the checkout's type check never resolves these
 * imports against the checkout.
 */

/**
 * Type-checked, then run: migrates, enqueues in Kysely transactions, runs
 * Worker, Relay and Sweeper, awaits the typed result; prints one JSON line.
 */
export const APP_TS = `import pg from 'pg'
import { Kysely, PostgresDialect } from 'kysely'
import { z } from 'zod'
import { Relay, Sweeper, TaskRelay, Worker, defineTask } from 'taskrelay'

const { DATABASE_URL, REDIS_URL: redis, SCHEMA, KEY_PREFIX: keyPrefix } = process.env as Record<string, string>
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 8 })
const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) })
const tr = new TaskRelay({ db: pool, schema: SCHEMA })

const greet = defineTask({
  name: 'app.greet',
  payload: z.object({ who: z.string().min(1) }),
  async run({ who }) {
    return { greeting: 'hello ' + who }
  },
})

const migrated = await tr.migrate()

// Rolled back with the transaction: no task.
await db
  .transaction()
  .execute(async (trx) => {
    await tr.enqueue(trx, greet, { who: 'nobody' })
    throw new Error('rollback')
  })
  .catch(() => {})
const { id } = await db.transaction().execute((trx) => tr.enqueue(trx, greet, { who: 'tarball' }))

const services = [new Worker(tr, { redis, keyPrefix, tasks: [greet] }), new Relay(tr, { redis, keyPrefix }), new Sweeper(tr)]
for (const s of services) await s.start()
const done = await tr.waitFor(greet, id, { timeoutMs: 30_000 })
for (const s of services) await s.stop()
// Typed from the task's definition: a string, not unknown.
const greeting: string | undefined = done.result?.greeting

/** Never called: each line must NOT compile. */
export async function typeErrors() {
  // @ts-expect-error the result has no such field
  void done.result?.farewell
  // @ts-expect-error the payload is checked against the schema
  await tr.enqueue(greet, { who: 42 })
}

const { rows } = await pool.query('select payload from "' + SCHEMA + '".tasks order by id')
await tr.close()
await db.destroy()
console.log(JSON.stringify({ applied: migrated.applied.length, state: done.state, greeting, payloads: rows.map((r) => r.payload) }))
`

export const TSCONFIG_JSON = JSON.stringify({
  compilerOptions: {
    target: 'es2023',
    lib: ['es2024'],
    module: 'nodenext',
    moduleResolution: 'nodenext',
    types: ['node'],
    strict: true,
    noEmit: true,
    verbatimModuleSyntax: true,
    // As \`tsc --init\` sets it: zod 3.25's and ioredis's own declarations
    // do not pass a full check. taskrelay's types are held by the
    // lines marked to fail in typeErrors(), which compile if anything is any.
    skipLibCheck: true,
  },
  include: ['app.ts'],
})
