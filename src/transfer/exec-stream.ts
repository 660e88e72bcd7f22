import { spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import type { Podman } from '../podman/podman.js'
import { agentContainer } from '../sandbox/naming.js'
import { copyOutArgs } from '../podman/exec-args.js'

/**
 * A `podman exec -i` into a sandbox's agent container with its stdin and stdout as streams: the
 * data path of `sandbox upload` (a tar into `tar -x`) and `sandbox download` (`tar -c` out).
 * The command runs as the agent, with the agent's rights: whatever it writes, the agent could
 * have written itself; whatever it prints is under the agent's control and is treated as hostile
 * by the caller. stderr is kept (bounded) for the one-line error.
 */
export interface ExecStream {
  child: ChildProcessByStdio<Writable, Readable, Readable>
  /** Resolves with the exit code and the first 64 KiB of stderr once the process has exited. */
  done: Promise<{ code: number; stderr: string }>
}

const MAX_STDERR = 64 * 1024

export function execStream(podman: Podman, sandbox: string, script: string, args: readonly string[]): ExecStream {
  // `sh -c SCRIPT sh ARGS…`: the arguments are positional parameters, never parsed as shell text.
  return spawnStream(podman, ['exec', '-i', agentContainer(sandbox), 'sh', '-c', script, 'sh', ...args])
}

/**
 * `podman cp AGENT:PATH -` as a stream: a tar of PATH made by podman from the agent container's
 * file system (its contents are still the agent's: the caller extracts it as hostile). Measured
 * ~3-4x faster than `tar -c` through `podman exec`, whose output crosses conmon's attach socket.
 */
export function copyOutStream(podman: Podman, sandbox: string, absPath: string): ExecStream {
  return spawnStream(podman, copyOutArgs(agentContainer(sandbox), absPath))
}

function spawnStream(podman: Podman, args: readonly string[]): ExecStream {
  const { file, args: argv } = podman.spawnArgs(args)
  const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < MAX_STDERR) stderr += d.toString('utf8').slice(0, MAX_STDERR - stderr.length)
  })
  // A closed pipe (the command failed early) surfaces through the exit code, not as an EPIPE crash.
  child.stdin.on('error', () => undefined)
  const done = new Promise<{ code: number; stderr: string }>(resolve => {
    child.on('error', e => resolve({ code: 127, stderr: e.message }))
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stderr }))
  })
  return { child, done }
}

/** The first meaningful line of a sandbox command's stderr, for a one-line error. */
export function firstLine(stderr: string): string {
  const l = stderr
    .split('\n')
    .map(s => s.trim())
    .find(s => s.length > 0)
  return (l ?? 'no error output').slice(0, 300)
}
