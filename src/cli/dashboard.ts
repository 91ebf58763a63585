import type { Command } from 'commander'
import { examples } from './format.ts'
import { DashboardServer, bindProblem } from '../dashboard/server.ts'
import type { DashboardCredentials } from '../dashboard/auth.ts'
import type { SettingsRequest } from './settings.ts'
import { loadTasks } from './load-tasks.ts'
import { allowedHostProblem } from '../dashboard/guard.ts'
import { CliError, EXIT, errorText } from './errors.ts'
import { addSettingOptions } from './settings.ts'
import { ONE_SHOT, createCliLogger, waitForSignal, withDatabase } from './runtime.ts'

export function registerDashboardCommand(program: Command): void {
  const dashboard = program
    .command('dashboard')
    .summary('serve the web dashboard: queues and charts, tasks, schedules, workers, and operator actions')
    .description(
      'Serves GET / (the page), /api/stats, /api/queues, /api/charts, /api/tasks?state=&queue=&task=&since=&limit=&after=, ' +
        '/api/tasks/<id>, /api/schedules and /api/workers to anyone who reaches it, and the actions (retry, cancel, bulk retry, ' +
        'pause and resume a queue, pause, resume and run a schedule) to an operator logged in with TASKRELAY_DASHBOARD_TOKEN or ' +
        'TASKRELAY_DASHBOARD_USER/PASSWORD. Without credentials it is read-only and binds only to loopback (docs/dashboard.md). ' +
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
        'TASKRELAY_DASHBOARD_TOKEN=$(openssl rand -hex 24) taskrelay dashboard --port 9000 --host 0.0.0.0 --allowed-host tasks.internal.example.com',
      ]),
    )
  addSettingOptions(dashboard, DASHBOARD)
  dashboard.action((flags: Record<string, unknown>) =>
    withDatabase(DASHBOARD, flags, 'dashboard', async (db, s) => {
      const portText = String(flags.port)
      if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65_535) {
        throw new CliError(`--port: expected a whole number from 0 to 65535, got "${portText}".`, EXIT.usage)
      }
      const host = String(flags.host)
      const allowedHosts = (flags.allowedHost as string[]).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean)
      const problems = allowedHosts.map(allowedHostProblem).filter((p) => p !== null)
      if (problems.length) throw new CliError(`--allowed-host: ${problems.join('; ')}.`, EXIT.usage)
      const auth = credentials(s.process)
      const bind = bindProblem(host, auth)
      if (bind) throw new CliError(bind, EXIT.usage)
      const tasks = s.process.tasks ? await loadTasks(s.process.tasks) : undefined
      const log = createCliLogger({ logLevel: 'info', logFormat: 'auto' })
      const server = new DashboardServer(db.tr, log, allowedHosts, { auth, tasks })
      const address = await server.start(Number(portText), host).catch((err: unknown) => {
        throw new CliError(`--port ${portText} --host ${host}: cannot listen (${errorText(err)}). Pick a free port or another address.`)
      })
      const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
      // Handlers first, then the line that says it is up: a SIGTERM sent on seeing it must find them.
      const stopped = waitForSignal(log, async () => {
        await server.stop()
        await db.close()
      })
      const mode = auth ? 'operators log in to act' : 'read-only: no credentials configured'
      console.log(`taskrelay dashboard (${mode}) for schema "${s.process.schema}" on http://${shown}:${address.port}/ (Ctrl-C to stop)`)
      await stopped
    }),
  )
}

const DASHBOARD: SettingsRequest = { ...ONE_SHOT, process: [...ONE_SHOT.process, 'dashboardToken', 'dashboardUser', 'dashboardPassword', 'tasks'] }

/** The operator credentials from the settings, checked for strength (never quoted in a message). */
function credentials(p: { dashboardToken?: string; dashboardUser?: string; dashboardPassword?: string }): DashboardCredentials | undefined {
  const problems: string[] = []
  if (p.dashboardToken !== undefined && p.dashboardToken.length < 16) problems.push('TASKRELAY_DASHBOARD_TOKEN: at least 16 characters (e.g. openssl rand -hex 24)')
  if (Boolean(p.dashboardUser) !== Boolean(p.dashboardPassword)) problems.push('TASKRELAY_DASHBOARD_USER and TASKRELAY_DASHBOARD_PASSWORD: give both or neither')
  if (p.dashboardPassword && p.dashboardPassword.length < 12) problems.push('TASKRELAY_DASHBOARD_PASSWORD: at least 12 characters')
  if (problems.length) throw new CliError(`dashboard credentials:\n  - ${problems.join('\n  - ')}`, EXIT.usage)
  if (!p.dashboardToken && !p.dashboardUser) return undefined
  return { token: p.dashboardToken, user: p.dashboardUser, password: p.dashboardPassword }
}
