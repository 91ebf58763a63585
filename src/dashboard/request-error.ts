import { TaskRelayError } from '../errors.ts'

/**
 * A dashboard request refused before any data was read: a Host or Origin it
 * does not answer to (403), or input it cannot use (400). The message is the
 * response's `error` and says what was wrong and what to do.
 */
export class DashboardRequestError extends TaskRelayError {
  readonly status: 400 | 403
  constructor(status: 400 | 403, message: string) {
    super(status === 403 ? 'DASHBOARD_FORBIDDEN' : 'DASHBOARD_BAD_REQUEST', message)
    this.status = status
  }
}
