import type { Policy } from '../policy/schema.js'
import { loadEffectiveConfig, enforcePolicyFileLocked, enforceNetworkCeiling } from '../config/enterprise.js'
import type { CliContext } from './context.js'

/**
 * The enterprise rules the live policy verbs apply (`policy set`, `policy update`): a locked
 * policy_dir (policies from elsewhere refused) and the network ceiling (tighten-only). Create
 * applies the same rules through secureCreateOptions / prepareSpecLaunch.
 */
export function enforcePolicyFile(file: string, ctx: CliContext): void {
  enforcePolicyFileLocked(file, true, loadEffectiveConfig(ctx.env).effective)
}

export function enforcePolicyCeiling(policy: Policy, ctx: CliContext): void {
  enforceNetworkCeiling(policy, loadEffectiveConfig(ctx.env).effective)
}
