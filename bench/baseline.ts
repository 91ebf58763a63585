/**
 * `--baseline <ref>`: taskrelay at another commit, measured in the same run
 * as the checkout's own (system `taskrelay-baseline`, systems/taskrelay-baseline.ts).
 *
 * The commit is checked out as a detached git worktree outside the repository
 * (os.tmpdir()/taskrelay-baseline-<sha>), so neither vitest, tsc nor git status
 * of the checkout see it, and removed again when the run ends. Its
 * node_modules and bench/node_modules are symlinks to the checkout's when the
 * lockfiles are the same; otherwise `npm ci` installs its own.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, lstatSync, readFileSync, rmSync, symlinkSync, unlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository the running bench belongs to (the checkout under test). */
const ROOT = fileURLToPath(new URL('../', import.meta.url))

export interface Baseline {
  /** the worktree's directory */
  dir: string
  /** the full commit id */
  sha: string
  /** what was found while preparing it (printed by the suite) */
  notes: string[]
}

const git = (args: string[], cwd = ROOT) => execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()

const read = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8') : null)

function registered(dir: string): boolean {
  return git(['worktree', 'list', '--porcelain']).split('\n').some((l) => l === `worktree ${dir}`)
}

/** Check out `ref` as a worktree with its dependencies reachable; reuses one left at the same commit. */
export function prepareBaseline(ref: string): Baseline {
  const sha = git(['rev-parse', '--verify', `${ref}^{commit}`])
  const dir = join(tmpdir(), `taskrelay-baseline-${sha.slice(0, 12)}`)
  const notes: string[] = []
  if (existsSync(dir) && !(registered(dir) && git(['rev-parse', 'HEAD'], dir) === sha)) {
    // A leftover of an interrupted run: start over.
    unlinkDeps(dir)
    rmSync(dir, { recursive: true, force: true })
    git(['worktree', 'prune'])
  }
  if (!existsSync(dir)) git(['worktree', 'add', '--detach', dir, sha])
  for (const sub of ['', 'bench']) {
    const lock = join(sub, 'package-lock.json')
    const same = read(join(ROOT, lock)) === read(join(dir, lock))
    const target = join(dir, sub, 'node_modules')
    if (existsSync(target) || isLink(target)) continue
    if (same) {
      // Same lockfile, same dependency set: share the installed tree.
      symlinkSync(join(ROOT, sub, 'node_modules'), target, 'dir')
    } else {
      notes.push(`${lock} differs from the checkout's: npm ci in the baseline's ${sub || 'root'}`)
      execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: join(dir, sub), stdio: ['ignore', 'inherit', 'inherit'] })
    }
  }
  // The adapter contract both trees' suites speak; a difference is worth a look before trusting the numbers.
  const types = 'bench/systems/types.ts'
  if (read(join(ROOT, types)) !== read(join(dir, types))) notes.push(`${types} differs between the checkout and ${sha.slice(0, 7)}: check the adapters are compatible`)
  if (!existsSync(join(dir, 'bench/systems/taskrelay.ts'))) throw new Error(`${sha.slice(0, 7)} has no bench/systems/taskrelay.ts to run`)
  return { dir, sha, notes }
}

/** The symlinks first, by themselves: no recursive removal may walk into the checkout's node_modules. */
function unlinkDeps(dir: string): void {
  for (const sub of ['', 'bench']) {
    const link = join(dir, sub, 'node_modules')
    if (isLink(link)) unlinkSync(link)
  }
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink()
  } catch {
    return false
  }
}

/** Remove the worktree and its registration, so the repository is left as it was. */
export function removeBaseline(b: Baseline): void {
  unlinkDeps(b.dir)
  try {
    git(['worktree', 'remove', '--force', b.dir])
  } catch {
    rmSync(b.dir, { recursive: true, force: true })
  }
  git(['worktree', 'prune'])
}
