/**
 * One sandbox as the gateway serves it: its proxy, policy in force, providers and held
 * credentials. Shared by the gateway (src/gateway/server.ts), its policy loader
 * (src/gateway/policy-load.ts) and its providers file reader (src/gateway/providers-file.ts).
 */
import type { Policy } from '../policy/schema.js'
import type { PolicyEngine } from './policy-engine.js'
import type { SandboxProxy } from './proxy.js'
import type { AuditSink } from './audit.js'
import type { SandboxWorker } from './fairness.js'
import type { HeldCredential } from './credential-substitution.js'

export interface Served {
  readonly name: string
  /** The main loop's proxy (after a move: the one draining its last connections). */
  proxy: SandboxProxy
  readonly audit: AuditSink
  /** The worker thread serving this sandbox now (fairness), if it was moved. */
  worker?: SandboxWorker | undefined
  /** Workers of earlier moves that are finishing their connections. */
  readonly retired: Set<SandboxWorker>
  /** Consecutive fairness checks over its share; set while a move is under way. */
  strikes: number
  moving: boolean
  engine: PolicyEngine
  version: number | null
  hash: string | null
  policy: Policy | null
  providersStamp: string
  /** Hash of the global policy in force for this sandbox (src/policy/global.ts), null: its own. */
  globalHash: string | null
  /** Placeholders of the attached providers (providers.json; not secret). */
  placeholders: readonly { provider: string; variable: string; placeholder: string }[]
  /** Real values by placeholder, pushed by the CLI over the control socket; memory only (issue 12). */
  readonly values: Map<string, { provider: string; variable: string; value: string }>
  /** Serializes reloads of this sandbox. */
  queue: Promise<unknown>
}

/** What the sandbox's proxy substitutes: every placeholder it was given, with the value when held. */
export function heldCredentials(s: Served): HeldCredential[] {
  return s.placeholders.map(p => {
    const v = s.values.get(p.placeholder)
    return { ...p, value: v && v.provider === p.provider && v.variable === p.variable ? v.value : undefined }
  })
}
