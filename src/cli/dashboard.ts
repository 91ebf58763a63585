import type { Command } from 'commander'
import { examples } from './format.ts'
import { DashboardServer } from '../dashboard/server.ts'
import { CliError, EXIT } from './errors.ts'
import { addSettingOptions } from './settings.ts'
import { ONE_SHOT, createCliLogger, errorText, waitForSignal, withDatabase } from './runtime.ts'

export function registerDashboardCommand(program: Command): void {
  const dashboard = program
    .command('dashboard')
    .summary('serve a read-only web dashboard: queues, tasks, one task (and their JSON API)')
    .description(
      'Serves GET / (the page), /api/stats, /api/tasks?state=&queue=&task=&limit=&after= and /api/tasks/<id>. ' +
        'It shows payloads, results and errors and changes nothing; it binds to 127.0.0.1 unless --host says otherwise.',
    )
    .option('--port <port>', 'port to listen on (0: any free port)', '8090')
    .option('--host <address>', 'address to listen on; 0.0.0.0 shows your task data to the network', '127.0.0.1')
    .addHelpText('after', examples(['taskrelay dashboard', 'taskrelay dashboard --port 9000 --host 0.0.0.0']))
  addSettingOptions(dashboard, ONE_SHOT)
  dashboard.action((flags: Record<string, unknown>) =>
    withDatabase(ONE_SHOT, flags, 'dashboard', async (db, s) => {
      const portText = String(flags.port)
      if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65_535) {
        throw new CliError(`--port: expected a whole number from 0 to 65535, got "${portText}".`, EXIT.usage)
      }
      const host = String(flags.host)
      const log = createCliLogger({ logLevel: 'info', logFormat: 'auto' })
      const server = new DashboardServer(db.tr, log)
      const address = await server.start(Number(portText), host).catch((err: unknown) => {
        throw new CliError(`--port ${portText} --host ${host}: cannot listen (${errorText(err)}). Pick a free port or another address.`)
      })
      const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
      console.log(`taskrelay dashboard for schema "${s.process.schema}" on http://${shown}:${address.port}/ (Ctrl-C to stop)`)
      await waitForSignal(log, async () => {
        await server.stop()
        await db.close()
      })
    }),
  )
}
