import net from 'node:net'
import { execFileSync } from 'node:child_process'
import pg from 'pg'
import { Redis } from 'ioredis'
import type { TestProject } from 'vitest/node'

/**
 * Find Postgres and Redis for the tests, in this order:
 *   1. DATABASE_URL / REDIS_URL from the environment;
 *   2. the local servers on 127.0.0.1:5432 and 127.0.0.1:6379 when they answer;
 *   3. containers started with testcontainers when a Docker engine runs;
 *   4. otherwise fail with one message that says what to start.
 * Tests never skip because a service is missing.
 */
const LOCAL_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test'
const LOCAL_REDIS_URL = 'redis://127.0.0.1:6379'

const stops: Array<() => Promise<unknown>> = []

async function postgresAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    await client.query('select 1')
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

async function redisAnswers(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000 })
  redis.on('error', () => {})
  try {
    await redis.connect()
    return (await redis.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    redis.disconnect()
  }
}

function dockerEngineRuns(): boolean {
  try {
    execFileSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: 'pipe', timeout: 5000 })
    return true
  } catch {
    return false
  }
}

async function resolvePostgres(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL
  if (await postgresAnswers(LOCAL_DATABASE_URL)) return LOCAL_DATABASE_URL
  if (dockerEngineRuns()) {
    const { GenericContainer, Wait } = await import('testcontainers')
    const c = await new GenericContainer('postgres:16-alpine')
      .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust', POSTGRES_DB: 'test' })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start()
    stops.push(() => c.stop())
    return `postgres://postgres@${c.getHost()}:${c.getMappedPort(5432)}/test`
  }
  throw new Error(
    'No PostgreSQL for the tests: DATABASE_URL is not set, nothing answers on 127.0.0.1:5432, and no Docker engine ' +
      'runs for testcontainers. Start PostgreSQL (e.g. `pg_ctlcluster 15 main start`) or set DATABASE_URL.',
  )
}

async function resolveRedis(): Promise<string> {
  if (process.env.REDIS_URL) return process.env.REDIS_URL
  if (await redisAnswers(LOCAL_REDIS_URL)) return LOCAL_REDIS_URL
  if (dockerEngineRuns()) {
    const { GenericContainer } = await import('testcontainers')
    const c = await new GenericContainer('redis:7-alpine').withExposedPorts(6379).start()
    stops.push(() => c.stop())
    return `redis://${c.getHost()}:${c.getMappedPort(6379)}`
  }
  throw new Error(
    'No Redis for the tests: REDIS_URL is not set, nothing answers on 127.0.0.1:6379, and no Docker engine runs for ' +
      'testcontainers. Start Redis (e.g. `redis-server --daemonize yes --port 6379 --save ""`) or set REDIS_URL.',
  )
}

export default async function setup(project: TestProject) {
  const [databaseUrl, redisUrl] = await Promise.all([resolvePostgres(), resolveRedis()])
  // Inherited by test workers and by the child processes tests spawn.
  process.env.DATABASE_URL = databaseUrl
  process.env.REDIS_URL = redisUrl
  project.provide('databaseUrl', databaseUrl)
  project.provide('redisUrl', redisUrl)
  return async () => {
    for (const stop of stops) await stop()
  }
}

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string
    redisUrl: string
  }
}
