import { spawn } from 'node:child_process'
import { cliMain } from '../util/self.js'
import { handOverOperation, markOperation } from './state.js'
import { creatorIdOf } from '../util/process.js'
import type { Env } from '../config/paths.js'

/**
 * `create --no-keep`: the pod is removed AFTER the command's exit status is returned (issue 14).
 * The foreground command has ended and its output is complete when this runs; removing the pod
 * (~200 ms of podman) is not the caller's wait. It happens in a detached process (its own session,
 * no terminal, stdio ignored): `podshell _teardown --data DIR NAME`, which runs the runtime's
 * ordinary delete.
 *
 * Nothing is lost if that process never runs or dies: the sandbox's operation marker is written
 * first with THIS process's identity, then (once spawned) with the teardown process's. Once
 * the marker's process is gone, the sandbox counts as an interrupted operation and the next
 * state-changing command's gc (or `podshell gc`) removes the pod, its secrets and its state.
 */
export function spawnTeardown(dataDir: string, name: string, env: Env): void {
  markOperation(dataDir, name)
  const child = spawn(process.execPath, [cliMain(), '_teardown', '--data', dataDir, name], {
    detached: true,
    stdio: 'ignore',
    env: { ...env } as NodeJS.ProcessEnv,
    cwd: '/',
  })
  child.on('error', () => undefined) // gc finishes the job
  // The marker names the teardown process from now on: this process exits next, and a marker
  // naming it would make the next command's gc take the half-removed pod for an interrupted
  // operation and race the teardown for it (measured: ~400 ms of podman calls in the next
  // create's gc when creates follow each other). The teardown's delete rewrites it the same.
  // Handed over, never re-created: on a loaded machine this process can be descheduled long
  // enough for the teardown to finish first, and markOperation would then re-create an empty
  // state dir naming it.
  if (child.pid !== undefined) {
    try {
      handOverOperation(dataDir, name, creatorIdOf(child.pid))
    } catch {
      // Gone already (the teardown is through), or unwritable: the first marker stays, and gc
      // finishes the job once this process is gone.
    }
  }
  child.unref()
}

/** The arguments of `podshell _teardown` (the same shape as `_watch`'s). */
export { internalArgs as teardownArgs } from '../util/self.js'
