import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { TaskRelay } from '../task-relay.ts'
import { toTaskId } from '../task-record.ts'
import { readStats } from '../admin/stats.ts'
import { listTasks, parseListInput, type ListInput } from '../admin/task-list.ts'
import { listQueues } from '../admin/queues.ts'
import { readTaskDetail } from '../admin/task-detail.ts'
import { InvalidFiltersError } from '../errors.ts'
import { DASHBOARD_PAGE, DASHBOARD_PAGE_CSP } from './page.ts'
import { capListedTask, capTask } from './caps.ts'
import { SECURITY_HEADERS, refuseRequest, type HostPolicy } from './guard.ts'
import { DashboardRequestError } from './request-error.ts'

/**
 * A read-only web dashboard: one HTML page and the JSON it reads.
 *
 *   GET /                 the page (refreshes itself every 2 s)
 *   GET /api/stats        tasks per queue and state (as `taskrelay stats --json`)
 *   GET /api/tasks        newest first; ?state=failed,cancelled&queue=&task=&since=&limit=&after=
 *   GET /api/tasks/:id    one task, with what it depends on
 *
 * Read-only on purpose: it shows payloads, results and errors, so it binds
 * to 127.0.0.1 unless told otherwise, and it changes nothing (use the CLI's
 * retry and cancel, or the SQL functions, to act). It answers only to the
 * Host and Origin names of guard.ts, sends large fields capped (caps.ts), and
 * answers input it cannot use with 400 and the reason.
 */
export class DashboardServer {
  readonly #tr: TaskRelay
  readonly #log: Logger
  readonly #allowedHosts: readonly string[]
  #policy: HostPolicy | null = null
  #server: Server | null = null

  /** allowedHosts: names besides IP addresses, localhost and the bound host that it answers to (see guard.ts). */
  constructor(tr: TaskRelay, log: Logger, allowedHosts: readonly string[] = []) {
    this.#tr = tr
    this.#log = log
    this.#allowedHosts = allowedHosts
  }

  /** Listen; resolves with the address actually bound (port 0 picks a free one). */
  async start(port: number, host: string): Promise<AddressInfo> {
    this.#policy = { bind: host, allowed: this.#allowedHosts }
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
    try {
      // Before anything is read: a foreign Host or Origin learns nothing, not even what exists.
      const refusal = refuseRequest(req.headers, this.#policy!)
      if (refusal) throw refusal
      if (req.method !== 'GET') return send(res, 405, { error: 'read-only: only GET is served' }, { allow: 'GET' })
      // Parsed against a fixed origin so that "//x/y" stays a path, never a host.
      if (!req.url?.startsWith('/')) throw new DashboardRequestError(400, `"${String(req.url).slice(0, 100)}" is not a path; request /, /api/stats or /api/tasks`)
      const url = new URL(`http://dashboard${req.url}`)
      if (url.pathname === '/') {
        res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', 'content-security-policy': DASHBOARD_PAGE_CSP })
        res.end(DASHBOARD_PAGE)
        return
      }
      if (url.pathname === '/api/stats') return send(res, 200, await readStats(this.#tr))
      if (url.pathname === '/api/tasks') return send(res, 200, await this.#list(url.searchParams))
      if (url.pathname === '/api/queues') return send(res, 200, { queues: await listQueues(this.#tr) })
      const one = /^\/api\/tasks\/([^/]+)$/.exec(url.pathname)
      if (one) return await this.#task(res, decodeSegment(one[1]!))
      send(res, 404, { error: `no such page: ${url.pathname.slice(0, 200)}; the dashboard serves /, /api/stats, /api/queues, /api/tasks and /api/tasks/<id>` })
    } catch (err) {
      if (res.headersSent) {
        res.destroy()
      } else if (err instanceof DashboardRequestError) {
        send(res, err.status, { error: err.message })
      } else {
        // Database and driver messages name schemas, tables and values: they go to the log only.
        this.#log.error({ err, method: req.method, url: req.url?.slice(0, 500) }, 'dashboard request failed')
        send(res, 500, { error: 'internal error: the dashboard could not answer this request; the cause is in its log' })
      }
    }
  }

  async #list(params: URLSearchParams) {
    // The same filters, checks and keyset paging as `taskrelay list`, worded as query parameters.
    const input: ListInput = {}
    const unknown = [...new Set(params.keys())].filter((key) => !(LIST_PARAMS as readonly string[]).includes(key))
    if (unknown.length) {
      throw new DashboardRequestError(400, `unknown query parameter ${unknown.map((k) => `"${k.slice(0, 50)}"`).join(', ')}; /api/tasks takes ${LIST_PARAMS.join(', ')}`)
    }
    for (const key of LIST_PARAMS) {
      const value = params.get(key)
      if (value !== null && value !== '') input[key] = value
    }
    let filters
    try {
      filters = parseListInput(input)
    } catch (err) {
      if (!(err instanceof InvalidFiltersError)) throw err
      const lines = err.problems.map((p) => `  - ${p.fields.join(' and ')}: ${p.message}`)
      throw new DashboardRequestError(400, `invalid query parameter${lines.length === 1 ? '' : 's'} of GET /api/tasks:\n${lines.join('\n')}\nIt takes ${LIST_PARAMS.join(', ')}.`)
    }
    const page = await listTasks(this.#tr, filters)
    return { ...page, tasks: page.tasks.map(capListedTask) }
  }

  async #task(res: ServerResponse, idText: string): Promise<void> {
    const id = /^\d+$/.test(idText) ? toTaskId(idText) : null
    if (id === null) throw new DashboardRequestError(400, `"${idText.slice(0, 100)}" is not a task id (a positive whole number below 2^63)`)
    const detail = await readTaskDetail(this.#tr, String(id))
    if (!detail) return send(res, 404, { error: `no task ${id} in schema "${this.#tr.schema}"` })
    send(res, 200, { ...capTask(detail.task), dependsOn: detail.dependsOn, groupKey: detail.groupKey, heldBack: detail.heldBack })
  }
}

const LIST_PARAMS = ['state', 'queue', 'task', 'since', 'limit', 'after'] as const satisfies ReadonlyArray<keyof ListInput>

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw new DashboardRequestError(400, `"${segment.slice(0, 100)}" is not valid percent-encoding; encode the path with encodeURIComponent`)
  }
}

function send(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))
  res.writeHead(status, { ...SECURITY_HEADERS, ...extra, 'content-type': 'application/json; charset=utf-8' }).end(text)
}
