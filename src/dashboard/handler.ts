import type { IncomingMessage, ServerResponse } from 'node:http'
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { TaskRelay } from '../task-relay.ts'
import type { Task } from '../define-task.ts'
import { CredentialCheck, LoginLimiter, SessionStore, readCookie, sessionCookie, type DashboardAuth, type Session } from './auth.ts'
import { READ_PATHS, readEndpoint } from './api-reads.ts'
import { ACTION_PATHS, runAction } from './api-actions.ts'
import { refuseRequest, refuseCrossSite, type HostPolicy } from './guard.ts'
import { clientAddress, isSecure, readJsonBody, send } from './http.ts'
import { servePage } from './page.ts'
import { DashboardRequestError } from './request-error.ts'

export interface DashboardHandlerOptions {
  /** where the handler is mounted in a node:http server ('/admin/tasks'); under Express the mount path comes from req.baseUrl */
  basePath?: string
  /** who may act (see auth.ts); left out: read-only, actions answer 403 */
  auth?: DashboardAuth
  /** task definitions: "run now" of a schedule checks the stored payload against them */
  tasks?: readonly Task[]
  /** answer only to these Host names (DNS rebinding); left out: any Host, and Origin must match it */
  hostPolicy?: HostPolicy
  /** believe `X-Forwarded-Proto: https` from a TLS-terminating proxy for the cookie's Secure flag */
  trustForwardedProto?: boolean
  /** how long a login lasts (default 8 h) */
  sessionTtlMs?: number
  /** where failed requests are logged (default: nowhere) */
  logger?: Logger
}

/** A request handler for node:http, Express (`app.use(path, h)`) and Fastify (`request.raw, reply.raw`). */
export type DashboardHandler = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void

const COOKIE = 'taskrelay_session'
const CSRF_HEADER = 'x-taskrelay-csrf'

/**
 * The dashboard as a request handler, to mount in your own server behind your
 * own auth, as bull-board is. Reads (the page, GET /api/…) are open to whoever
 * reaches it; actions (POST /api/…) need an operator and the session's CSRF
 * token in the `X-TaskRelay-CSRF` header.
 *
 * @example
 *   const dashboard = createDashboardHandler(tr, { basePath: '/admin/tasks', auth: { token: process.env.TASKRELAY_DASHBOARD_TOKEN } })
 *   http.createServer((req, res) => req.url?.startsWith('/admin/tasks') ? dashboard(req, res) : app(req, res))
 */
export function createDashboardHandler(tr: TaskRelay, options: DashboardHandlerOptions = {}): DashboardHandler {
  const handler = new Dashboard(tr, options)
  return (req, res, next) => void handler.handle(req, res, next)
}

type Operator = { kind: 'session'; session: Session } | { kind: 'bearer' } | { kind: 'upstream' }

class Dashboard {
  readonly #tr: TaskRelay
  readonly #opts: DashboardHandlerOptions
  readonly #basePath: string
  readonly #credentials: CredentialCheck | null
  readonly #sessions: SessionStore
  readonly #limiter = new LoginLimiter()
  /** with trusted upstream auth, one token per handler still keeps other sites' forms out */
  readonly #upstreamCsrf = randomBytes(32).toString('base64url')

  constructor(tr: TaskRelay, opts: DashboardHandlerOptions) {
    this.#tr = tr
    this.#opts = opts
    this.#basePath = (opts.basePath ?? '').replace(/\/+$/, '')
    this.#credentials = opts.auth && opts.auth !== 'none-trust-upstream' ? new CredentialCheck(opts.auth) : null
    this.#sessions = new SessionStore(opts.sessionTtlMs ?? 8 * 3600_000)
  }

