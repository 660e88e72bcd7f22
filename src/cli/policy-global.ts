import { PodshellError } from '../errors.js'
import { loadPolicyFile } from '../policy/parse.js'
import { unenforcedWarnings } from '../policy/document.js'
import { globalPolicyStore } from '../policy/global.js'
import { GatewayClient } from '../gateway/client.js'
import { listStateDirs } from '../sandbox/state.js'
import type { CliContext } from './context.js'
import { parseOutputFormat, serialize } from './output.js'
import { globalPolicyDeletedLine, globalPolicyNotFoundLine, globalPolicySetLine, noGlobalPolicyLine, policyGlobal, policyListTable } from './openshell-format.js'
import { enforcePolicyCeiling, enforcePolicyFile } from './enterprise-hooks.js'

/**
 * `policy set|get|list|delete --global`: the user-wide policy layer (src/policy/global.ts holds the
 * semantics: it replaces every sandbox's own policy while set, as OpenShell's global policy). The
 * enterprise rules bound it exactly as they bound `policy set` on one sandbox.
 */
export async function setGlobal(ctx: CliContext, file: string, wait: boolean | undefined): Promise<void> {
  if (wait) throw new PodshellError('--wait is not supported for global policies; global policies are effective immediately', { hint: 'drop --wait', exitCode: 2, code: 'INVALID_INPUT' })
  enforcePolicyFile(file, ctx)
  const { policy } = loadPolicyFile(file)
  enforcePolicyCeiling(policy, ctx)
  for (const w of unenforcedWarnings(policy)) ctx.out.note(`warning: ${w}`)
  const store = globalPolicyStore(ctx.dataDir)
  const rev = store.add(policy, file)
  // In force from now on (OpenShell marks a global revision loaded when it is stored); setting the
  // same policy again after a delete puts it back in force under its old version.
  store.markLoaded(rev.version)
  ctx.out.note(globalPolicySetLine(rev.hash, rev.version))
  await reloadAll(ctx)
}

export function getGlobal(ctx: CliContext, flags: { rev?: number; full?: boolean; base?: boolean; output: string }): void {
  const format = parseOutputFormat(flags.output, ['table', 'json']) as 'table' | 'json'
  const store = globalPolicyStore(ctx.dataDir)
  const version = flags.rev ?? store.current()?.version ?? store.latest()?.version
  const got = version !== undefined ? store.get(version) : undefined
  if (!got) return ctx.out.note(noGlobalPolicyLine)
  ctx.out.stdout(policyGlobal(got.revision, got, format, Boolean(flags.full || flags.base)))
}

export function listGlobal(ctx: CliContext, limit: number, output: string): void {
  const revs = globalPolicyStore(ctx.dataDir).list().reverse().slice(0, limit)
  const format = parseOutputFormat(output)
  if (format !== 'table') return ctx.out.stdout(serialize(revs.map(r => ({ version: r.version, policy_hash: r.hash, status: r.status, source: r.source, created_at_ms: r.created_at_ms, loaded_at_ms: r.loaded_at_ms ?? null })), format))
  if (revs.length === 0) return ctx.out.note(noGlobalPolicyLine)
  ctx.out.stdout(policyListTable(revs))
}

export async function deleteGlobal(ctx: CliContext): Promise<void> {
  const store = globalPolicyStore(ctx.dataDir)
  const version = store.current()?.version
  if (version === undefined || !store.deactivate()) return ctx.out.stdout(globalPolicyNotFoundLine)
  ctx.out.stdout(globalPolicyDeletedLine(version))
  await reloadAll(ctx)
}

/**
 * Live reload: every sandbox the gateway serves loads the new effective policy now (its periodic
 * rescan is the fallback, and a gateway that is down loads it when it starts).
 */
async function reloadAll(ctx: CliContext): Promise<void> {
  const gw = new GatewayClient(ctx.dataDir)
  if (!(await gw.ping().then(() => true, () => false))) return
  for (const name of listStateDirs(ctx.dataDir)) {
    const r = await gw.reload(name).catch((e: unknown) => ({ status: 'FAILED', error: e instanceof Error ? e.message : String(e) }))
    if (r.status === 'FAILED') ctx.out.note(`warning: sandbox ${name} did not load the policy: ${r.error ?? 'unknown error'}`)
  }
}
