import { randomBytes } from 'node:crypto'
import { envArgs } from '../podman/env-args.js'
import type { InteractiveOptions } from '../podman/interactive.js'
import { agentContainer } from './naming.js'
import { ExecSessionProcesses } from './signals.js'

/**
 * One `sandbox exec` session as podman arguments plus its signal and timeout handling, shared by
 * the runtime and the CLI's fast path (src/cli/fast-exec.ts) so both behave the same. Light on
 * purpose: no zod, no execa. Inputs must be validated by the caller.
 *
 * `podman exec` does not proxy signals, so the session carries a random PODSHELL_EXEC_ID in its
 * environment and podshell signals the exec's processes itself: its root and everything in its
 * session, found through the marker and the exec's conmon (ExecSessionProcesses, signals.ts) — a
 * child that drops the marker is still in the session.
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
  const procs = new ExecSessionProcesses(marker, agentContainer(r.name))
  procs.track()
  const options: InteractiveOptions = {
    env: env.podmanEnv,
    onSignal: sig => procs.signal(sig),
    timeoutMs: r.timeoutSeconds ? r.timeoutSeconds * 1000 : undefined,
    onTimeout: () => procs.terminate(2000),
  }
  return { args, options }
}
