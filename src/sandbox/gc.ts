import type { Podman } from '../podman/podman.js'
import { L } from './naming.js'
import { creatorAlive } from '../util/process.js'
import { listStateDirs, operationState } from './state.js'
import type { SandboxDeps } from './runtime.js'
import type { PodJson, CtrJson } from './sandbox-info.js'

/**
 * Garbage collection of interrupted operations (create/delete killed mid-way): pods without an
 * agent container and a dead creator, containers of vanished pods, state dirs without pods, and
 * orphaned provider secrets. SandboxRuntime.gc is the entry point.
 */

/** What gc needs from the runtime. */
export interface GcContext {
  podman: Podman
  dataDir: string
  deps: Pick<SandboxDeps, 'credentialsNeedGc' | 'unregisterFromGateway' | 'gcCredentials'>
  removeState(name: string): Promise<void>
}

/**
 * Removes what an interrupted create left behind: pods whose creator is dead and that never got
 * their agent container, state dirs without a pod, secrets of sandboxes that no longer exist.
 * Runs at the start of state-changing commands; cheap when there is nothing to do.
 */
export async function collectGarbage(rc: GcContext, opts: { full?: boolean } = {}): Promise<string[]> {
  // Cheap check first (no podman call): only an operation that died leaves a creator file with
  // a dead owner, or a stale provider lock. `podshell gc` always does the full pass.
  if (!opts.full && !interruptedOperations(rc.dataDir).length && !rc.deps.credentialsNeedGc()) return []
  const removed: string[] = []
  const [pods, ctrs] = await Promise.all([
    rc.podman.json<PodJson[]>(['pod', 'ps', '--format', 'json', '--filter', `label=${L.sandbox}`]),
    rc.podman.json<CtrJson[]>(['ps', '-a', '--format', 'json', '--filter', `label=${L.sandbox}`]),
  ])
  const interrupted = new Set(interruptedOperations(rc.dataDir))
  const live = new Set<string>()
  for (const pod of pods ?? []) {
    const name = pod.Labels?.[L.sandbox]
    if (!name) continue
    const hasAgent = (ctrs ?? []).some(c => c.Labels?.[L.sandbox] === name && c.Labels?.[L.role] === 'agent')
    const halfMade = !hasAgent && !creatorAlive(pod.Labels?.[L.creator])
    if (halfMade || interrupted.has(name)) {
      await rc.podman.run(['pod', 'rm', '-f', '--ignore', pod.Name], { reject: false })
      removed.push(`pod ${pod.Name}`)
      continue
    }
    live.add(name)
  }
  // Containers labelled for a sandbox whose pod is gone (killed between pod rm steps).
  for (const c of ctrs ?? []) {
    const name = c.Labels?.[L.sandbox]
    if (name && !live.has(name) && !(pods ?? []).some(p => p.Labels?.[L.sandbox] === name && !interrupted.has(name))) {
      await rc.podman.run(['rm', '-f', '--ignore', c.Id], { reject: false })
      removed.push(`container ${c.Names[0] ?? c.Id}`)
    }
  }
  for (const name of listStateDirs(rc.dataDir)) {
    if (live.has(name)) continue
    // A state dir exists briefly before its pod: leave it while its creator runs.
    if (operationState(rc.dataDir, name) === 'running') continue
    await rc.deps.unregisterFromGateway(name).catch(() => undefined)
    await rc.removeState(name).catch(() => undefined)
    removed.push(`state ${name}`)
  }
  await rc.deps.gcCredentials(rc.podman, live)
  return removed
}

/** Sandboxes whose create or delete was interrupted (creator file of a dead process). */
export function interruptedOperations(dataDir: string): string[] {
  return listStateDirs(dataDir).filter(name => operationState(dataDir, name) === 'interrupted')
}
