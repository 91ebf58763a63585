import { z } from 'zod'
import { defineTask } from 'taskrelay'
import { sendMail, upsertCrmContact } from './mailer.ts'

/**
 * The example app's tasks. `taskrelay dev` runs these when no --tasks is
 * given; the signup endpoint in app.ts enqueues them in the same transaction
 * that creates the user.
 *
 * Handlers are idempotent where it matters: a task runs at least once, so a
 * crash after the mail went out but before the outcome was recorded sends it
 * again. A real mailer would pass an idempotency key derived from the task id.
 */
export const sendWelcomeEmail = defineTask({
  name: 'email.welcome',
  queue: 'emails',
  payload: z.object({ userId: z.number().int().positive(), email: z.email(), name: z.string().max(200).optional() }),
  maxAttempts: 5,
  timeoutMs: 30_000,
  async run({ userId, email, name }, ctx) {
    const { messageId } = await sendMail(
      { to: email, subject: 'Welcome!', text: `Hi ${name ?? 'there'}, thanks for signing up (user ${userId}).` },
      { signal: ctx.signal, log: ctx.log },
    )
    return { messageId }
  },
})

export const syncCrmContact = defineTask({
  name: 'crm.sync-contact',
  payload: z.object({ userId: z.number().int().positive(), email: z.email() }),
  maxAttempts: 5,
  backoff: { type: 'exponential', baseMs: 500, maxMs: 30_000 },
  async run(contact, ctx) {
    await upsertCrmContact(contact, ctx.attempt, ctx.signal)
    return { synced: true }
  },
})

/**
 * A periodic task: the schedule is declared with the task, and every
 * scheduler (`taskrelay scheduler`, `taskrelay dev`) syncs it at start and
 * fires it exactly once per fire time, however many schedulers run.
 */
export const dailySignupReport = defineTask({
  name: 'report.daily-signups',
  payload: z.object({ recipients: z.array(z.email()).min(1) }),
  schedules: [{ name: 'daily-signup-report', cron: '0 8 * * *', timezone: 'UTC', payload: { recipients: ['team@example.com'] } }],
  async run({ recipients }, ctx) {
    // A real report would query the users table; the example only shows the plumbing.
    ctx.log.info({ recipients, firedFor: ctx.task.createdAt }, 'daily signup report sent (example)')
    return { recipients: recipients.length }
  },
})
