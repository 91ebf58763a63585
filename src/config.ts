import type { z } from 'zod/v4'
import { unknownKeysText } from './config/fields.ts'

/**
 * The one home of configuration: every option schema (src/config/services.ts,
 * src/config/task-relay-options.ts, src/config/process.ts for the CLI) and the field rules they share
 * (src/config/fields.ts), as zod schemas: strict (unknown keys are errors that
 * suggest the closest known key), with defaults, cross-field rules, then
 * frozen. Error text is derived from the schema path so it cannot go stale.
 * The CLI maps flags and env vars onto these same schemas (src/cli/settings.ts);
 * the README table is checked against them.
 */
export * from './config/fields.ts'
export * from './config/services.ts'
export * from './config/process.ts'
export { taskRelayOptionsSchema } from './config/task-relay-options.ts'
export { closestName } from './config/did-you-mean.ts'

export function zodProblems(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join('.')
    if (issue.code === 'unrecognized_keys') {
      // strictOptions() wrote the message with its suggestion; other strict objects get none.
      const text = issue.message.startsWith('unknown option') ? issue.message : unknownKeysText(issue.keys, [])
      return `${path ? path + ': ' : ''}${text}`
    }
    return `${path || '(root)'}: ${issue.message}`
  })
}

/** Parse settings or throw one error listing every problem. */
export function parseSettings<S extends z.ZodType>(
  schema: S,
  input: unknown,
  where: string,
  makeError: (where: string, problems: string[]) => Error,
): Readonly<z.output<S>> {
  const res = schema.safeParse(input ?? {})
  if (!res.success) throw makeError(where, zodProblems(res.error))
  return Object.freeze(res.data)
}
