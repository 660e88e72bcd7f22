import { providerHosts } from '../credentials/types.js'
import type { SandboxInfo } from '../sandbox/runtime.js'
import type { PolicyRevision } from '../policy/store.js'
import type { Policy } from '../policy/schema.js'
import { formatCreated, OK } from './output.js'

/**
 * The output that OpenShell's own clients parse (NemoClaw's onboarding, OpenShell's e2e harness,
 * the community web UI), rendered as OpenShell's CLI prints it (crates/openshell-cli/src/run.rs,
 * commands/common.rs, commands/gateway.rs). One module, so a later OpenShell release is one diff
 * here and in test/unit/openshell-format.test.ts + test/e2e/openshell-parity.test.ts.
 *
 * OpenShell colours these lines on a terminal; podshell prints them plain (clients strip ANSI
 * codes before parsing, so plain text is what they match). podshell's own extra facts come after
 * OpenShell's lines, as more `Key: value` lines, never in between.
 */

/** The workspace every podshell sandbox is in (podshell has no workspaces; OpenShell's default). */
export const WORKSPACE = 'default'

/** `sandbox create`: the header OpenShell prints before provisioning (`print_sandbox_header`). */
export const createdSandboxHeader = (name: string) => `\nCreated sandbox: ${name}\n\n`

export const deletedSandboxLine = (name: string) => `${OK} Deleted sandbox ${name}\n`
export const stoppedSandboxLine = (name: string) => `${OK} Stopped sandbox ${name}\n`
export const startedSandboxLine = (name: string) => `${OK} Started sandbox ${name}\n`
export const noSandboxesLine = 'No sandboxes found.\n'
export const noSandboxesToDeleteLine = 'No sandboxes to delete.\n'
export const createdProviderLine = (name: string) => `${OK} Created provider ${name}\n`

/** `sandbox list -o json` element (`sandbox_to_json`) plus podshell's fields. */
export function sandboxJson(i: SandboxInfo, policyVersion: number | null): Record<string, unknown> {
  return {
    id: i.id,
    name: i.name,
    workspace: WORKSPACE,
    labels: { ...i.labels },
    annotations: {},
    resource_version: 0,
    created_at: formatCreated(i.created_at),
    phase: i.phase,
    current_policy_version: policyVersion ?? 0,
    // podshell's own
    created_at_iso: i.created_at,
    image: i.image,
    workdir: i.workdir,
    mounts: i.mounts,
    providers: i.providers,
    session_type: i.session_type,
    egress: i.egress,
    exit_code: i.exit_code,
    main: i.main,
    pod: i.pod,
  }
}

/** `sandbox get -o json` (`sandbox_detail_to_json`): the list element plus policy source, revision and policy. */
export function sandboxDetailJson(i: SandboxInfo, rev: { version: number; policy: Policy; source?: 'global' | 'sandbox' } | undefined): Record<string, unknown> {
  return { ...sandboxJson(i, rev?.version ?? null), policy_source: rev?.source ?? 'sandbox', revision: rev?.version ?? null, policy: rev?.policy ?? null }
}

/** `sandbox list` table: `NAME  CREATED  PHASE`, CREATED 19 wide, two spaces apart. */
export function sandboxListTable(infos: readonly SandboxInfo[]): string {
  const nameW = Math.max(4, ...infos.map(i => i.name.length))
  const row = (a: string, b: string, c: string) => `${a.padEnd(nameW)}  ${b.padEnd(19)}  ${c}\n`
  return row('NAME', 'CREATED', 'PHASE') + infos.map(i => row(i.name, formatCreated(i.created_at), i.phase)).join('')
}

/**
 * `sandbox get` table: OpenShell's key/value block (`Sandbox:`, `Id:`, `Name:`, `Phase:`, …, labels
 * as `key: value` under `Labels:`), podshell's facts, then `Policy:` with the YAML indented by two.
 */
