import { Command, Option } from 'commander'
import { z } from 'zod'
import { PodshellError } from '../errors.js'
import { sandboxPolicyDir } from '../config/paths.js'
import { type Policy } from '../policy/schema.js'
import { loadPolicyFile } from '../policy/parse.js'
import { policyToYaml, unenforcedWarnings } from '../policy/document.js'
import { PolicyStore, type PolicyRevision } from '../policy/store.js'
import { checkLiveChange } from '../policy/live.js'
import { applyPolicyUpdate } from '../policy/update.js'
import { GatewayClient } from '../gateway/client.js'
import { ensureGateway } from '../gateway/lifecycle.js'
import { check } from '../util/validate.js'
import { CliContext, collect } from './context.js'
import { parseOutputFormat, serialize } from './output.js'
import {
  policyEffective,
  policyFailedLine,
  policyListTable,
  policyLoadedLine,
  policyRevision,
  policySubmittedLine,
  policySupersededLine,
  policyTimeoutLine,
  policyUnchangedLine,
} from './openshell-format.js'
import { resolveName } from './sandbox.js'
import { openRuntime } from './runtime.js'
import { enforcePolicyFile, enforcePolicyCeiling } from './enterprise-hooks.js'
import { activeGlobalPolicy, MANAGED_GLOBALLY } from '../policy/global.js'
import { deleteGlobal, getGlobal, listGlobal, setGlobal } from './policy-global.js'

/**
 * Live policy verbs on a sandbox: set, get, list, update. The CLI writes a new revision; the gateway
 * loads it on the control socket (≈ milliseconds) and records LOADED or FAILED. A revision that
 * fails to load leaves the previous one in force.
 *
 * Long by design: the flat commander declarations of the four verbs, as OpenShell's CLI has them.
 */
