import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { TaskRelay } from '../task-relay.ts'
import { toTaskId } from '../task-record.ts'
import { readStats } from '../cli/stats-report.ts'
import { listTasks, parseListFilters, taskDependsOn } from '../cli/task-list.ts'
import { CliError } from '../cli/errors.ts'
import { DASHBOARD_PAGE } from './page.ts'

/**
 * A read-only web dashboard: one HTML page and the JSON it reads.
 *
 *   GET /                 the page (refreshes itself every 2 s)
 *   GET /api/stats        tasks per queue and state (as `taskrelay stats --json`)
 *   GET /api/tasks        newest first; ?state=failed,cancelled&queue=&task=&limit=&after=
 *   GET /api/tasks/:id    one task, with what it depends on
 *
 * Read-only on purpose: it shows payloads, results and errors, so it binds
 * to 127.0.0.1 unless told otherwise, and it changes nothing (use the CLI's
 * retry and cancel, or the SQL functions, to act).
 */
export class DashboardServer {
  readonly #tr: TaskRelay
  readonly #log: Logger
  #server: Server | null = null

  constructor(tr: TaskRelay, log: Logger) {
    this.#tr = tr
    this.#log = log
  }

  /** Listen; resolves with the address actually bound (port 0 picks a free one). */
  async start(port: number, host: string): Promise<AddressInfo> {
    const server = createServer((req, res) => void this.#handle(req, res))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => resolve())
    })
    this.#server = server
    return server.address() as AddressInfo
  }

  async stop(): Promise<void> {
    const server = this.#server
    this.#server = null
    if (!server) return
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://dashboard')
    try {
      if (req.method !== 'GET') return send(res, 405, { error: 'read-only: only GET is served' })
      if (url.pathname === '/') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(DASHBOARD_PAGE)
        return
      }
      if (url.pathname === '/api/stats') return send(res, 200, await readStats(this.#tr.executor, this.#tr.schema))
      if (url.pathname === '/api/tasks') return send(res, 200, await this.#list(url.searchParams))
      const one = /^\/api\/tasks\/([^/]+)$/.exec(url.pathname)
      if (one) return await this.#task(res, decodeURIComponent(one[1]!))
      send(res, 404, { error: `no such page: ${url.pathname}` })
    } catch (err) {
      if (err instanceof CliError) return send(res, 400, { error: err.message })
      this.#log.warn({ err, url: req.url }, 'dashboard request failed')
      send(res, 500, { error: err instanceof Error ? err.message : String(err) })
    }
  }

  #list(params: URLSearchParams) {
    // The same filters, checks and keyset paging as `taskrelay list`.
    const flags: Record<string, string> = {}
    for (const key of ['state', 'queue', 'task', 'since', 'limit', 'after']) {
      const value = params.get(key)
      if (value !== null && value !== '') flags[key] = value
    }
    return listTasks(this.#tr.executor, this.#tr.schema, parseListFilters(flags))
  }

  async #task(res: ServerResponse, idText: string): Promise<void> {
    const id = toTaskId(idText)
    if (id === null) return send(res, 400, { error: `"${idText}" is not a task id (a positive whole number)` })
    const task = await this.#tr.getTask(id)
    if (!task) return send(res, 404, { error: `no task ${id} in schema "${this.#tr.schema}"` })
    send(res, 200, { ...task, dependsOn: await taskDependsOn(this.#tr.executor, this.#tr.schema, String(id)) })
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(text)
}