export function sandboxGetBlock(i: SandboxInfo, rev: { version: number; yaml: string; source?: 'global' | 'sandbox' } | undefined): string {
  const lines = ['Sandbox:', '', `  Id: ${i.id}`, `  Name: ${i.name}`, `  Phase: ${i.phase}`, '  Resource version: 0']
  const labels = Object.entries(i.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  if (labels.length) {
    lines.push('  Labels: ')
    for (const [k, v] of labels) lines.push(`    ${k}: ${v}`)
  }
  lines.push(`  Policy source: ${rev?.source ?? 'sandbox'}`)
  if (rev) lines.push(`  Revision: ${rev.version}`)
  // podshell's own facts
  lines.push(`  Created: ${formatCreated(i.created_at)}`, `  Image: ${i.image}`, `  Egress: ${i.egress}`, `  Workdir: ${i.workdir ?? '-'}`)
  if (i.mounts.length) lines.push(`  Mounts: ${i.mounts.map(m => `${m.source}${m.target !== m.source ? ':' + m.target : ''}:${m.mode}`).join(', ')}`)
  if (i.providers.length) lines.push(`  Providers: ${i.providers.join(', ')}`)
  if (i.exit_code !== null) lines.push(`  Exit code: ${i.exit_code}`)
  let out = lines.join('\n') + '\n'
  if (rev) {
    out += '\nPolicy:\n\n'
    for (const l of rev.yaml.split('\n')) if (l !== '' && l !== '---') out += `  ${l}\n`
  }
  return out
}

/** OpenShell's PolicyStatus as `{status:?}` prints it (table) and as its JSON name. */
export function statusName(s: PolicyRevision['status']): string {
  return s.charAt(0) + s.slice(1).toLowerCase()
}

/** `policy get` without --rev: the effective policy (`sandbox_policy_get_effective_to_writer`). */
export function policyEffective(
  name: string,
  rev: PolicyRevision,
  doc: { policy: Policy; yaml: string },
  format: 'table' | 'json',
  withPolicy: boolean,
  global?: { version: number; hash: string },
): string {
  // With a global policy in force, OpenShell reports it (source global, its version and hash).
  const version = global?.version ?? rev.version
  const hash = global?.hash ?? rev.hash
  if (format === 'json') {
    const o: Record<string, unknown> = {
      scope: 'sandbox',
      sandbox: name,
      version,
      active_version: version,
      hash,
      status: 'effective',
      config_revision: rev.version,
      policy_source: global ? 'global' : 'sandbox',
      ...(global ? { global_policy_version: global.version } : {}),
      // podshell's own: the revision's load state as the gateway reported it
      revision_status: rev.status.toLowerCase(),
      ...(rev.load_error ? { load_error: rev.load_error } : {}),
    }
    if (withPolicy) o.policy = doc.policy
    return JSON.stringify(o, null, 2) + '\n'
  }
  let out = `Version:      ${version}\nHash:         ${hash}\nStatus:       Effective\nSource:       ${global ? 'global' : 'sandbox'}\nConfig rev:   ${rev.version}\n`
  if (global) out += `Global:       ${global.version}\n`
  out += `Revision:     ${statusName(rev.status)}\n`
  if (rev.load_error) out += `Error:        ${rev.load_error.replace(/\n/g, ' ')}\n`
  if (withPolicy) out += `---\n${ensureNl(doc.yaml)}`
  return out
}

/** `policy get --rev N`: one stored revision (`policy_revision_to_json` / the revision table). */
export function policyRevision(
  name: string,
  rev: PolicyRevision,
  active: number | undefined,
  doc: { policy: Policy; yaml: string },
  format: 'table' | 'json',
  withPolicy: boolean,
): string {
  if (format === 'json') {
    const o: Record<string, unknown> = { scope: 'sandbox', sandbox: name, version: rev.version, hash: rev.hash, status: rev.status.toLowerCase(), active_version: active ?? 0 }
    if (rev.created_at_ms > 0) o.created_at_ms = rev.created_at_ms
    if (rev.loaded_at_ms) o.loaded_at_ms = rev.loaded_at_ms
    if (rev.load_error) o.load_error = rev.load_error
    if (withPolicy) o.policy = doc.policy
    return JSON.stringify(o, null, 2) + '\n'
  }
  let out = `Version:      ${rev.version}\nHash:         ${rev.hash}\nStatus:       ${statusName(rev.status)}\nActive:       ${active ?? 0}\n`
  if (rev.created_at_ms > 0) out += `Created:      ${rev.created_at_ms} ms\n`
  if (rev.loaded_at_ms) out += `Loaded:       ${rev.loaded_at_ms} ms\n`
  if (rev.load_error) out += `Error:        ${rev.load_error.replace(/\n/g, ' ')}\n`
  if (withPolicy) out += `---\n${ensureNl(doc.yaml)}`
  return out
}

/** `policy get --global` (`sandbox_policy_get_global`): `Scope: global` block, or its JSON. */
export function policyGlobal(rev: PolicyRevision, doc: { policy: Policy; yaml: string }, format: 'table' | 'json', withPolicy: boolean): string {
  if (format === 'json') {
    const o: Record<string, unknown> = { scope: 'global', version: rev.version, hash: rev.hash, status: rev.status.toLowerCase() }
    if (rev.created_at_ms > 0) o.created_at_ms = rev.created_at_ms
    if (rev.loaded_at_ms) o.loaded_at_ms = rev.loaded_at_ms
    if (rev.load_error) o.load_error = rev.load_error
    if (withPolicy) o.policy = doc.policy
    return JSON.stringify(o, null, 2) + '\n'
  }
  let out = `Scope:        global\nVersion:      ${rev.version}\nHash:         ${rev.hash}\nStatus:       ${statusName(rev.status)}\n`
  if (rev.created_at_ms > 0) out += `Created:      ${rev.created_at_ms} ms\n`
  if (rev.loaded_at_ms) out += `Loaded:       ${rev.loaded_at_ms} ms\n`
  if (withPolicy) out += `---\n${ensureNl(doc.yaml)}`
  return out
}

/** Global policy lines: `policy set --global` (stderr), `policy delete --global` (stdout). */
export const globalPolicySetLine = (hash: string, revision: number) => `${OK} Global policy configured (hash: ${hash.slice(0, 12)}, settings revision: ${revision})`
export const globalPolicyDeletedLine = (revision: number) => `${OK} Deleted global setting policy (revision ${revision})\n`
export const globalPolicyNotFoundLine = '! Global setting policy not found\n'
export const noGlobalPolicyLine = 'No global policy history found'

/** `policy list`: `VERSION HASH STATUS CREATED ERROR` (`print_policy_revision_table`). */
export function policyListTable(revs: readonly PolicyRevision[]): string {
  const row = (a: string, b: string, c: string, d: string, e: string) => `${a.padEnd(8)} ${b.padEnd(14)} ${c.padEnd(12)} ${d.padEnd(24)} ${e}`.trimEnd() + '\n'
  let out = row('VERSION', 'HASH', 'STATUS', 'CREATED', 'ERROR')
  for (const r of revs) {
    const err = r.load_error ? (r.load_error.length > 40 ? r.load_error.slice(0, 40) + '...' : r.load_error).replace(/\n/g, ' ') : ''
    out += row(String(r.version), r.hash.slice(0, 12), statusName(r.status), String(r.created_at_ms), err)
  }
  return out
}

/** `policy set` lines (stderr in OpenShell). */
export const policyUnchangedLine = (version: number, hash: string) => `\u00b7 Policy unchanged (version ${version}, hash: ${hash.slice(0, 12)})`
export const policySubmittedLine = (version: number, hash: string) => `${OK} Policy version ${version} submitted (hash: ${hash.slice(0, 12)})`
export const policyLoadedLine = (version: number, active: number) => `${OK} Policy version ${version} loaded (active version: ${active})`
export const policyFailedLine = (version: number, err: string) => `\u2717 Policy version ${version} failed to load: ${err}`
export const policySupersededLine = (version: number, active: number) => `\u26a0 Policy version ${version} was superseded (active version: ${active})`
export const policyTimeoutLine = (version: number) => `\u2717 Timeout waiting for policy version ${version} to load`

/** `provider get` (`provider_get`): `Provider:` block with `Credential keys:` and `Config keys:`. */
export function providerGetBlock(p: { name: string; type: string; credentials: readonly string[]; config: Record<string, string>; created_at: string; updated_at: string }): string {
  const creds = [...p.credentials].sort()
  const config = Object.keys(p.config)
  return [
    'Provider:',
    '',
    `  Id: ${p.name}`,
    `  Name: ${p.name}`,
    `  Type: ${p.type}`,
    '  Resource version: 0',
    `  Credential keys: ${creds.length ? creds.join(', ') : '<none>'}`,
    `  Config keys: ${config.length ? config.join(', ') : '<none>'}`,
    // podshell's own
    `  Config: ${config.length ? Object.entries(p.config).map(([k, v]) => `${k}=${v}`).join(', ') : '<none>'}`,
    `  Created: ${formatCreated(p.created_at)}`,
    `  Updated: ${formatCreated(p.updated_at)}`,
  ].join('\n') + '\n'
}

/** One row of `provider list-profiles`. */
export interface ProfileRow {
  id: string
  display_name: string
  category: string
  scope: string
  source: string
  endpoints: number
  inference_capable: boolean
}

const CATEGORY_TITLE: Record<string, string> = { inference: 'INFERENCE', agent: 'AGENT', source_control: 'SOURCE CONTROL', messaging: 'MESSAGING', data: 'DATA', knowledge: 'KNOWLEDGE' }
const CATEGORY_ORDER = ['other', 'inference', 'agent', 'source_control', 'messaging', 'data', 'knowledge']
const clipCol = (s: string, max: number) => (s.length > max ? s.slice(0, max - 1) + '\u2026' : s)

/** list-profiles order (`provider_list_profiles`): by category (OpenShell's enum order), then id. */
export function sortProfileRows<T extends { id: string; category?: string }>(rows: readonly T[]): T[] {
  const rank = (c: string | undefined) => Math.max(0, CATEGORY_ORDER.indexOf(c ?? 'other'))
  return [...rows].sort((a, b) => rank(a.category) - rank(b.category) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

/**
 * `provider list-profiles` (`provider_list_profiles`): `Available Provider Profiles:`, then per
 * category a blank line, `  <CATEGORY>`, and `    ID  SCOPE  SOURCE  NAME  ENDPOINTS` rows whose
 * ENDPOINTS is the number of endpoints (plus ` inference` for inference-capable profiles).
 */
export function profilesTable(rows: readonly ProfileRow[]): string {
  if (rows.length === 0) return 'No provider profiles found.\n'
  const sorted = sortProfileRows(rows)
  const w = (f: (r: ProfileRow) => string, max: number, min: number) => Math.max(min, ...sorted.map(r => Math.min(max, f(r).length)))
  const idW = w(r => r.id, 32, 2)
  const scopeW = w(r => r.scope, Infinity, 5)
  const srcW = w(r => r.source, 24, 6)
  const nameW = w(r => r.display_name, 40, 4)
  const line = (id: string, scope: string, src: string, name: string, last: string) =>
    `    ${clipCol(id, 32).padEnd(idW)}  ${scope.padEnd(scopeW)}  ${clipCol(src, 24).padEnd(srcW)}  ${clipCol(name, 40).padEnd(nameW)}  ${last}`.trimEnd() + '\n'
  let out = 'Available Provider Profiles:\n'
  let current: string | undefined
  for (const r of sorted) {
    const cat = CATEGORY_TITLE[r.category] ?? 'OTHER'
    if (cat !== current) {
      current = cat
      out += `\n  ${cat}\n` + line('ID', 'SCOPE', 'SOURCE', 'NAME', 'ENDPOINTS')
    }
    out += line(r.id, r.scope, r.source, r.display_name, `${String(r.endpoints).padEnd(2)}${r.inference_capable ? ' inference' : ''}`)
  }
  return out
}

/** `provider get -o json` (`provider_to_json`) plus podshell's fields. */
export function providerJson(
  p: { name: string; type: string; credentials: readonly string[]; config: Record<string, string>; created_at: string; updated_at: string },
  profileEndpoints: readonly string[] = [],
): Record<string, unknown> {
  const o: Record<string, unknown> = { id: p.name, name: p.name, workspace: WORKSPACE, type: p.type, credential_keys: [...p.credentials].sort() }
  if (Object.keys(p.config).length) o.config_keys = Object.keys(p.config)
  o.created_at = formatCreated(p.created_at)
  // podshell's own (names and non-secret config; there is no value to print)
  o.credentials = [...p.credentials]
  o.config = { ...p.config }
  o.updated_at = p.updated_at
  o.created_at_iso = p.created_at
  // Issue 12: per credential, how sandboxes get it and where the gateway substitutes it.
  const hosts = providerHosts(p.type, p.config)
  o.credential_bindings = [...p.credentials].map(variable => ({
    variable,
    mode: 'placeholder',
    binding: {
      hosts: hosts.map(h => `${h}:443`),
      ...(profileEndpoints.length ? { profile_endpoints: [...profileEndpoints] } : {}),
      policy_endpoints: `endpoints with credential_binding: { provider: ${p.name} }`,
    },
    env_mode: 'sandboxes created with --credential-mode env get the real value instead',
  }))
  return o
}

export interface StatusFacts {
  gateway: string
  server: string
  connected: boolean
  version?: string
  error?: string
  /** podshell's own */
  podman: { version: string; runtime: string; rootless_limits: boolean } | { error: string }
  container: string
  sandboxes?: number
  data_dir: string
}

/** `status` (`gateway_status`): `Server Status`, `Gateway:`, `Server:`, `Status: Connected`, …; JSON keys as OpenShell's. */
export function statusBlock(f: StatusFacts, format: 'table' | 'json' | 'yaml'): string | Record<string, unknown> {
  const auth = f.connected ? { status: 'not_required', mode: 'gateway' } : { status: 'unverified', reason: 'gateway unreachable' }
  if (format !== 'table') {
    const o: Record<string, unknown> = { gateway: f.gateway, server: f.server, status: f.connected ? 'connected' : 'disconnected', authentication: auth }
    if (f.version) o.version = f.version
    if (f.error) o.error = f.error
    o.podman = f.podman
    o.container = f.container
    if (f.sandboxes !== undefined) o.sandboxes = f.sandboxes
    o.data_dir = f.data_dir
    return o
  }
  const lines = ['Server Status', '', `  Gateway: ${f.gateway}`, `  Server: ${f.server}`]
  if (f.connected) {
    lines.push('  Status: Connected', '  Authentication: Not required (gateway)')
    if (f.version) lines.push(`  Version: ${f.version}`)
  } else {
    lines.push('  Status: Disconnected')
    if (f.error) lines.push(`  Error: ${f.error}`)
    lines.push('  Authentication: Unverified (gateway unreachable)')
  }
  lines.push(`  Container: ${f.container}`)
  if ('error' in f.podman) lines.push(`  Podman: ${f.podman.error}`)
  else lines.push(`  Podman: ${f.podman.version} (runtime ${f.podman.runtime}, rootless)`, `  Resource limits: ${f.podman.rootless_limits ? 'enforced (cgroup v2)' : 'not available (cgroup v1/hybrid)'}`)
  if (f.sandboxes !== undefined) lines.push(`  Sandboxes: ${f.sandboxes}`)
  lines.push(`  Data dir: ${f.data_dir}`)
  return lines.join('\n') + '\n'
}

function ensureNl(s: string): string {
  return s.endsWith('\n') ? s : s + '\n'
}
