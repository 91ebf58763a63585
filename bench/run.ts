/**
 * Entry point of `npm run bench` (root script: node bench/run.ts).
 *
 * The peers (BullMQ, pg-boss, graphile-worker) are dev dependencies of the
 * bench only, pinned in bench/package.json with bench/package-lock.json. When
 * bench/node_modules is missing or stale this installs them (npm ci) before
 * anything imports them, then hands over to bench/suite.ts.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'

const benchDir = new URL('./', import.meta.url)
const pkg = JSON.parse(readFileSync(new URL('package.json', benchDir), 'utf8')) as { devDependencies: Record<string, string> }

function installed(): boolean {
  for (const [name, version] of Object.entries(pkg.devDependencies)) {
    const file = new URL(`node_modules/${name}/package.json`, benchDir)
    if (!existsSync(file)) return false
    if ((JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version !== version) return false
  }
  return true
}

if (!installed()) {
  console.error('bench: installing the peers (npm ci in bench/) ...')
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  try {
    execFileSync(npm, ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: benchDir, stdio: ['ignore', 'inherit', 'pipe'] })
  } catch {
    // npm ci refuses a lockfile whose platform-specific optional packages
    // (msgpackr-extract's prebuilt binaries) were left out where it was written;
    // install from the same lockfile without rewriting it instead.
    console.error('bench: npm ci refused the lockfile; npm install --no-save from it instead')
    execFileSync(npm, ['install', '--no-save', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: benchDir, stdio: 'inherit' })
  }
}

const { main } = await import('./suite.ts')
try {
  process.exitCode = await main(process.argv.slice(2))
} catch (err) {
  console.error((err as Error).message)
  process.exitCode = 2
}
// Forked workers are gone by now; don't wait on idle sockets of the peers' libraries.
setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref()
