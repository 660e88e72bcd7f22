import { randomBytes } from 'node:crypto'
import { envArgs } from '../podman/env-args.js'
import type { InteractiveOptions } from '../podman/interactive.js'
import { agentContainer } from './naming.js'
import { killMarkedProcesses } from './signals.js'

/**
 * One `sandbox exec` session as podman arguments plus its signal and timeout handling, shared by
 * the runtime and the CLI's fast path (src/cli/fast-exec.ts) so both behave the same. Light on
 * purpose: no zod, no execa. Inputs must be validated by the caller.
 *
 * `podman exec` does not proxy signals, so the session carries a random PODSHELL_EXEC_ID in its
 * environment and podshell signals the marked processes itself (killMarkedProcesses).
 */
export interface ExecRequest {
  name: string
  command: string[]
  tty: boolean
  workdir?: string | undefined
  env: Readonly<Record<string, string>>
  timeoutSeconds?: number | undefined
}

/** Exit codes podman uses for its own failures (container gone or stopped) as well as commands'. */
export const PODMAN_EXEC_FAILURE_CODES: ReadonlySet<number> = new Set([125, 126, 127, 255])

export function execSession(r: ExecRequest): { args: string[]; options: InteractiveOptions } {
  const marker = randomBytes(12).toString('hex')
  const env = envArgs(r.env)
  const args = [
    'exec', '-i', ...(r.tty ? ['-t'] : []),
    ...(r.workdir ? ['--workdir', r.workdir] : []),
    ...env.args,
    '--env', `PODSHELL_EXEC_ID=${marker}`,
    agentContainer(r.name),
    ...r.command,
  ]
  const options: InteractiveOptions = {
    env: env.podmanEnv,
    onSignal: sig => killMarkedProcesses(marker, sig),
    timeoutMs: r.timeoutSeconds ? r.timeoutSeconds * 1000 : undefined,
    onTimeout: () => {
      killMarkedProcesses(marker, 'SIGTERM')
      setTimeout(() => killMarkedProcesses(marker, 'SIGKILL'), 2000).unref()
    },
  }
  return { args, options }
}