export function registerLivePolicy(policy: Command, ctx: CliContext): void {
  policy
    .command('set')
    .description("replace a sandbox's whole policy (network_policies apply to new connections at once)")
    .argument('[name]', 'sandbox name (default: last used)')
    .requiredOption('--policy <file>', 'OpenShell v1 policy file')
    .option('--wait', 'wait until the gateway loaded it: exit 0 loaded, 1 failed, 124 timeout')
    .option('--timeout <seconds>', 'with --wait: give up after this many seconds', '60')
    .option('--yes', 'accepted for OpenShell compatibility (podshell does not prompt)')
    .option('--global', "set the global policy: it replaces every sandbox's own policy until `policy delete --global`")
    .action(async (name: string | undefined, flags: { policy: string; wait?: boolean; timeout: string; global?: boolean }) => {
      if (flags.global) return setGlobal(ctx, flags.policy, flags.wait)
      const n = resolveName(name, ctx)
      const timeout = check(seconds, flags.timeout, '--timeout')
      enforcePolicyFile(flags.policy, ctx)
      const { policy: next } = loadPolicyFile(flags.policy)
      enforcePolicyCeiling(next, ctx)
      await submit(ctx, n, next, flags.policy, { wait: flags.wait, timeout })
    })

  policy
    .command('update')
    .description('add or remove endpoints and rules in the policy in force')
    .argument('[name]', 'sandbox name (default: last used)')
    .option('--add-endpoint <spec>', 'host:port[:access[:protocol[:enforcement[:opts]]]]; repeatable', collect, [])
    .option('--remove-endpoint <spec>', 'host:port; repeatable', collect, [])
    .option('--add-allow <spec>', 'host:port:METHOD:glob; repeatable', collect, [])
    .option('--add-deny <spec>', 'host:port:METHOD:glob; repeatable', collect, [])
    .option('--remove-rule <name>', 'remove a network policy by name; repeatable', collect, [])
    .option('--binary <path>', 'binary allowed to use the added endpoints (not enforced by podshell); repeatable', collect, [])
    .option('--rule-name <name>', 'name of the network policy the endpoints go into')
    .option('--dry-run', 'print the resulting policy and change nothing')
    .option('--wait', 'wait until loaded: exit 0 loaded, 1 failed, 124 timeout')
    .option('--timeout <seconds>', 'with --wait: give up after this many seconds', '60')
    .action(async (name: string | undefined, flags: UpdateFlags) => {
      const n = resolveName(name, ctx)
      const timeout = check(seconds, flags.timeout, '--timeout')
      refuseWhileGlobal(ctx)
      const store = new PolicyStore(sandboxPolicyDir(ctx.dataDir, n))
      const cur = inForce(store)
      if (!cur) throw noPolicy(n)
      const { policy: next, changes } = applyPolicyUpdate(cur.policy, {
        addEndpoints: flags.addEndpoint,
        removeEndpoints: flags.removeEndpoint,
        addAllow: flags.addAllow,
        addDeny: flags.addDeny,
        removeRules: flags.removeRule,
        binaries: flags.binary,
        ruleName: flags.ruleName,
      })
      if (changes.length === 0) throw new PodshellError('nothing to update', { hint: 'give --add-endpoint, --remove-endpoint, --add-allow, --add-deny or --remove-rule', exitCode: 2, code: 'INVALID_INPUT' })
      enforcePolicyCeiling(next, ctx)
      for (const c of changes) ctx.out.note(c)
      if (flags.dryRun) return ctx.out.stdout(policyToYaml(next))
      await submit(ctx, n, next, 'policy update', { wait: flags.wait, timeout })
    })

  policy
    .command('get')
    .description('show the policy of a sandbox: a Version/Hash/Status header, a --- line, then the YAML')
    .argument('[name]', 'sandbox name (default: last used)')
    .option('--rev <n>', 'a specific stored revision (default: the policy in force)')
    .option('--full', 'include the policy document after a --- line')
    .option('--base', 'include the policy document (podshell composes no provider rules into it: same as --full)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .option('--global', 'show the global policy revision')
    .action(async (name: string | undefined, flags: { rev?: string; full?: boolean; base?: boolean; output: string; global?: boolean }) => {
      if (flags.full && flags.base) throw new PodshellError('--full and --base cannot be combined', { hint: 'give one of them', exitCode: 2, code: 'INVALID_INPUT' })
      if (flags.global) return getGlobal(ctx, { ...flags, rev: flags.rev !== undefined ? check(posInt, flags.rev, '--rev') : undefined })
      const n = resolveName(name, ctx)
      const format = parseOutputFormat(flags.output, ['table', 'json']) as 'table' | 'json'
      const withPolicy = Boolean(flags.full || flags.base)
      await requireSandbox(ctx, n)
      const store = new PolicyStore(sandboxPolicyDir(ctx.dataDir, n))
      const rev = flags.rev !== undefined ? store.get(check(posInt, flags.rev, '--rev')) : inForce(store) ?? latestEntry(store)
      if (!rev) throw flags.rev !== undefined ? new PodshellError(`revision ${flags.rev} of sandbox ${n} not found`, { hint: `\`podshell policy list ${n}\` shows the revisions`, code: 'NOT_FOUND' }) : noPolicy(n)
      for (const w of unenforcedWarnings(rev.policy)) ctx.out.note(`warning: ${w}`)
      if (flags.rev !== undefined) ctx.out.stdout(policyRevision(n, rev.revision, store.current()?.version, rev, format, withPolicy))
      else {
        // A global policy in force is the sandbox's effective policy (src/policy/global.ts).
        const g = activeGlobalPolicy(ctx.dataDir)
        ctx.out.stdout(g ? policyEffective(n, rev.revision, { policy: g.policy, yaml: policyToYaml(g.policy) }, format, withPolicy, g) : policyEffective(n, rev.revision, rev, format, withPolicy))
      }
    })

  policy
    .command('list')
    .description("list a sandbox's policy revisions")
    .argument('[name]', 'sandbox name (default: last used)')
    .option('--limit <n>', 'at most n revisions (newest first)', '20')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'yaml', 'json']).default('table'))
    .option('--global', 'list the global policy revisions')
    .action(async (name: string | undefined, flags: { limit: string; output: string; global?: boolean }) => {
      const limit = check(posInt, flags.limit, '--limit')
      if (flags.global) return listGlobal(ctx, limit, flags.output)
      const n = resolveName(name, ctx)
      await requireSandbox(ctx, n)
      const revs = new PolicyStore(sandboxPolicyDir(ctx.dataDir, n)).list().reverse().slice(0, limit)
      const format = parseOutputFormat(flags.output)
      if (format !== 'table') return ctx.out.stdout(serialize(revs.map(revisionJson), format))
      if (revs.length === 0) return ctx.out.note(`No policy history found for sandbox '${n}'`)
      ctx.out.stdout(policyListTable(revs))
    })

  policy
    .command('delete')
    .description("delete the global policy: every sandbox's own policy is in force again")
    .option('--global', 'delete the global policy (required)')
    .option('--yes', 'accepted for OpenShell compatibility (podshell does not prompt)')
    .action(async (flags: { global?: boolean }) => {
      if (!flags.global) throw new PodshellError('sandbox policy delete is not supported; use --global to remove global policy lock', { hint: 'give --global', exitCode: 2, code: 'INVALID_INPUT' })
      await deleteGlobal(ctx)
    })
}

/** OpenShell refuses sandbox-scoped policy changes while a global policy is in force. */
function refuseWhileGlobal(ctx: CliContext): void {
  if (activeGlobalPolicy(ctx.dataDir)) throw new PodshellError(MANAGED_GLOBALLY, { hint: '`podshell policy delete --global` first', code: 'FAILED_PRECONDITION' })
}

