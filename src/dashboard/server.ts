import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { TaskRelay } from '../task-relay.ts'
import type { Task } from '../define-task.ts'
import type { DashboardAuth } from './auth.ts'
import { createDashboardHandler } from './handler.ts'

/**
 * `taskrelay dashboard`: the handler of handler.ts on a server of its own.
 *
 *   GET  /                the page (Queues, Tasks, Task, Schedules, Workers)
 *   GET  /api/…           stats, queues, tasks, tasks/<id>, charts, schedules, workers, session
 *   POST /api/…           login, logout and the actions (operator + CSRF token)
 *
 * It answers only to the Host and Origin names of guard.ts.
 */
export class DashboardServer {
  readonly #tr: TaskRelay
  readonly #log: Logger
  readonly #allowedHosts: readonly string[]
  readonly #options: DashboardServerOptions
  #server: Server | null = null

  /** allowedHosts: names besides IP addresses, localhost and the bound host that it answers to (see guard.ts). */
  constructor(tr: TaskRelay, log: Logger, allowedHosts: readonly string[] = [], options: DashboardServerOptions = {}) {
    this.#tr = tr
    this.#log = log
    this.#allowedHosts = allowedHosts
    this.#options = options
  }

  /** Listen; resolves with the address actually bound (port 0 picks a free one). */
  async start(port: number, host: string): Promise<AddressInfo> {
    const problem = bindProblem(host, this.#options.auth)
    if (problem) throw new Error(problem)
    const handler = createDashboardHandler(this.#tr, {
      ...this.#options,
      hostPolicy: { bind: host, allowed: this.#allowedHosts },
      logger: this.#log,
    })
    const server = createServer((req, res) => handler(req, res))
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
}

export interface DashboardServerOptions {
  auth?: DashboardAuth
  tasks?: readonly Task[]
  trustForwardedProto?: boolean
}

const LOOPBACK = /^(127(\.\d{1,3}){3}|::1|\[::1\]|localhost)$/i

/**
 * Why the dashboard must not listen on this address, or null: beyond
 * loopback, everyone on the network could act on tasks, so it needs credentials.
 */
export function bindProblem(host: string, auth: DashboardAuth | undefined): string | null {
  if (LOOPBACK.test(host)) return null
  const configured = auth === 'none-trust-upstream' || Boolean(auth && (auth.token || (auth.user && auth.password)))
  if (configured) return null
  return (
    `--host ${host} reaches beyond this machine, and no credentials are configured. ` +
    'Set TASKRELAY_DASHBOARD_TOKEN (or TASKRELAY_DASHBOARD_USER and TASKRELAY_DASHBOARD_PASSWORD), ' +
    'or keep --host 127.0.0.1 and reach it through an SSH tunnel or your own authenticating proxy.'
  )
}
