import type { Logger } from 'pino'

/**
 * A stand-in for a real mail client (SES, Postmark, SMTP...): it "sends" by
 * logging, after a short network-like delay, and stops early when the task's
 * signal aborts, as a real client given `{ signal }` would.
 */
export interface Mail {
  to: string
  subject: string
  text: string
}

export async function sendMail(mail: Mail, options: { signal: AbortSignal; log: Logger }): Promise<{ messageId: string }> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, 50 + Math.floor(Math.random() * 100))
    options.signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer)
        reject(options.signal.reason)
      },
      { once: true },
    )
  })
  const messageId = `<${Date.now().toString(36)}.${Math.random().toString(36).slice(2)}@example.com>`
  options.log.info({ to: mail.to, subject: mail.subject, messageId }, 'mail sent (example mailer: nothing left this machine)')
  return { messageId }
}

/**
 * A stand-in CRM client that fails the first attempt for every third user,
 * so `taskrelay dev` shows a retry with backoff without anything random.
 */
export async function upsertCrmContact(contact: { userId: number; email: string }, attempt: number, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted()
  if (contact.userId % 3 === 0 && attempt === 1) throw new Error('CRM answered 503 Service Unavailable (example: fails once, then succeeds)')
}