interface UpdateFlags {
  addEndpoint: string[]
  removeEndpoint: string[]
  addAllow: string[]
  addDeny: string[]
  removeRule: string[]
  binary: string[]
  ruleName?: string
  dryRun?: boolean
  wait?: boolean
  timeout: string
}

const seconds = z.string().regex(/^\d{1,6}$/, 'must be a whole number of seconds').transform(Number)
const posInt = z.string().regex(/^[1-9]\d{0,8}$/, 'must be a positive integer').transform(Number)

async function requireSandbox(ctx: CliContext, name: string): Promise<void> {
  const rt = await openRuntime(ctx)
  if (!(await rt.exists(name))) {
    throw new PodshellError(`sandbox ${name} not found`, { hint: '`podshell sandbox list` shows the sandboxes', code: 'NOT_FOUND' })
  }
}

function inForce(store: PolicyStore): { revision: PolicyRevision; policy: Policy; yaml: string } | undefined {
  const cur = store.current()
  return cur ? store.get(cur.version) : undefined
}

function latestEntry(store: PolicyStore): { revision: PolicyRevision; policy: Policy; yaml: string } | undefined {
  const l = store.latest()
  return l ? store.get(l.version) : undefined
}

function noPolicy(name: string): PodshellError {
  return new PodshellError(`sandbox ${name} has no policy revision`, { hint: `set one with \`podshell policy set ${name} --policy FILE\``, code: 'NOT_FOUND' })
}

function revisionJson(r: PolicyRevision): Record<string, unknown> {
  return {
    version: r.version,
    policy_hash: r.hash,
    status: r.status,
    source: r.source,
    created_at_ms: r.created_at_ms,
    loaded_at_ms: r.loaded_at_ms ?? null,
    load_error: r.load_error ?? null,
  }
}

/**
 * Stores a new revision after OpenShell's live-change rules, then asks the gateway to load it.
 * Static sections are refused here, before anything is written.
 */
async function submit(ctx: CliContext, name: string, next: Policy, source: string, o: { wait?: boolean; timeout: number }): Promise<void> {
  await requireSandbox(ctx, name)
  refuseWhileGlobal(ctx)
  const store = new PolicyStore(sandboxPolicyDir(ctx.dataDir, name))
  const cur = inForce(store) ?? latestEntry(store)
  if (cur) {
    const refused = checkLiveChange(cur.policy, next)
    if (refused) throw new PodshellError(refused, { hint: 'static sections (filesystem_policy may only grow; landlock, process unchanged) need a new sandbox', code: 'STATIC_CHANGE' })
  }
  for (const w of unenforcedWarnings(next)) ctx.out.note(`warning: ${w}`)
  const rev = store.add(next, source)
  if (rev.unchanged) {
    // OpenShell: an identical policy keeps its version, and `--wait` has nothing to wait for.
    ctx.out.note(policyUnchangedLine(rev.version, rev.hash))
    return
  }
  ctx.out.note(policySubmittedLine(rev.version, rev.hash))
  const gw = new GatewayClient(ctx.dataDir)
  const started = Date.now()
  let status: { status: string; error?: string } = { status: 'PENDING' }
  try {
    await ensureGateway(await ctx.podman(), ctx.dataDir, { env: ctx.env, say: m => ctx.out.note(m) })
    status = await gw.reload(name)
  } catch (e) {
    if (!o.wait) {
      ctx.out.note(`gateway not reachable; the revision loads when it is back (${e instanceof Error ? e.message : String(e)})`)
      return
    }
  }
  if (!o.wait) return
  // The gateway answers reload with the outcome of *its* newest revision; confirm it is ours.
  // Lines and exit codes as OpenShell's `policy set --wait` (stderr; 0 loaded or superseded,
  // 1 failed, 124 timeout).
  for (;;) {
    const r = store.list().find(x => x.version === rev.version)
    const active = store.current()?.version ?? 0
    if (r?.status === 'LOADED') return ctx.out.note(policyLoadedLine(rev.version, active))
    if (r?.status === 'SUPERSEDED') return ctx.out.note(policySupersededLine(rev.version, active))
    if (r?.status === 'FAILED') {
      ctx.out.note(policyFailedLine(rev.version, (r.load_error ?? status.error ?? '').replace(/\n/g, ' ')))
      process.exitCode = 1
      return
    }
    if (Date.now() - started > o.timeout * 1000) {
      ctx.out.note(policyTimeoutLine(rev.version))
      process.exitCode = 124
      return
    }
    await new Promise(r => setTimeout(r, 50))
    if (status.status === 'PENDING') status = await gw.reload(name).catch(() => status)
  }
}
