import { PodshellError } from '../errors.js'
import { peekAgentDescription } from './description.js'
import type { MountSpec } from './types.js'
import { L } from './naming.js'
import { creatorAlive } from '../util/process.js'
import { readPhaseHint } from './state.js'

/**
 * What `sandbox list`/`get` report: OpenShell's phase derived from Podman's state of the agent and
 * bridge containers (Podman is the source of truth) plus the phase hint of verbs in flight.
 */

/** OpenShell's phases, exactly (proto SandboxPhase). */
export type Phase = 'Provisioning' | 'Ready' | 'Error' | 'Deleting' | 'Stopping' | 'Stopped' | 'Starting' | 'Unknown' | 'Completed'

export interface SandboxInfo {
  id: string
  name: string
  /** User labels (without podshell's own io.podshell.* keys). */
  labels: Record<string, string>
  created_at: string
  phase: Phase
  /** podshell's own fields */
  image: string
  workdir: string | null
  mounts: MountSpec[]
  providers: string[]
  session_type: string | null
  /** Egress path state: up (bridge running, gateway answering), or down with the reason. */
  egress: string
  exit_code: number | null
  /** The agent's main process: the user's command, or idle (connect opens a shell); null before it exists. */
  main: 'command' | 'idle' | null
  pod: string
}

export interface PodJson {
  Id: string
  Name: string
  Status: string
  Created: string
  Labels?: Record<string, string> | null
  Containers?: { Id: string; Names: string; Status: string }[] | null
}

export interface CtrJson {
  Id: string
  Names: string[]
  State: string
  ExitCode: number
  Exited: boolean
  Labels?: Record<string, string> | null
  PodName?: string
}

/** A sandbox as `list`/`get` show it: phase derived from the agent and bridge states plus the phase hint. */
export function podInfo(dataDir: string, pod: PodJson, ctrs: CtrJson[], gatewayUp: boolean): SandboxInfo | undefined {
  const labels = pod.Labels ?? {}
  const name = labels[L.sandbox]
  if (!name) return undefined
  const mine = ctrs.filter(c => c.Labels?.[L.sandbox] === name)
  const agent = mine.find(c => c.Labels?.[L.role] === 'agent')
  const bridge = mine.find(c => c.Labels?.[L.role] === 'bridge')
  const hint = readPhaseHint(dataDir, name)
  let phase: Phase
  let exitCode: number | null = null
  if (hint === 'deleting') phase = 'Deleting'
  else if (!agent) phase = creatorAlive(labels[L.creator]) ? 'Provisioning' : 'Error'
  else {
    const st = agent.State.toLowerCase()
    if (st === 'running') phase = hint === 'stopping' ? 'Stopping' : 'Ready'
    else if (st === 'exited' || st === 'stopped') {
      if (hint === 'stopped' || hint === 'stopping') phase = 'Stopped'
      else {
        // OpenShell ≥ v0.0.111 (PR #2884): the main process exiting 0 is Completed, any other
        // code (128+n for signal n) is Error with that exit code. An explicit stop is Stopped.
        exitCode = agent.ExitCode
        phase = exitCode === 0 ? 'Completed' : 'Error'
      }
    } else if (st === 'created' || st === 'configured' || st === 'initialized') phase = hint === 'starting' ? 'Starting' : 'Provisioning'
    else if (st === 'stopping') phase = 'Stopping'
    else if (st === 'paused') phase = 'Stopped'
    else phase = 'Unknown'
    if (hint === 'starting' && st !== 'running') phase = 'Starting'
  }
  const egress =
    !bridge ? 'down: no bridge container'
    : bridge.State.toLowerCase() !== 'running' ? `down: bridge ${bridge.State.toLowerCase()}`
    : !gatewayUp ? 'down: gateway not running'
    : 'up'
  const user: Record<string, string> = {}
  for (const [k, v] of Object.entries(labels)) if (k.startsWith(L.userPrefix)) user[k.slice(L.userPrefix.length)] = v
  let mounts: MountSpec[]
  try {
    mounts = JSON.parse(labels[L.mounts] || '[]') as MountSpec[]
  } catch {
    mounts = []
  }
  return {
    id: labels[L.id] ?? pod.Id,
    name,
    labels: user,
    created_at: labels[L.created] ?? pod.Created,
    phase,
    image: labels[L.image] ?? '',
    workdir: labels[L.workdir] || null,
    mounts,
    providers: peekAgentDescription(dataDir, name)?.providers ?? (labels[L.providers] ?? '').split(',').filter(Boolean),
    session_type: labels[L.sessionType] || null,
    egress,
    exit_code: exitCode,
    main: agent ? (agent.Labels?.[L.main] === 'command' ? 'command' : 'idle') : null,
    pod: pod.Name,
  }
}

export function notFound(name: string): PodshellError {
  return new PodshellError(`sandbox ${name} not found`, { hint: '`podshell sandbox list` shows the sandboxes', code: 'NOT_FOUND' })
}
