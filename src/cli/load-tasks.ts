import { spawnSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { resolve as resolvePath } from 'node:path'
import { pathToFileURL } from 'node:url'
import { isTask, tasksByName, type Task } from '../define-task.ts'
import { CliError, EXIT, errorText } from './errors.ts'
import { checkMiddleware, type TaskMiddleware } from '../worker/middleware.ts'
import { InvalidOptionsError } from '../errors.ts'

/** What a --tasks module gives a worker: its tasks, and its `middleware` export (an array, first outermost). */
export interface TaskModule {
  tasks: Task[]
  middleware: TaskMiddleware[]
}

/**
 * Import a module and collect every exported task: named exports, arrays of
 * tasks, and tasks inside a default-exported object.
 */
export async function loadTasks(modulePath: string): Promise<Task[]> {
  return (await loadTaskModule(modulePath)).tasks
}

/** loadTasks, plus the module's `middleware` export (named, or a key of the default-exported object). */
export async function loadTaskModule(modulePath: string): Promise<TaskModule> {
  const file = resolvePath(process.cwd(), modulePath)
  if (!existsSync(file) || !statSync(file).isFile()) {
    throw new CliError(
      `--tasks: there is no file at ${file}. Give the path to the module that exports your tasks, e.g. --tasks ./src/tasks.ts ` +
        `(relative paths start from ${process.cwd()}).`,
      EXIT.usage,
    )
  }
  if (/[\\/]node_modules[\\/]/.test(file) && /\.[cm]?ts$/.test(file)) {
    // Node strips types everywhere but inside node_modules: say so instead of its stack.
    throw new CliError(
      `--tasks: ${file} is TypeScript inside node_modules, which Node will not run. Give --tasks a module of your own ` +
        '(to start from the bundled examples, copy node_modules/taskrelay/examples/ into your project).',
      EXIT.usage,
    )
  }
  let mod: Record<string, unknown>
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>
  } catch (err) {
    const at = syntaxErrorLocation(err, file)
    throw new CliError(
      `--tasks: loading ${file} failed: ${errorText(err)}${at ? ` at ${at}\n` : '. '}Fix that module (run \`node ${modulePath}\` to see the full error) and try again.`,
      EXIT.usage,
      { cause: err },
    )
  }
  const found: Task[] = []
  const visit = (value: unknown, depth: number) => {
    if (isTask(value)) found.push(value)
    else if (Array.isArray(value) && depth < 2) value.forEach((v) => visit(v, depth + 1))
    else if (depth === 0 && value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
      Object.values(value).forEach((v) => visit(v, depth + 1))
    }
  }
  for (const value of Object.values(mod)) visit(value, 0)
  const { byName, conflicts } = tasksByName(found)
  if (conflicts.length > 0) {
    throw new CliError(`--tasks: ${file} exports two different tasks named "${conflicts[0]!.name}"; task names must be unique.`, EXIT.usage)
  }
  if (byName.size === 0) {
    throw new CliError(
      `--tasks: ${file} exports no tasks. Export each task made with defineTask(), e.g. \`export const sendWelcome = defineTask({ name: 'email.welcome', ... })\`.`,
      EXIT.usage,
    )
  }
  return { tasks: [...byName.values()], middleware: moduleMiddleware(mod, file) }
}

function moduleMiddleware(mod: Record<string, unknown>, file: string): TaskMiddleware[] {
  const fromDefault = mod.default !== null && typeof mod.default === 'object' ? (mod.default as Record<string, unknown>).middleware : undefined
  try {
    return checkMiddleware('middleware', mod.middleware ?? fromDefault)
  } catch (err) {
    const problems = err instanceof InvalidOptionsError ? errorText(err) : String(err)
    throw new CliError(`--tasks: ${file} exports a \`middleware\` that is not an array of functions (ctx, next) => Promise: ${problems}`, EXIT.usage)
  }
}

/**
 * Where a syntax error is: "file:line", the line and a caret. Node keeps it
 * out of err.message; for TypeScript it heads the stack, for JavaScript only
 * `node --check` prints it (for this file: an error in a module it imports
 * then shows its message alone).
 */
function syntaxErrorLocation(err: unknown, file: string): string | null {
  if (!(err instanceof SyntaxError)) return null
  const located = (text: string) => {
    const head = text.slice(0, text.indexOf('SyntaxError')).trim()
    return /^\S+:\d+\n/.test(head) ? head : null
  }
  const fromStack = located(err.stack ?? '')
  if (fromStack) return fromStack
  const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10_000 })
  return located(check.stderr ?? '')
}

