import type { Command } from 'commander'
import { examples } from './format.ts'
import { DashboardServer } from '../dashboard/server.ts'
import { allowedHostProblem } from '../dashboard/guard.ts'
import { CliError, EXIT, errorText } from './errors.ts'
import { addSettingOptions } from './settings.ts'
import { ONE_SHOT, createCliLogger, waitForSignal, withDatabase } from './runtime.ts'

export function registerDashboardCommand(program: Command): void {
  const dashboard = program
    .command('dashboard')
    .summary('serve a read-only web dashboard: queues, tasks, one task (and their JSON API)')
    .description(
      'Serves GET / (the page), /api/stats, /api/tasks?state=&queue=&task=&since=&limit=&after= and /api/tasks/<id>. ' +
        'It shows payloads, results and errors and changes nothing; it binds to 127.0.0.1 unless --host says otherwise. ' +
        'Against DNS rebinding it answers only requests whose Host (and Origin, when sent) is an IP address, localhost, ' +
        'the --host name or an --allowed-host name; others get 403. Large fields are sent cut and marked truncated.',
    )
    .option('--port <port>', 'port to listen on (0: any free port)', '8090')
    .option('--host <address>', 'address to listen on; 0.0.0.0 shows your task data to the network', '127.0.0.1')
    .option(
      '--allowed-host <name>',
      'a host name the dashboard may be reached by (besides IP addresses and localhost); .example.com allows a domain and its subdomains; repeat for more',
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .addHelpText(
      'after',
      examples([
        'taskrelay dashboard',
        'taskrelay dashboard --port 9000 --host 0.0.0.0 --allowed-host tasks.internal.example.com',
      ]),
    )
  addSettingOptions(dashboard, ONE_SHOT)
  dashboard.action((flags: Record<string, unknown>) =>
    withDatabase(ONE_SHOT, flags, 'dashboard', async (db, s) => {
      const portText = String(flags.port)
      if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65_535) {
        throw new CliError(`--port: expected a whole number from 0 to 65535, got "${portText}".`, EXIT.usage)
      }
      const host = String(flags.host)
      const allowedHosts = (flags.allowedHost as string[]).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean)
      const problems = allowedHosts.map(allowedHostProblem).filter((p) => p !== null)
      if (problems.length) throw new CliError(`--allowed-host: ${problems.join('; ')}.`, EXIT.usage)
      const log = createCliLogger({ logLevel: 'info', logFormat: 'auto' })
      const server = new DashboardServer(db.tr, log, allowedHosts)
      const address = await server.start(Number(portText), host).catch((err: unknown) => {
        throw new CliError(`--port ${portText} --host ${host}: cannot listen (${errorText(err)}). Pick a free port or another address.`)
      })
      const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
      // Handlers first, then the line that says it is up: a SIGTERM sent on seeing it must find them.
      const stopped = waitForSignal(log, async () => {
        await server.stop()
        await db.close()
      })
      console.log(`taskrelay dashboard for schema "${s.process.schema}" on http://${shown}:${address.port}/ (Ctrl-C to stop)`)
      await stopped
    }),
  )
}
