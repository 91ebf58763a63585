import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

/**
 * Who may act through the dashboard. Reading stays open (as before);
 * retry, cancel, pause and run-now need an operator:
 *
 * - `{ token }` and/or `{ user, password }`: a login form checks them and
 *   opens a server-side session (cookie `HttpOnly; SameSite=Strict`, plus
 *   `Secure` over TLS); API clients may send `Authorization: Bearer <token>`.
 * - `'none-trust-upstream'`: the host application authenticates (bull-board's
 *   model); every request that reaches the handler is an operator.
 * - nothing: actions are refused (403), the page is read-only.
 */
export interface DashboardCredentials {
  token?: string
  user?: string
  password?: string
}

export type DashboardAuth = DashboardCredentials | 'none-trust-upstream'

export interface LoginInput {
  token?: unknown
  user?: unknown
  password?: unknown
}

// Both sides are hashed first, so timingSafeEqual compares equal lengths and the time says nothing about the secret.
const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest()
const same = (given: unknown, expected: Buffer) => typeof given === 'string' && timingSafeEqual(digest(given), expected)

/** The configured secrets, kept only as hashes. */
export class CredentialCheck {
  readonly #token: Buffer | null
  readonly #user: Buffer | null
  readonly #password: Buffer | null

  constructor(c: DashboardCredentials) {
    this.#token = c.token ? digest(c.token) : null
    this.#user = c.user && c.password ? digest(c.user) : null
    this.#password = c.user && c.password ? digest(c.password) : null
  }

  get configured(): boolean {
    return this.#token !== null || this.#user !== null
  }

  /** Which login fields the form should show. */
  get methods(): Array<'token' | 'password'> {
    return [...(this.#token ? (['token'] as const) : []), ...(this.#user ? (['password'] as const) : [])]
  }

  check(input: LoginInput): boolean {
    if (this.#token && input.token !== undefined) return same(input.token, this.#token)
    if (this.#user && this.#password && input.user !== undefined) {
      // Both compared, always: an unknown user takes as long as a wrong password.
      const userOk = same(input.user, this.#user)
      const passwordOk = same(input.password, this.#password)
      return userOk && passwordOk
    }
    return false
  }

  checkBearer(header: string | undefined): boolean {
    const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null
    return m !== null && this.#token !== null && same(m[1], this.#token)
  }
}

export interface Session {
  id: string
  csrf: string
  expiresAt: number
}

const random = () => randomBytes(32).toString('base64url')

/** Sessions in memory: a restart logs everyone out, which is the safe direction. */
export class SessionStore {
  readonly #sessions = new Map<string, Session>()
  readonly #ttlMs: number
  readonly #max: number

  constructor(ttlMs: number, max = 10_000) {
    this.#ttlMs = ttlMs
    this.#max = max
  }

  create(now = Date.now()): Session {
    this.#prune(now)
    // A flood of logins must not grow memory without bound: the oldest session goes first.
    if (this.#sessions.size >= this.#max) this.#sessions.delete(this.#sessions.keys().next().value!)
    const session = { id: random(), csrf: random(), expiresAt: now + this.#ttlMs }
    this.#sessions.set(session.id, session)
    return session
  }

  get(id: string | undefined, now = Date.now()): Session | null {
    if (!id) return null
    const s = this.#sessions.get(id)
    if (!s) return null
    if (s.expiresAt <= now) {
      this.#sessions.delete(id)
      return null
    }
    return s
  }

  delete(id: string): void {
    this.#sessions.delete(id)
  }

  #prune(now: number): void {
    for (const [id, s] of this.#sessions) if (s.expiresAt <= now) this.#sessions.delete(id)
  }
}

/** Failed logins per client address in a sliding minute; over the limit, logins answer 429 until it frees up. */
export class LoginLimiter {
  readonly #failures = new Map<string, number[]>()
  readonly #limit: number
  readonly #windowMs: number

  constructor(limit = 5, windowMs = 60_000) {
    this.#limit = limit
    this.#windowMs = windowMs
  }

  /** ms until a login from this address is accepted again; 0 when it may try now. */
  retryAfterMs(address: string, now = Date.now()): number {
    const recent = this.#recent(address, now)
    return recent.length < this.#limit ? 0 : recent[0]! + this.#windowMs - now
  }

  fail(address: string, now = Date.now()): void {
    const recent = this.#recent(address, now)
    recent.push(now)
    this.#failures.set(address, recent)
    if (this.#failures.size > 10_000) this.#failures.delete(this.#failures.keys().next().value!)
  }

  #recent(address: string, now: number): number[] {
    return (this.#failures.get(address) ?? []).filter((t) => t > now - this.#windowMs)
  }
}

/** The value of one cookie in a Cookie header. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

export function sessionCookie(name: string, value: string, opts: { path: string; secure: boolean; maxAgeS: number }): string {
  return `${name}=${value}; Path=${opts.path}; HttpOnly; SameSite=Strict; Max-Age=${opts.maxAgeS}${opts.secure ? '; Secure' : ''}`
}
