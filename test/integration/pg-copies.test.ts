import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { z } from 'zod'
import { databaseUrl, redisUrl, uniqueSchema } from '../support/db.ts'
import { ConfigError, Relay, TaskRelay, Worker, defineTask } from '../../src/index.ts'

/**
 * An app on another pg 8 version gets its own nested copy of pg, whose Pool
 * class is not ours. Here that copy is real: pg's directory copied out of
 * node_modules and loaded as a second module instance.
 */

const repoModules = fileURLToPath(new URL('../../node_modules/', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'taskrelay-pg-copy-'))
let OtherPg: typeof pg
let pool: pg.Pool
let tr: TaskRelay
const schema = uniqueSchema('pgcopy')

const echo = defineTask({ name: 'pgcopy.echo', queue: 'pgcopy', payload: z.object({ s: z.string() }), run: ({ s }) => s })

beforeAll(() => {
  const modules = join(dir, 'node_modules')
  mkdirSync(modules)
  cpSync(join(repoModules, 'pg'), join(modules, 'pg'), { recursive: true })
  // pg's own dependencies stay shared; pg itself (its Pool class) is the second copy.
  const deps = Object.keys(JSON.parse(readFileSync(join(repoModules, 'pg/package.json'), 'utf8')).dependencies)
  for (const dep of deps) symlinkSync(join(repoModules, dep), join(modules, dep))
  OtherPg = createRequire(join(dir, 'app.js'))('pg')
  pool = new OtherPg.Pool({ connectionString: databaseUrl(), max: 5 })
  pool.on('error', () => {})
})

afterAll(async () => {
  await tr?.close()
  await pool?.query(`drop schema if exists "${schema}" cascade`)
  await pool?.end()
  rmSync(dir, { recursive: true, force: true })
})

describe('a pg.Pool from another copy of pg 8', () => {
  it('is really another copy', () => {
    expect(OtherPg.Pool).not.toBe(pg.Pool)
    expect(pool instanceof pg.Pool).toBe(false)
  })

  it('is accepted, and migrate, enqueue, relay, worker and waitFor (LISTEN) run on it', async () => {
    tr = new TaskRelay({ db: pool, schema })
    expect(tr.pool).toBe(pool)
    await tr.migrate()
    const keyPrefix = `pgcopy-${schema}`
    const relay = new Relay(tr, { redis: redisUrl(), keyPrefix })
    const worker = new Worker(tr, { redis: redisUrl(), keyPrefix, queues: ['pgcopy'], tasks: [echo], shutdownGraceMs: 0 })
    await Promise.all([relay.start(), worker.start()])
    try {
      const { id } = await tr.enqueue(echo, { s: 'from the other pg' })
      expect(await tr.waitFor(echo, id, { timeoutMs: 20_000 })).toMatchObject({ state: 'succeeded', result: 'from the other pg' })
    } finally {
      await Promise.all([relay.stop(), worker.stop()])
    }
  })

  it('something shaped like no pool is still refused, naming what is expected', () => {
    const notAPool = { query: async () => ({ rows: [] }) }
    expect(() => new TaskRelay({ db: notAPool as never })).toThrow(ConfigError)
    expect(() => new TaskRelay({ db: notAPool as never })).toThrow(/db: expected a pg\.Pool \(pg 8\), a postgres:\/\/ connection string or a Kysely instance/)
  })
})
