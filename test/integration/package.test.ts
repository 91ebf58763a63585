import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { databaseUrl, uniqueSchema } from '../support/db.ts'
import pg from 'pg'

// The published package runs from dist/ (Node will not strip types inside
// node_modules). Build it and use it the way a user would: by package name,
// through package.json#exports, in a plain Node process.
const root = new URL('../../', import.meta.url).pathname
const schema = uniqueSchema('pkg')

beforeAll(() => {
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'pipe' })
}, 120_000)

afterAll(async () => {
  const pool = new pg.Pool({ connectionString: databaseUrl() })
  await pool.query(`drop schema if exists "${schema}" cascade`)
  await pool.end()
})

describe('the built package', () => {
  it('ships declarations and the SQL files next to the compiled code', () => {
    for (const file of ['dist/index.js', 'dist/index.d.ts', 'dist/testing.js', 'dist/testing.d.ts', 'dist/db/sql/task-claim-batch.sql', 'dist/cli/main.js']) {
      expect(existsSync(root + file), file).toBe(true)
    }
  })

  it('migrates, enqueues and runs a task inline when imported by name', () => {
    const script = `
      import { TaskRelay, defineTask } from 'taskrelay'
      import { runInline, expectEnqueued } from 'taskrelay/testing'
      import { z } from 'zod'
      const tr = new TaskRelay({ db: process.env.DATABASE_URL, schema: process.env.SCHEMA })
      const migrated = await tr.migrate()
      const hello = defineTask({ name: 'pkg.hello', payload: z.object({ who: z.string() }), run: async ({ who }) => 'hello ' + who })
      const { id } = await tr.enqueue(hello, { who: 'dist' })
      const ids = await expectEnqueued(tr.pool, hello, { who: 'dist' }, { schema: process.env.SCHEMA })
      const task = await tr.getTask(id)
      const inline = await runInline(hello, { who: 'inline' })
      console.log(JSON.stringify({ applied: migrated.applied.length, state: task.state, found: ids.includes(id), inline }))
      await tr.close()
    `
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: databaseUrl(), SCHEMA: schema },
      encoding: 'utf8',
    })
    const result = JSON.parse(out.trim().split('\n').at(-1)!)
    // Every migration the package ships is applied to a fresh schema.
    const shipped = readdirSync(root + 'migrations').filter((f) => /^\d{4}_.*\.sql$/.test(f))
    expect(shipped.length).toBeGreaterThanOrEqual(4)
    expect(result).toEqual({ applied: shipped.length, state: 'pending', found: true, inline: 'hello inline' })
  })
})
