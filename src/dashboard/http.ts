import type { IncomingMessage, ServerResponse } from 'node:http'
import { SECURITY_HEADERS } from './guard.ts'
import { DashboardRequestError } from './request-error.ts'

/** Small request/response helpers of the dashboard handler. */

/** Bigints as text; everything else as JSON.stringify writes it. */
export function send(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))
  res.writeHead(status, { ...SECURITY_HEADERS, ...extra, 'content-type': 'application/json; charset=utf-8' }).end(text)
}

const MAX_BODY_BYTES = 16 * 1024

/**
 * The JSON object of a POST. Only application/json is read: a cross-site form
 * cannot send it without a CORS preflight, which the dashboard never answers.
 */
export async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = String(req.headers['content-type'] ?? '')
  // Behind express.json() or Fastify, the framework has read the stream already and left the object in req.body.
  const parsed = (req as { body?: unknown }).body
  if (parsed !== undefined && req.readableEnded) {
    if (!/^application\/json\b/i.test(type)) throw new DashboardRequestError(415, 'send the body as application/json')
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new DashboardRequestError(400, 'the request body must be a JSON object')
    return parsed as Record<string, unknown>
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) throw new DashboardRequestError(413, `the request body is over ${MAX_BODY_BYTES} bytes; actions take a small JSON object`)
    chunks.push(chunk)
  }
  if (size === 0) return {}
  if (!/^application\/json\b/i.test(type)) throw new DashboardRequestError(415, 'send the body as application/json')
  let value: unknown
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new DashboardRequestError(400, 'the request body is not valid JSON')
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new DashboardRequestError(400, 'the request body must be a JSON object')
  return value as Record<string, unknown>
}

export function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw new DashboardRequestError(400, `"${segment.slice(0, 100)}" is not valid percent-encoding; encode the path with encodeURIComponent`)
  }
}

/** The client's address for rate limiting: the socket's, since a forwarded header is whatever the client says. */
export function clientAddress(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unknown'
}

/** Whether the request reached us over TLS (or, when trusted, the proxy in front says it did). */
export function isSecure(req: IncomingMessage, trustForwardedProto: boolean): boolean {
  if ((req.socket as { encrypted?: boolean }).encrypted) return true
  if (!trustForwardedProto) return false
  const proto = req.headers['x-forwarded-proto']
  return String(Array.isArray(proto) ? proto[0] : proto ?? '').split(',')[0]!.trim().toLowerCase() === 'https'
}
