import { globalPolicyDir } from '../config/paths.js'
import type { Policy } from './schema.js'
import { PolicyStore } from './store.js'

/**
 * The global policy layer (`policy set|get|list|delete --global`), with OpenShell's semantics
 * (openshell-server grpc/policy.rs `effective_policy_for_source`): while a global policy is set it
 * REPLACES every sandbox's own policy (source `global`), it is not merged into it; sandbox-scoped
 * `policy set`/`update` are refused until it is deleted, which gives each sandbox its own policy
 * back. Stored like a sandbox's revisions (src/policy/store.ts) in `<data>/global/policy`; the
 * revision marked LOADED is the one in force (it is marked at set time, as OpenShell does), and
 * `deactivate()` (delete) leaves none LOADED. Enterprise rules bound it as any policy: the CLI
 * applies the same ceiling before storing it.
 */
export interface PolicyLayer {
  version: number
  hash: string
  policy: Policy
}

export interface EffectivePolicy extends PolicyLayer {
  source: 'global' | 'sandbox'
}

export function globalPolicyStore(dataDir: string): PolicyStore {
  return new PolicyStore(globalPolicyDir(dataDir))
}

/** The global policy in force, or undefined. Throws when the store is damaged (callers fail closed). */
export function activeGlobalPolicy(dataDir: string): PolicyLayer | undefined {
  const store = globalPolicyStore(dataDir)
  const cur = store.current()
  const got = cur && store.get(cur.version)
  return got ? { version: got.revision.version, hash: got.revision.hash, policy: got.policy } : undefined
}

/** OpenShell's rule: a global policy, when set, is the effective policy of every sandbox. */
export function effectivePolicy(sandbox: PolicyLayer | undefined, global: PolicyLayer | undefined): EffectivePolicy | undefined {
  if (global) return { ...global, source: 'global' }
  return sandbox ? { ...sandbox, source: 'sandbox' } : undefined
}

/** OpenShell's refusal text for a sandbox-scoped change while a global policy is set. */
export const MANAGED_GLOBALLY = 'policy is managed globally; delete global policy before sandbox policy update'
