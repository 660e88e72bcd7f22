import { execa, type ResultPromise } from 'execa'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { homedir } from 'node:os'
import { mkdtempSync, mkdirSync, existsSync, readFileSync } from 'node:fs'

/**
 * e2e helpers: run the real CLI (dist/, built by `npm test`) against real rootless Podman as the
 * unprivileged user running the tests. Nothing here mocks podman.
 */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const CLI = join(ROOT, 'dist', 'cli', 'main.js')

/** One data dir for the whole run: the per-user gateway mounts it. */
export const TEST_HOME = process.env.PODSHELL_TEST_HOME ?? join(homedir(), '.local', 'share', 'podshell-test')

export function testEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v
  env.PODSHELL_HOME = TEST_HOME
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  return env
}

export interface CliResult {
  stdout: string
  stderr: string
  code: number
}

export async function cli(args: string[], opts: { input?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {}): Promise<CliResult> {
  const r = await execa(process.execPath, [CLI, ...args], {
    reject: false,
    env: testEnv(opts.env),
    extendEnv: false,
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : undefined,
    timeout: opts.timeoutMs ?? 170_000,
    stripFinalNewline: false,
  })
  return { stdout: String(r.stdout), stderr: String(r.stderr), code: r.exitCode ?? (r.signal ? 128 : 1) }
}

/** Starts the CLI without waiting (signal tests). */
export function cliSpawn(args: string[], env: Record<string, string | undefined> = {}): ResultPromise {
  return execa(process.execPath, [CLI, ...args], { reject: false, env: testEnv(env), extendEnv: false, stdin: 'ignore' })
}

/** Runs podman directly (assertions about what exists), with the runtime podshell chose. */
export async function podman(args: string[]): Promise<CliResult> {
  const rt = process.env.PODSHELL_RUNTIME_FOR_TESTS ?? (await detectRuntime())
  const r = await execa('podman', ['--runtime', rt, ...args], { reject: false, stdin: 'ignore' })
  return { stdout: String(r.stdout), stderr: String(r.stderr), code: r.exitCode ?? 1 }
}

let runtime: string | undefined
async function detectRuntime(): Promise<string> {
  if (runtime) return runtime
  const { Podman } = await import('../../dist/podman/podman.js')
  runtime = (await Podman.detect()).runtime.runtime
  return runtime
}

let counter = 0
/** A unique sandbox name for this test run (DNS label ≤ 19). */
export function uniqueName(prefix: string): string {
  counter++
  const suffix = `${process.pid.toString(36)}${counter.toString(36)}`.slice(-6)
  return `${prefix.slice(0, 19 - suffix.length - 1)}-${suffix}`
}

/** A fresh host directory under the user's home (same-path mounts need real host paths). */
export function hostDir(prefix: string): string {
  const base = join(homedir(), 'podshell-e2e')
  mkdirSync(base, { recursive: true })
  return mkdtempSync(join(base, `${prefix}-`))
}

export async function podExists(name: string): Promise<boolean> {
  return (await podman(['pod', 'exists', `podshell.${name}`])).code === 0
}

/**
 * Waits (up to `ms`) until a sandbox has neither a pod nor a state dir: `create --no-keep` removes
 * them in a detached process after returning the command's exit status. False if they stayed.
 */
/** What the detached `--no-keep` teardowns recorded when they gave up (src/cli/teardown.ts), for failure messages. */
export function teardownLog(): string {
  try {
    return readFileSync(join(TEST_HOME, 'teardown.log'), 'utf8').trim() || '(teardown.log empty)'
  } catch {
    return '(no teardown.log: no teardown gave up)'
  }
}

export async function untilGone(name: string, ms = 30_000): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    if (!(await podExists(name)) && !existsSync(join(TEST_HOME, 'sandboxes', name)) && !existsSync(join(TEST_HOME, 'gateway', 'sandboxes', name))) return true
    if (Date.now() > deadline) return false
    await new Promise(r => setTimeout(r, 100))
  }
}
