import { Command, CommanderError } from 'commander'
import pkg from '../../package.json' with { type: 'json' }
import { TaskRelayError, ConfigError, InvalidOptionsError, PayloadValidationError } from '../errors.ts'
import { CliError, EXIT } from './errors.ts'
import { registerServiceCommands } from './services.ts'
import { registerInspectCommands } from './inspect.ts'
import { registerWorkflowCommand } from './workflow-command.ts'
import { registerManageCommands } from './manage.ts'
import { registerDevCommand } from './dev.ts'
import { registerScheduleCommands } from './schedules.ts'
import { registerQueueCommands } from './queues.ts'
import { registerDashboardCommand } from './dashboard.ts'
import { registerEventsCommand } from './events-command.ts'

/**
 * `taskrelay`: one binary for running the parts (migrate, relay, worker,
 * sweeper, scheduler, dev) and for operating them (status, stats, list, events, retry,
 * cancel, enqueue, schedules, queues). Each command group lives in its own file; this one only wires
 * them together and turns errors into messages and exit codes.
 */
export function buildProgram(): Command {
  const program = new Command('taskrelay')
    .description(
      'Reliable background tasks: a transactional outbox in PostgreSQL, a fast lane through Redis, fenced workers. ' +
        'Settings come from flags, then environment variables, then defaults; `<command> --help` lists them.',
    )
    .version(pkg.version, '-V, --version')
    .showHelpAfterError('(add --help to the command to see its options and examples)')
    .showSuggestionAfterError(true)
    .exitOverride()
    .addHelpText(
      'after',
      [
        '',
        'Getting started:',
        '  $ taskrelay dev                                  # migrate, then relay + sweeper + worker with the example tasks',
        '  $ taskrelay enqueue email.welcome \'{"userId": 1, "email": "ada@example.com"}\'',
        '  $ taskrelay stats --watch',
        '  $ taskrelay events --queue emails                # task events live, from every process',
        '',
        'Exit codes: 0 ok, 1 the command failed (server unreachable, task not found...), 2 bad usage, configuration or input.',
      ].join('\n'),
    )
  registerServiceCommands(program)
  registerDevCommand(program)
  registerInspectCommands(program)
  registerWorkflowCommand(program)
  registerEventsCommand(program)
  registerManageCommands(program)
  registerScheduleCommands(program)
  registerQueueCommands(program)
  registerDashboardCommand(program)
  // Subcommands inherit exitOverride/showHelpAfterError only when created after
  // they are set on the parent, which the registrations above ensure.
  return program
}

/** Map anything thrown to a message on stderr and an exit code. */
export function reportError(err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander already printed its message (and the help hint) to stderr.
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return EXIT.ok
    return EXIT.usage
  }
  if (err instanceof CliError) {
    process.stderr.write(`taskrelay: ${err.message}\n`)
    return err.exitCode
  }
  if (err instanceof ConfigError || err instanceof InvalidOptionsError || err instanceof PayloadValidationError) {
    process.stderr.write(`taskrelay: ${err.message}\n`)
    return EXIT.usage
  }
  if (err instanceof TaskRelayError) {
    process.stderr.write(`taskrelay: ${err.message}\n`)
    return EXIT.failed
  }
  // A bug or something unforeseen: the stack is what a bug report needs.
  process.stderr.write(`taskrelay: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`)
  return EXIT.failed
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram()
  if (argv.length <= 2) {
    program.outputHelp()
    return EXIT.usage
  }
  try {
    await program.parseAsync(argv)
    return EXIT.ok
  } catch (err) {
    return reportError(err)
  }
}
