/**
 * Exit codes of every taskrelay command (also in the README's CLI reference):
 * scripts can tell "you asked for something wrong" from "it did not work".
 */
export const EXIT = {
  ok: 0,
  /** the command could not do its job: server unreachable, task not found, nothing to retry... */
  failed: 1,
  /** bad usage, configuration or input: unknown command/flag, invalid setting, bad JSON, payload fails the schema */
  usage: 2,
} as const

/**
 * An expected failure with a message written for the person at the terminal:
 * one paragraph saying what happened and what to do. Printed without a stack.
 */
export class CliError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode: number = EXIT.failed, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

/** Bad configuration: every problem at once, exit 2. */
export class SettingsError extends CliError {
  readonly problems: readonly string[]
  constructor(problems: readonly string[]) {
    super(
      `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map((p) => `  - ${p}`).join('\n') +
        '\nFix the flags or environment variables above and run again; add --help to see every setting with its default.',
      EXIT.usage,
    )
    this.name = 'SettingsError'
    this.problems = problems
  }
}

/** A network error's useful text: Node's connect errors can be AggregateErrors with an empty message. */
export function errorText(err: unknown): string {
  const e = err as { message?: string; code?: string; errors?: Array<{ message?: string }> }
  const nested = e.errors?.map((x) => x.message).filter(Boolean).join('; ')
  return e.message || nested || e.code || String(err)
}
