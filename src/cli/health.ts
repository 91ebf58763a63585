import { createServer, type Server } from 'node:http'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { Runnable } from './runtime.ts'

export interface HealthTarget {
  name: string
  service: Runnable
  /** unhealthy when the loop has not completed an iteration for this long */
  staleAfterMs: number
  /** true while the loop is legitimately not iterating (a worker with every slot busy) */
  busy?: () => boolean
  /** why the service cannot do its work although its loop runs (a worker whose every slot is held by a stuck handler), or null */
  impaired?: () => string | null
  /** why the service works at reduced capacity although healthy (Redis unreachable: the Postgres lane), or null */
  degraded?: () => string | null
}

export interface HealthReport {
  ok: boolean
  /** "degraded": every service works, some without Redis (still HTTP 200) */
  status: 'ok' | 'degraded' | 'unhealthy'
  services: Record<
    string,
    { ok: boolean; running: boolean; lastSuccessAt: string | null; consecutiveErrors: number; problem?: string; degraded?: string }
  >
}

/**
 * Health is "the loop completed recently", not "the process is up": a loop
 * that hangs without erroring (BullMQ #4378) must turn the check red.
 */
export function healthReport(targets: readonly HealthTarget[], now = Date.now()): HealthReport {
  const services: HealthReport['services'] = {}
  for (const t of targets) {
    const last = t.service.lastSuccessAt
    const fresh = last !== null && now - last.getTime() <= t.staleAfterMs
    const problem = t.impaired?.() ?? null
    const degraded = t.degraded?.() ?? null
    const ok = t.service.running && problem === null && (fresh || (t.busy?.() ?? false))
    services[t.name] = {
      ok,
      running: t.service.running,
      lastSuccessAt: last?.toISOString() ?? null,
      consecutiveErrors: t.service.consecutiveErrors,
      ...(problem ? { problem } : {}),
      ...(degraded ? { degraded } : {}),
    }
  }
  const all = Object.values(services)
  const ok = all.every((s) => s.ok)
  return { ok, status: !ok ? 'unhealthy' : all.some((s) => s.degraded) ? 'degraded' : 'ok', services }
}

/**
 * GET /healthz → 200 or 503 with the report as JSON, for container health
 * checks; GET /metrics → Prometheus text from `metrics` (src/metrics.ts).
 */
export async function startHealthServer(port: number, targets: readonly HealthTarget[], log: Logger, metrics?: Registry): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics' && metrics) {
      metrics.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        (err: unknown) => {
          log.warn({ err }, 'collecting metrics failed')
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`collecting metrics failed: ${err instanceof Error ? err.message : String(err)}\n`)
        },
      )
      return
    }
    if (req.method !== 'GET' || (req.url !== '/healthz' && req.url !== '/')) {
      res.writeHead(404).end()
      return
    }
    const report = healthReport(targets)
    res.writeHead(report.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(report))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, () => resolve())
  })
  log.info({ port }, metrics ? 'health and metrics endpoints listening on /healthz and /metrics' : 'health endpoint listening on /healthz')
  return server
}
