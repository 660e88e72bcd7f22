import type { Policy } from '../policy/schema.js'
import type { CliContext } from './context.js'

/**
 * Enterprise checks the policy verbs apply (locked policy dir, network ceiling). Wired to
 * src/config/enterprise.ts.
 */
export function enforcePolicyFile(_file: string, _ctx: CliContext): void {}
export function enforcePolicyCeiling(_policy: Policy, _ctx: CliContext): void {}
