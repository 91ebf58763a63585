import { TaskRelayError } from '../errors.ts'

const CODES = {
  400: 'DASHBOARD_BAD_REQUEST',
  401: 'DASHBOARD_UNAUTHORIZED',
  403: 'DASHBOARD_FORBIDDEN',
  404: 'DASHBOARD_NOT_FOUND',
  409: 'DASHBOARD_CONFLICT',
  413: 'DASHBOARD_TOO_LARGE',
  415: 'DASHBOARD_UNSUPPORTED_TYPE',
  429: 'DASHBOARD_TOO_MANY_ATTEMPTS',
} as const

export type DashboardStatus = keyof typeof CODES

/**
 * A dashboard request refused in the dashboard's own words: a Host or Origin
 * it does not answer to or an action without an operator (403), input it
 * cannot use (400), no such task or schedule (404), wrong credentials (401),
 * too many of them (429). The message is the response's `error` and says
 * what was wrong and what to do.
 */
export class DashboardRequestError extends TaskRelayError {
  readonly status: DashboardStatus
  readonly headers: Readonly<Record<string, string>>
  constructor(status: DashboardStatus, message: string, headers: Record<string, string> = {}) {
    super(CODES[status], message)
    this.status = status
    this.headers = headers
  }
}