  async handle(req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): Promise<void> {
    try {
      const where = this.#locate(req)
      if (where === null) {
        if (next) return next()
        throw new DashboardRequestError(404, `no such page: the dashboard is under ${this.#basePath || '/'}`)
      }
      // Before anything is read: a foreign Host or Origin learns nothing, not even what exists.
      const refusal = this.#opts.hostPolicy ? refuseRequest(req.headers, this.#opts.hostPolicy) : req.method === 'GET' ? null : refuseCrossSite(req.headers)
      if (refusal) throw refusal
      const { base, rest } = where
      if (!rest.startsWith('/')) {
        // "/admin/tasks" → "/admin/tasks/", so the page's relative links resolve under the prefix.
        res.writeHead(308, { location: `${base}/` }).end()
        return
      }
      const url = new URL(`http://dashboard${rest}`)
      const path = url.pathname
      if (req.method === 'GET' || req.method === 'HEAD') {
        if (servePage(path, res)) return
        if (path === '/api/session') return send(res, 200, this.#sessionInfo(req))
        const body = await readEndpoint(this.#tr, path, url.searchParams)
        if (body !== undefined) return send(res, 200, body)
        throw new DashboardRequestError(404, `no such page: ${path.slice(0, 200)}; the dashboard serves /, ${READ_PATHS}`)
      }
      if (req.method !== 'POST') return send(res, 405, { error: 'the dashboard serves GET, and POST for actions' }, { allow: 'GET, POST' })
      await this.#post(req, res, path, base)
    } catch (err) {
      this.#fail(req, res, err)
    }
  }

  /** The prefix and the path under it, or null when the request is not for the dashboard. */
  #locate(req: IncomingMessage): { base: string; rest: string } | null {
    const url = req.url ?? ''
    const baseUrl = (req as { baseUrl?: unknown }).baseUrl
    // Express has cut the mount path into req.baseUrl already.
    if (typeof baseUrl === 'string') return { base: baseUrl.replace(/\/+$/, ''), rest: url }
    if (!url.startsWith('/')) throw new DashboardRequestError(400, `"${url.slice(0, 100)}" is not a path; request ${this.#basePath}/`)
    if (!this.#basePath) return { base: '', rest: url }
    if (url === this.#basePath || url.startsWith(`${this.#basePath}?`)) return { base: this.#basePath, rest: '' }
    if (url.startsWith(`${this.#basePath}/`)) return { base: this.#basePath, rest: url.slice(this.#basePath.length) }
    return null
  }

  #sessionInfo(req: IncomingMessage) {
    const operator = this.#operator(req)
    const mode = this.#opts.auth === 'none-trust-upstream' ? 'upstream' : this.#credentials?.configured ? 'login' : 'none'
    return {
      auth: mode,
      methods: this.#credentials?.methods ?? [],
      operator: operator !== null,
      // The token is the session's own: a page of this origin may read it, another site cannot.
      csrf: operator?.kind === 'session' ? operator.session.csrf : operator?.kind === 'upstream' ? this.#upstreamCsrf : null,
    }
  }

  #operator(req: IncomingMessage): Operator | null {
    if (this.#opts.auth === 'none-trust-upstream') return { kind: 'upstream' }
    if (!this.#credentials) return null
    const session = this.#sessions.get(readCookie(req.headers.cookie, COOKIE))
    if (session) return { kind: 'session', session }
    if (this.#credentials.checkBearer(req.headers.authorization)) return { kind: 'bearer' }
    return null
  }

  async #post(req: IncomingMessage, res: ServerResponse, path: string, base: string): Promise<void> {
    if (path === '/api/login') return this.#login(req, res, base)
    if (path === '/api/logout') {
      const op = this.#operator(req)
      if (op?.kind === 'session') {
        this.#checkCsrf(req, op)
        this.#sessions.delete(op.session.id)
      }
      return send(res, 200, { message: 'logged out' }, { 'set-cookie': this.#cookie(req, base, '', 0) })
    }
    const operator = this.#operator(req)
    if (!operator) {
      const how = this.#credentials?.configured ? 'log in first' : 'the dashboard was started without credentials, so it is read-only'
      throw new DashboardRequestError(this.#credentials?.configured ? 401 : 403, `actions need an operator: ${how}`)
    }
    this.#checkCsrf(req, operator)
    const body = await readJsonBody(req)
    const answer = await runAction({ tr: this.#tr, tasks: this.#opts.tasks }, path, body)
    if (answer === undefined) throw new DashboardRequestError(404, `no such action: ${path.slice(0, 200)}; the dashboard's actions are ${ACTION_PATHS}`)
    this.#opts.logger?.info({ action: path, operator: operator.kind }, 'dashboard action')
    send(res, 200, answer)
  }

  #checkCsrf(req: IncomingMessage, operator: Operator): void {
    if (operator.kind === 'bearer') return // a header no browser adds on its own
    const expected = operator.kind === 'session' ? operator.session.csrf : this.#upstreamCsrf
    const given = req.headers[CSRF_HEADER]
    if (given !== expected) throw new DashboardRequestError(403, `missing or wrong ${CSRF_HEADER} header: send the csrf value of GET api/session`)
  }

  async #login(req: IncomingMessage, res: ServerResponse, base: string): Promise<void> {
    if (!this.#credentials?.configured) throw new DashboardRequestError(403, 'the dashboard has no credentials configured, so there is nothing to log in to')
    const address = clientAddress(req)
    const waitMs = this.#limiter.retryAfterMs(address)
    if (waitMs > 0) {
      const s = Math.ceil(waitMs / 1000)
      throw new DashboardRequestError(429, `too many failed logins from this address; try again in ${s} s`, { 'retry-after': String(s) })
    }
    const body = await readJsonBody(req)
    if (!this.#credentials.check(body)) {
      this.#limiter.fail(address)
      this.#opts.logger?.warn({ address }, 'dashboard login failed')
      throw new DashboardRequestError(401, 'wrong credentials')
    }
    const session = this.#sessions.create()
    send(res, 200, { message: 'logged in', csrf: session.csrf }, { 'set-cookie': this.#cookie(req, base, session.id, Math.floor((this.#opts.sessionTtlMs ?? 8 * 3600_000) / 1000)) })
  }

  #cookie(req: IncomingMessage, base: string, value: string, maxAgeS: number): string {
    return sessionCookie(COOKIE, value, { path: `${base}/`, secure: isSecure(req, this.#opts.trustForwardedProto ?? false), maxAgeS })
  }

  #fail(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    if (res.headersSent) {
      res.destroy()
    } else if (err instanceof DashboardRequestError) {
      send(res, err.status, { error: err.message }, err.headers)
    } else {
      // Database and driver messages name schemas, tables and values: they go to the log only.
      this.#opts.logger?.error({ err, method: req.method, url: req.url?.slice(0, 500) }, 'dashboard request failed')
      send(res, 500, { error: 'internal error: the dashboard could not answer this request; the cause is in its log' })
    }
  }
}
