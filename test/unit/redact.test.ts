import { describe, expect, it } from 'vitest'
import * as logger from '../../src/logger.ts'
import { redactSecrets as cliRedact, resolveSettings } from '../../src/cli/settings.ts'
import { SettingsError } from '../../src/cli/errors.ts'
import { runCli } from '../cli/cli-process.ts'

// Through the CLI's export: the same function must serve logs, help and error messages.
const redact = cliRedact

describe('redactSecrets', () => {
  it('is the one redaction function, shared by the logger and the CLI', () => {
    expect(logger.redactSecrets).toBe(cliRedact)
  })

  it.each([
    ['postgres password with an unescaped @ (userinfo ends at the last @)', 'postgres://user:p@ss@db.example:5432/app', 'postgres://user:***@db.example:5432/app'],
    ['several unescaped @', 'postgresql://u:a@b@c@db/app', 'postgresql://u:***@db/app'],
    ['percent-encoded @', 'postgres://user:p%40ss@db/app', 'postgres://user:***@db/app'],
    ['a / in the password', 'postgres://user:p/ss@db/app', 'postgres://user:***@db/app'],
    ['redis with a password only', 'redis://:pw@127.0.0.1:6379/0', 'redis://:***@127.0.0.1:6379/0'],
    ['redis with an @ in the password', 'rediss://default:p@ss@cache:6380', 'rediss://default:***@cache:6380'],
    [
      'sentinel with several hosts and a sentinel password',
      'redis+sentinel://:s3@cr3t@h1:26379,h2:26379,h3/mymaster/2?sentinelPassword=an@ther&tls=true',
      'redis+sentinel://:***@h1:26379,h2:26379,h3/mymaster/2?sentinelPassword=***&tls=true',
    ],
    ['?sslpassword=', 'postgres://app@db/app?sslmode=verify-full&sslpassword=k3y&application_name=x', 'postgres://app@db/app?sslmode=verify-full&sslpassword=***&application_name=x'],
    ['?password= and a passphrase, in any case', 'postgres://db/app?PASSWORD=x&sslkey_passphrase=y', 'postgres://db/app?PASSWORD=***&sslkey_passphrase=***'],
    ['an @ inside a secret parameter', 'postgres://u:pw@db/app?sslpassword=a@b', 'postgres://u:***@db/app?sslpassword=***'],
    ['a URL quoted inside a message', 'Cannot connect to PostgreSQL at postgres://u:p@ss@db/app: timeout', 'Cannot connect to PostgreSQL at postgres://u:***@db/app: timeout'],
    ['two URLs in one text', 'a=redis://:x@r b=postgres://u:y@p/d', 'a=redis://:***@r b=postgres://u:***@p/d'],
  ])('%s', (_, input, expected) => {
    expect(redact(input)).toBe(expected)
  })

  it.each([
    'postgres://postgres@127.0.0.1:5432/test',
    'redis://127.0.0.1:6379',
    'redis+sentinel://h1:26379,h2:26379/mymaster?tls=true',
    'postgres://db/app?application_name=a@b',
    'no URL here: user:pw@host',
  ])('leaves %s as it is', (input) => {
    expect(redact(input)).toBe(input)
  })
})

describe('secrets in settings messages', () => {
  it('never shows a password with an unescaped @, in any part, when a setting is refused', () => {
    let problems: readonly string[] = []
    try {
      resolveSettings(
        { process: ['databaseUrl', 'redisUrl'], components: [] },
        {},
        { DATABASE_URL: 'mysql://app:hun@ter2@db/app?sslpassword=k3y', REDIS_URL: 'ftp://:s3@cr3t@r' },
      )
    } catch (err) {
      if (!(err instanceof SettingsError)) throw err
      problems = err.problems
    }
    const text = problems.join('\n')
    expect(problems).toHaveLength(2)
    for (const secret of ['ter2', 'k3y', 'cr3t']) expect(text).not.toContain(secret)
    expect(text).toContain('mysql://app:***@db/app?sslpassword=***')
  })
})

describe('the start-up log line of a real process', () => {
  it('shows the URLs with every secret replaced, and so does the connection error', async () => {
    // Port 1: nothing listens; the process logs its configuration, then fails to connect.
    const res = await runCli(['relay'], {
      TASKRELAY_LOG_FORMAT: 'json',
      DATABASE_URL: 'postgres://app:hun@ter2@127.0.0.1:1/app?sslpassword=k3y-secret',
      REDIS_URL: 'redis+sentinel://:s3@cr3t@127.0.0.1:1,127.0.0.1:2/mymaster?sentinelPassword=an@ther',
    })
    const starting = res.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; config?: Record<string, unknown> })
      .find((l) => l.msg === 'taskrelay starting')
    expect(starting?.config, res.stdout + res.stderr).toMatchObject({
      database: 'postgres://app:***@127.0.0.1:1/app?sslpassword=***',
      redis: 'redis+sentinel://:***@127.0.0.1:1,127.0.0.1:2/mymaster?sentinelPassword=***',
    })
    expect(res.code).toBe(1)
    expect(res.stderr).toContain('Cannot connect to PostgreSQL at postgres://app:***@127.0.0.1:1/app?sslpassword=***')
    for (const secret of ['ter2', 'k3y-secret', 'cr3t', 'ther']) expect(res.stdout + res.stderr).not.toContain(secret)
  })
})
