import type { IncomingHttpHeaders } from 'node:http'
import { isIP } from 'node:net'
import { DashboardRequestError } from './request-error.ts'

/**
 * Which names the dashboard answers to, against DNS rebinding: a page on
 * evil.example whose name is re-pointed at 127.0.0.1 reaches the dashboard as
 * same-origin, but its requests still say `Host: evil.example`.
 *
 * Always allowed: IP literals (a page can only be served from the address it
 * names, so there is nothing to rebind), `localhost` and `*.localhost`
 * (browsers resolve them to loopback themselves) and the name it was bound
 * to. Anything else must be given with --allowed-host (`.example.com` allows
 * example.com and its subdomains).
 */
export interface HostPolicy {
  /** the --host the server listens on */
  bind: string
  /** --allowed-host names, as given */
  allowed: readonly string[]
}

const HOST_NAME = /^\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$/i

/** A problem with one --allowed-host value, or null when it is a host name or `.domain`. */
export function allowedHostProblem(name: string): string | null {
  if (HOST_NAME.test(name) && name !== '.') return null
  return `"${name}" is not a host name; give a name such as dash.example.com, or .example.com for a domain and its subdomains (IP addresses are always allowed)`
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '')
}

/** The host part of a Host header (`name:port`, `[v6]:port`), or null when it has none. */
function hostOfHeader(value: string): string | null {
  const m = /^(\[[^\]]*\]|[^:[\]]*)(?::\d{1,5})?$/.exec(value.trim())
  return m && m[1] ? normalize(m[1]) : null
}

function isAllowed(host: string, policy: HostPolicy): boolean {
  if (isIP(host) !== 0) return true
  if (host === 'localhost' || host.endsWith('.localhost')) return true
  if (host === normalize(policy.bind)) return true
  return policy.allowed.some((entry) => {
    const e = normalize(entry)
    return e.startsWith('.') ? host === e.slice(1) || host.endsWith(e) : host === e
  })
}

function advice(name: string, policy: HostPolicy): string {
  const everywhere = /^(0\.0\.0\.0|::)$/.test(normalize(policy.bind))
  return (
    'The dashboard answers only to IP addresses, localhost and the names given with --allowed-host, so that other ' +
    `web sites cannot read it through DNS rebinding. If you open it as http://${name}/, start it with --allowed-host ${name}` +
    (everywhere ? ` (it listens on all interfaces, ${policy.bind}: name every host it is reached by).` : '.')
  )
}

/** The refusal for a request whose Host or Origin the dashboard does not answer to, or null. */
export function refuseRequest(headers: IncomingHttpHeaders, policy: HostPolicy): DashboardRequestError | null {
  const hostHeader = headers.host
  if (hostHeader === undefined) return new DashboardRequestError(403, 'the request has no Host header; send the address you reached the dashboard by')
  const host = hostOfHeader(hostHeader)
  if (host === null || !isAllowed(host, policy)) {
    const shown = host ?? hostHeader.slice(0, 100)
    return new DashboardRequestError(403, `Host "${shown}" is not allowed. ${advice(shown, policy)}`)
  }
  const origin = headers.origin
  if (origin === undefined) return null
  let originHost: string | null = null
  try {
    const url = new URL(origin)
    if (url.protocol === 'http:' || url.protocol === 'https:') originHost = normalize(url.hostname)
  } catch {
    // 'null' (sandboxed frames, file: pages) and garbage: refused below
  }
  if (originHost !== null && isAllowed(originHost, policy)) return null
  const refusal = `Origin "${origin.slice(0, 100)}" is not allowed: the dashboard does not answer requests made by other web sites`
  return new DashboardRequestError(403, originHost === null ? `${refusal}.` : `${refusal}. ${advice(originHost, policy)}`)
}

/** On every answer: not to be sniffed, framed, cached, embedded by other sites or leak its URL. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'cross-origin-resource-policy': 'same-origin',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
})

/**
 * For a mounted handler without a HostPolicy (the host application decides
 * which names it answers to): a write whose Origin is not the Host it was
 * sent to comes from another site, and is refused.
 */
export function refuseCrossSite(headers: IncomingHttpHeaders): DashboardRequestError | null {
  const origin = headers.origin
  if (origin === undefined) return null
  let originHost: string | null = null
  try {
    originHost = new URL(origin).host // lower-case host[:port], without a default port
  } catch {
    // 'null' (sandboxed frames, file: pages) and garbage: refused below
  }
  if (originHost && originHost === headers.host?.trim().toLowerCase()) return null
  return new DashboardRequestError(403, `Origin "${origin.slice(0, 100)}" is not allowed: the dashboard does not answer requests made by other web sites`)
}
