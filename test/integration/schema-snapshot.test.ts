import { existsSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { databaseUrl } from '../support/db.ts'
import { SCHEMA_FIXTURE, normaliseDump, renderSnapshot } from '../support/dump-schema.ts'

/**
 * The committed schema snapshot must match what the migrations produce, so a
 * schema change is always visible in review (graphile-worker's CI check).
 */
describe('schema snapshot (test/fixtures/schema.sql)', () => {
  it('matches a freshly migrated schema', async () => {
    const actual = await renderSnapshot(databaseUrl())
    const committed = existsSync(SCHEMA_FIXTURE) ? readFileSync(SCHEMA_FIXTURE, 'utf8') : '(missing)'
    expect(actual, 'schema changed, run npm run schema:dump').toBe(committed)
  })

  it('normalisation drops only what varies between runs and pg_dump versions', () => {
    const raw = [
      '--',
      '-- PostgreSQL database dump',
      '--',
      '',
      '\\restrict 3kQp1xVt0JzR',
      '',
      '-- Dumped from database version 15.20',
      '-- Dumped by pg_dump version 15.20',
      '',
      'SET statement_timeout = 0;',
      "SET client_encoding = 'UTF8';",
      "SELECT pg_catalog.set_config('search_path', '', false);",
      '',
      '',
      '',
      'CREATE TABLE taskrelay.tasks (   ',
      '    id bigint NOT NULL',
      ');',
      '',
      '\\unrestrict 3kQp1xVt0JzR',
      '',
    ].join('\r\n')
    expect(normaliseDump(raw)).toBe(
      ['--', '-- PostgreSQL database dump', '--', '', 'CREATE TABLE taskrelay.tasks (', '    id bigint NOT NULL', ');', ''].join('\n'),
    )
  })
})
