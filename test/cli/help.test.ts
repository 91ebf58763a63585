import { describe, expect, it } from 'vitest'
import type { Command } from 'commander'
import { buildProgram } from '../../src/cli/program.ts'

/** Every command's --help ends with examples (in-process: commander renders the same text the binary prints). */
function helpOf(cmd: Command): string {
  let out = ''
  cmd.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) })
  cmd.outputHelp()
  return out
}

function leaves(cmd: Command, path: string[] = []): Array<[string, Command]> {
  return cmd.commands.filter((c) => c.name() !== 'help').flatMap((c) => [[[...path, c.name()].join(' '), c] as [string, Command], ...leaves(c, [...path, c.name()])])
}

describe('--help', () => {
  const commands = leaves(buildProgram())

  it('covers the commands of the issue', () => {
    const names = commands.map(([n]) => n)
    for (const n of ['migrate', 'relay', 'worker', 'sweeper', 'scheduler', 'dev', 'status', 'stats', 'list', 'retry', 'cancel', 'enqueue', 'schedules list', 'schedules add', 'schedules remove', 'schedules pause', 'schedules resume', 'schedules run-now']) {
      expect(names).toContain(n)
    }
  })

  it.each(commands.map(([name, cmd]) => [name, cmd] as const))('taskrelay %s --help shows examples', (name, cmd) => {
    const help = helpOf(cmd)
    expect(help).toContain(`Usage: taskrelay ${name}`)
    expect(help).toMatch(/Examples:\n {2}\$ .*taskrelay /)
  })
})
