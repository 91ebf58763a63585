import { spawn, type ChildProcess } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Run the real `taskrelay` binary as a child process, the way users do:
 * `node bin/taskrelay.js ...` with settings in the environment.
 */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BIN = join(ROOT, 'bin/taskrelay.js')

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/** The parent's environment minus anything that would configure the child behind the test's back. */
export function baseEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('TASKRELAY_') && k !== 'LOG_LEVEL') env[k] = v
  }
  // Type-stripped sources compile once per machine instead of once per spawn.
  env.NODE_COMPILE_CACHE = join(tmpdir(), 'taskrelay-test-compile-cache')
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  return env
}

export function runCli(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: baseEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`taskrelay ${args.join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`))
    }, timeoutMs)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** A long-running command: its JSON log lines, a way to wait for one, and a way to stop it. */
export interface CliProcess {
  child: ChildProcess
  /** parsed JSON log lines from stdout so far */
  logs: Array<Record<string, unknown>>
  stdout(): string
  stderr(): string
  waitForLog(match: (line: Record<string, unknown>) => boolean, what: string, timeoutMs?: number): Promise<Record<string, unknown>>
  /** send a signal and resolve with the exit code */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>
  exited: Promise<number | null>
}

export function startCli(args: string[], env: Record<string, string | undefined> = {}): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: baseEnv({ TASKRELAY_LOG_FORMAT: 'json', ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  let partial = ''
  const logs: Array<Record<string, unknown>> = []
  const listeners = new Set<() => void>()
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
    partial += d.toString()
    const lines = partial.split('\n')
    partial = lines.pop()!
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>)
      } catch {
        // not a log line
      }
    }
    for (const l of listeners) l()
  })
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  exited.then(() => {
    for (const l of listeners) l()
  })
  let done = false
  void exited.then(() => (done = true))

  return {
    child,
    logs,
    exited,
    stdout: () => out,
    stderr: () => err,
    waitForLog(match, what, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = logs.find(match)
          if (found) {
            cleanup()
            resolve(found)
          } else if (done) {
            cleanup()
            reject(new Error(`taskrelay ${args[0]} exited (code ${child.exitCode}) before logging ${what}\nstdout: ${out}\nstderr: ${err}`))
          }
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`timed out waiting for ${what}\nstdout: ${out}\nstderr: ${err}`))
        }, timeoutMs)
        const cleanup = () => {
          clearTimeout(timer)
          listeners.delete(check)
        }
        listeners.add(check)
        check()
      })
    },
    async stop(signal = 'SIGTERM', timeoutMs = 20_000) {
      if (!done) child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}
