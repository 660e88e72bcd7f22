import { PodshellError } from '../errors.js'
import { endpointPorts, formatKeyPath, type Binary, type Endpoint, type L7AllowRule, type L7Rule, type NetworkPolicy, type Policy } from './schema.js'
import { validatePolicy } from './parse.js'
import { generatedRuleName, invalid, parseEndpointSpec, parseHostPortSpec, parseRuleSpec } from './update-spec.js'

export { generatedRuleName, parseEndpointSpec, parseHostPortSpec, parseRuleSpec, parseHost, parsePort } from './update-spec.js'
import { canonicalJson } from '../util/canonical-json.js'

/**
 * `policy update`: incremental changes to the policy in force, with OpenShell's semantics
 * (crates/openshell-cli/src/policy_update.rs builds the operations, crates/openshell-policy/src/
 * merge.rs applies them). The operations run in OpenShell's order: add endpoints, remove
 * endpoints, remove rules, add allow rules, add deny rules. All of them apply, or none: the input
 * policy is never modified, and the result is validated like any policy document.
 *
 * The security property the merge protects: a network rule authorizes every (binary, endpoint)
 * pair of its lists, so adding a binary or an endpoint to an existing rule may not silently grant
 * the rule's other binaries or endpoints something the operation did not declare. When folding an
 * operation into an overlapping rule would do that, the operation stays on its own rule instead.
 */

export interface PolicyUpdateOps {
  /** `host:port[:access[:protocol[:enforcement[:options]]]]`, options `allowed-ip=CIDR`, … */
  addEndpoints?: readonly string[]
  /** `host:port` */
  removeEndpoints?: readonly string[]
  /** `host:port:METHOD:path_glob` */
  addAllow?: readonly string[]
  /** `host:port:METHOD:path_glob` */
  addDeny?: readonly string[]
  /** network_policies keys */
  removeRules?: readonly string[]
  /** binaries for the added endpoints (podshell does not enforce them) */
  binaries?: readonly string[]
  /** the network_policies key the added endpoint goes to (default allow_<host>_<port>) */
  ruleName?: string | undefined
}

const conflict = (message: string) => new PodshellError(message, { exitCode: 1, code: 'POLICY_UPDATE_CONFLICT' })

// ---------------------------------------------------------------------------------------------
// Endpoint helpers
// ---------------------------------------------------------------------------------------------


const same = (a: unknown, b: unknown) => canonicalJson(a) === canonicalJson(b)
const containsAll = <T>(loaded: readonly T[] | undefined, proposed: readonly T[] | undefined) =>
  (proposed ?? []).every(p => (loaded ?? []).some(l => same(l, p)))
const hostEq = (a: string | undefined, b: string | undefined) => (a ?? '').toLowerCase() === (b ?? '').toLowerCase()
const pathOf = (e: Endpoint) => e.path ?? ''
const unsetOrEqual = (proposed: unknown, loaded: unknown, isUnset: (v: unknown) => boolean) => isUnset(proposed) || same(proposed, loaded)
const emptyStr = (v: unknown) => v === undefined || v === ''
const emptyMap = (v: unknown) => v === undefined || Object.keys(v as object).length === 0
const zero = (v: unknown) => v === undefined || v === 0

function setPorts(ep: Endpoint, ports: number[]): void {
  const sorted = [...new Set(ports)].sort((a, b) => a - b)
  // Compact form, as OpenShell prints it: one port as `port`, several as `ports`.
  if (sorted.length > 1) {
    ep.ports = sorted
    delete ep.port
  } else {
    if (sorted.length === 1) ep.port = sorted[0]!
    else delete ep.port
    delete ep.ports
  }
}

function dedupBy<T>(items: readonly T[]): T[] {
  const out: T[] = []
  for (const i of items) if (!out.some(o => same(o, i))) out.push(i)
  return out
}

function normalizeEndpoint(ep: Endpoint): void {
  setPorts(ep, endpointPorts(ep))
  if (ep.allowed_ips) ep.allowed_ips = [...new Set(ep.allowed_ips)]
  if (ep.rules) ep.rules = dedupBy(ep.rules)
  if (ep.deny_rules) ep.deny_rules = dedupBy(ep.deny_rules)
}

function endpointsOverlap(a: Endpoint, b: Endpoint): boolean {
  if (!hostEq(a.host, b.host) || pathOf(a) !== pathOf(b)) return false
  const bp = endpointPorts(b)
  return endpointPorts(a).some(p => bp.includes(p))
}

const effectiveTls = (t: string | undefined) => (t === undefined || t === 'terminate' || t === 'passthrough' ? 'auto' : t)
const effectiveEnforcement = (e: string | undefined) => e ?? 'audit'
const DEFAULT_JSON_RPC_BODY = 65536

function mcpContract(ep: Endpoint): string | undefined {
  if (ep.protocol !== 'mcp') return undefined
  return canonicalJson({
    strict_tool_names: ep.mcp?.strict_tool_names ?? true,
    allow_all_known_mcp_methods: ep.mcp?.allow_all_known_mcp_methods ?? false,
    max_body_bytes: ep.mcp?.max_body_bytes || DEFAULT_JSON_RPC_BODY,
  })
}
const usesMcp = (ep: Endpoint) => ep.protocol === 'mcp' || ep.mcp !== undefined
function mcpContractsMatch(a: Endpoint, b: Endpoint): boolean {
  const x = mcpContract(a)
  const y = mcpContract(b)
  if (x === undefined && y === undefined) return !usesMcp(a) && !usesMcp(b)
  return x !== undefined && x === y
}
const describeMcp = (ep: Endpoint) => mcpContract(ep) ? `mcp${mcpContract(ep)}` : `non-mcp(protocol='${ep.protocol ?? ''}')`

function protocolsMatch(a: string | undefined, b: string | undefined): boolean {
  if (a === 'mcp' || b === 'mcp') return a === 'mcp' && b === 'mcp'
  return (a ?? '') === (b ?? '')
}

/** Whether `loaded` authorizes everything `proposed` asks for (ports aside). */
function attributesCover(loaded: Endpoint, proposed: Endpoint): boolean {
  if (!hostEq(loaded.host, proposed.host) || pathOf(loaded) !== pathOf(proposed)) return false
  if (proposed.protocol !== undefined && !protocolsMatch(loaded.protocol, proposed.protocol)) return false
  if (proposed.tls !== undefined && effectiveTls(loaded.tls) !== effectiveTls(proposed.tls)) return false
  if (proposed.enforcement !== undefined && effectiveEnforcement(loaded.enforcement) !== effectiveEnforcement(proposed.enforcement)) return false
  if (proposed.access !== undefined && loaded.access !== proposed.access) return false
  if (!mcpContractsMatch(loaded, proposed)) return false
  const flag = (l: boolean | undefined, p: boolean | undefined) => !!l || !p
  return (
    containsAll(loaded.rules, proposed.rules) &&
    containsAll(loaded.deny_rules, proposed.deny_rules) &&
    containsAll(loaded.allowed_ips, proposed.allowed_ips) &&
    flag(loaded.allow_encoded_slash, proposed.allow_encoded_slash) &&
    flag(loaded.websocket_credential_rewrite, proposed.websocket_credential_rewrite) &&
    flag(loaded.request_body_credential_rewrite, proposed.request_body_credential_rewrite) &&
    unsetOrEqual(proposed.persisted_queries, loaded.persisted_queries, emptyStr) &&
    unsetOrEqual(proposed.graphql_persisted_queries, loaded.graphql_persisted_queries, emptyMap) &&
    unsetOrEqual(proposed.graphql_max_body_bytes, loaded.graphql_max_body_bytes, zero) &&
    unsetOrEqual(proposed.credential_signing, loaded.credential_signing, emptyStr) &&
    unsetOrEqual(proposed.signing_service, loaded.signing_service, emptyStr) &&
    unsetOrEqual(proposed.signing_region, loaded.signing_region, emptyStr) &&
    (usesMcp(loaded) || unsetOrEqual(proposed.json_rpc?.max_body_bytes, loaded.json_rpc?.max_body_bytes, zero))
  )
}

function coversPort(loaded: Endpoint, proposed: Endpoint, port: number | undefined): boolean {
  if (port !== undefined && !endpointPorts(loaded).includes(port)) return false
  return attributesCover(loaded, proposed)
}

/** A declaration leaves fields the merge never widens unset: it has no opinion on them. */
function adoptUnsetRetained(declared: Endpoint, merged: Endpoint): Endpoint {
  const a: Endpoint = structuredClone(declared)
  if (a.protocol === undefined && merged.protocol !== undefined) a.protocol = merged.protocol
  if (a.tls === undefined && merged.tls !== undefined) a.tls = merged.tls
  if (a.enforcement === undefined && merged.enforcement !== undefined) a.enforcement = merged.enforcement
  if (a.access === undefined && a.rules === undefined && merged.access !== undefined) a.access = merged.access
  if (a.persisted_queries === undefined && merged.persisted_queries !== undefined) a.persisted_queries = merged.persisted_queries
  if (emptyMap(a.graphql_persisted_queries) && merged.graphql_persisted_queries !== undefined) a.graphql_persisted_queries = merged.graphql_persisted_queries
  if (zero(a.graphql_max_body_bytes) && merged.graphql_max_body_bytes !== undefined) a.graphql_max_body_bytes = merged.graphql_max_body_bytes
  if (a.credential_signing === undefined && merged.credential_signing !== undefined) a.credential_signing = merged.credential_signing
  if (emptyStr(a.signing_service) && merged.signing_service !== undefined) a.signing_service = merged.signing_service
  if (emptyStr(a.signing_region) && merged.signing_region !== undefined) a.signing_region = merged.signing_region
  if (zero(a.json_rpc?.max_body_bytes) && merged.json_rpc !== undefined) a.json_rpc = merged.json_rpc
  return a
}

const ACCESS_METHODS: Record<string, Record<string, string[]>> = {
  websocket: { 'read-only': ['GET'], 'read-write': ['GET', 'WEBSOCKET_TEXT'], full: ['*'] },
  other: { 'read-only': ['GET', 'HEAD', 'OPTIONS'], 'read-write': ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH'], full: ['*'] },
}

function expandAccessPreset(ep: Endpoint, host: string, port: number, warnings: string[]): void {
  if (ep.access === undefined) return
  const methods = ACCESS_METHODS[ep.protocol === 'websocket' ? 'websocket' : 'other']![ep.access]!
  const expanded: L7AllowRule[] = methods.map(method => ({ allow: { method, path: '**' } }))
  const access = ep.access
  delete ep.access
  ep.rules = dedupBy([...(ep.rules ?? []), ...expanded])
  warnings.push(`expanded access preset '${access}' to explicit rules for endpoint ${host}:${port}`)
}

// ---------------------------------------------------------------------------------------------
// Merge
// ---------------------------------------------------------------------------------------------

/** Raised when folding into an overlapping rule would widen what some binary may reach. */
class InheritanceConflict extends Error {}

function retainString(ep: Endpoint, field: 'protocol' | 'enforcement' | 'tls', incoming: string | undefined, label: string, where: string, warnings: string[]): void {
  if (incoming === undefined) return
  const existing = ep[field]
  if (existing === undefined) (ep as Record<string, unknown>)[field] = incoming
  else if (existing !== incoming) warnings.push(`endpoint ${where} keeps existing ${label} '${existing}' and ignores incoming '${incoming}'`)
}

function mergeEndpoint(existing: Endpoint, incoming: Endpoint, warnings: string[]): void {
  const host = existing.host || incoming.host || ''
  const ex = endpointPorts(existing)
  const inc = endpointPorts(incoming)
  const port = ex.find(p => inc.includes(p)) ?? inc[0] ?? 0
  const where = `${host}:${port}`
  const promotesToMcp = existing.protocol === undefined && existing.mcp === undefined && existing.json_rpc === undefined && mcpContract(incoming) !== undefined
  if (!promotesToMcp && !mcpContractsMatch(existing, incoming)) {
    throw conflict(`cannot combine MCP contracts at ${where}: existing ${describeMcp(existing)}, incoming ${describeMcp(incoming)}`)
  }
  if (!existing.host && incoming.host) existing.host = incoming.host
  if (!existing.path && incoming.path) existing.path = incoming.path
  setPorts(existing, [...ex, ...inc])
  retainString(existing, 'protocol', incoming.protocol, 'protocol', where, warnings)
  if (promotesToMcp) {
    if (incoming.mcp) existing.mcp = structuredClone(incoming.mcp)
    if (incoming.json_rpc) existing.json_rpc = structuredClone(incoming.json_rpc)
  }
  retainString(existing, 'enforcement', incoming.enforcement, 'enforcement', where, warnings)
  retainString(existing, 'tls', incoming.tls, 'tls mode', where, warnings)

  if ((incoming.rules?.length ?? 0) > 0) {
    expandAccessPreset(existing, host, port, warnings)
    existing.rules = dedupBy([...(existing.rules ?? []), ...incoming.rules!])
    if (incoming.access !== undefined) warnings.push(`endpoint ${where} already uses explicit rules; incoming access preset '${incoming.access}' was ignored`)
  } else if (incoming.access !== undefined) {
    if ((existing.rules?.length ?? 0) > 0) warnings.push(`endpoint ${where} already uses explicit rules; incoming access preset '${incoming.access}' was ignored`)
    else if (existing.access === undefined) existing.access = incoming.access
    else if (existing.access !== incoming.access) warnings.push(`endpoint ${where} keeps existing access preset '${existing.access}' and ignores incoming '${incoming.access}'`)
  }
  if (incoming.deny_rules?.length) existing.deny_rules = dedupBy([...(existing.deny_rules ?? []), ...incoming.deny_rules])
  if (incoming.allowed_ips?.length) existing.allowed_ips = [...new Set([...(existing.allowed_ips ?? []), ...incoming.allowed_ips])]
  for (const f of ['allow_encoded_slash', 'websocket_credential_rewrite', 'request_body_credential_rewrite', 'allow_uninspected_credentials'] as const) {
    if (incoming[f]) existing[f] = true
  }
  normalizeEndpoint(existing)
}

function checkInheritance(existingRule: NetworkPolicy, incoming: NetworkPolicy, merged: Endpoint[], ruleName: string): void {
  const exBins = existingRule.binaries ?? []
  const inBins = incoming.binaries ?? []
  const exPaths = new Set(exBins.map(b => b.path))
  // An empty binary list is "any binary" in OpenShell's merge semantics.
  const newScope =
    exBins.length === 0 ? undefined : inBins.length === 0 ? 'any binary' : inBins.filter(b => !exPaths.has(b.path)).map(b => `binary '${b.path}'`)[0]
  const undeclared =
    inBins.length === 0 ? [] : exBins.length === 0 ? ['the existing any-binary scope'] : exBins.filter(e => !inBins.some(i => i.path === e.path)).map(e => e.path)

  for (const ep of merged) {
    const ports = endpointPorts(ep)
    const units: (number | undefined)[] = ports.length > 0 ? ports : [undefined]
    if (newScope) {
      const decls = (incoming.endpoints ?? []).map(d => adoptUnsetRetained(d, ep))
      const missing = units.filter(u => !decls.some(d => coversPort(d, ep, u)))
      if (missing.length > 0) {
        throw new InheritanceConflict(`add-rule '${ruleName}' would grant ${newScope} undeclared authorization for ${ep.host ?? ''} on ports [${missing.join(', ')}]`)
      }
    }
    const changed = units.filter(u => !(existingRule.endpoints ?? []).some(e => coversPort(e, ep, u) && coversPort(ep, e, u)))
    const unnamed = changed.filter(
      u => !(incoming.endpoints ?? []).some(d => hostEq(d.host, ep.host) && pathOf(d) === pathOf(ep) && (u === undefined || endpointPorts(d).includes(u))),
    )
    if (unnamed.length > 0) {
      throw new InheritanceConflict(`add-rule '${ruleName}' would change authorization for ${ep.host ?? ''} on undeclared ports [${unnamed.join(', ')}]; declare every port of the endpoint it modifies`)
    }
    if (changed.length > 0 && undeclared.length > 0) {
      throw new InheritanceConflict(
        `add-rule '${ruleName}' would grant existing binaries new or changed authorization for ${ep.host ?? ''} on ports [${changed.join(', ')}]; also declare ${undeclared.join(', ')}`,
      )
    }
  }
}

function mergeRules(existing: NetworkPolicy, incoming: NetworkPolicy, ruleName: string, targetName: string, warnings: string[]): void {
  const merged = structuredClone(existing.endpoints ?? [])
  const endpointWarnings: string[] = []
  for (const raw of incoming.endpoints ?? []) {
    const inc = structuredClone(raw)
    normalizeEndpoint(inc)
    const match = merged.find(e => endpointsOverlap(e, inc))
    if (match) mergeEndpoint(match, inc, endpointWarnings)
    else merged.push(inc)
  }
  checkInheritance(existing, incoming, merged, ruleName)
  existing.endpoints = merged
  const exBins = existing.binaries ?? []
  const inBins = incoming.binaries ?? []
  if (exBins.length === 0) {
    if (inBins.length > 0) {
      warnings.push(`rule '${targetName}' already authorizes any binary; kept that scope instead of narrowing it to ${inBins.map(b => b.path).join(', ')}`)
    }
  } else if (inBins.length === 0) {
    delete existing.binaries
  } else {
    const seen = new Set(exBins.map(b => b.path))
    existing.binaries = [...exBins, ...inBins.filter(b => !seen.has(b.path) && seen.add(b.path))]
  }
  warnings.push(...endpointWarnings)
}

const isProviderRule = (k: string) => k.startsWith('_provider_')
const sortedKeys = (p: Policy) => Object.keys(p.network_policies ?? {}).sort()

function addRule(p: Policy, ruleName: string, incoming: NetworkPolicy, changes: string[], warnings: string[]): void {
  const rules = (p.network_policies ??= {})
  const inc = structuredClone(incoming)
  for (const e of inc.endpoints ?? []) normalizeEndpoint(e)
  if (inc.binaries) inc.binaries = inc.binaries.filter((b, i, a) => a.findIndex(x => x.path === b.path) === i)
  const ep = inc.endpoints![0]!
  const what = `${ep.host}:${endpointPorts(ep).join(',')}`
  const at = formatKeyPath(['network_policies', ruleName])

  if (Object.prototype.hasOwnProperty.call(rules, ruleName)) {
    const target = structuredClone(rules[ruleName]!)
    try {
      mergeRules(target, inc, ruleName, ruleName, warnings)
    } catch (e) {
      if (e instanceof InheritanceConflict) throw conflict(e.message)
      throw e
    }
    rules[ruleName] = target
    changes.push(`added endpoint ${what} to ${at}`)
    return
  }
  const overlapKey = sortedKeys(p).find(k => !isProviderRule(k) && (rules[k]!.endpoints ?? []).some(e => (inc.endpoints ?? []).some(i => endpointsOverlap(e, i))))
  if (overlapKey !== undefined) {
    const candidate = structuredClone(rules[overlapKey]!)
    const candidateWarnings: string[] = []
    try {
      mergeRules(candidate, inc, ruleName, overlapKey, candidateWarnings)
      rules[overlapKey] = candidate
      warnings.push(...candidateWarnings)
      changes.push(`merged endpoint ${what} into ${formatKeyPath(['network_policies', overlapKey])} (it already covers ${what})`)
      return
    } catch (e) {
      if (!(e instanceof InheritanceConflict)) throw e
      warnings.push(`kept add-rule '${ruleName}' on its own rule instead of folding it into overlapping rule '${overlapKey}': ${e.message}`)
    }
  }
  if (inc.name === undefined) inc.name = ruleName
  rules[ruleName] = inc
  changes.push(`added endpoint ${what} as ${at}`)
}

function removeEndpoint(p: Policy, host: string, port: number, changes: string[]): void {
  const rules = p.network_policies ?? {}
  for (const key of sortedKeys(p)) {
    const rule = rules[key]!
    let touched = false
    const kept: Endpoint[] = []
    for (const ep of rule.endpoints ?? []) {
      const ports = endpointPorts(ep)
      if (!hostEq(ep.host, host) || !ports.includes(port)) {
        kept.push(ep)
        continue
      }
      touched = true
      const left = ports.filter(x => x !== port)
      if (left.length > 0) {
        setPorts(ep, left)
        kept.push(ep)
        changes.push(`removed port ${port} from ${ep.host}:${ports.join(',')} in ${formatKeyPath(['network_policies', key])}`)
      } else {
        changes.push(`removed endpoint ${ep.host}:${port} from ${formatKeyPath(['network_policies', key])}`)
      }
    }
    if (!touched) continue
    rule.endpoints = kept
    if (kept.length === 0) {
      // A rule with no endpoints left authorizes nothing; OpenShell deletes it.
      delete rules[key]
      changes.push(`removed ${formatKeyPath(['network_policies', key])} (no endpoints left)`)
    }
  }
}

function endpointTargets(p: Policy, host: string, port: number): { key: string; ep: Endpoint }[] {
  const out: { key: string; ep: Endpoint }[] = []
  for (const key of sortedKeys(p)) {
    if (isProviderRule(key)) continue
    for (const ep of p.network_policies![key]!.endpoints ?? []) {
      if (hostEq(ep.host, host) && endpointPorts(ep).includes(port)) out.push({ key, ep })
    }
  }
  return out
}

/** Finds the one L7 (rest/websocket) endpoint `host:port` names; fails closed when ambiguous. */
function l7Target(p: Policy, host: string, port: number): { key: string; ep: Endpoint } {
  const targets = endpointTargets(p, host, port)
  if (targets.length > 1) {
    const names = targets.map(t => (t.ep.path ? `${t.key} (path '${t.ep.path}')` : t.key)).sort()
    throw conflict(
      `endpoint ${host}:${port} resolves to ${names.join(', ')}; this operation selects its target by host and port alone, so it cannot say which binary scope and L7 surface to widen. Replace the policy with the full YAML instead`,
    )
  }
  const t = targets[0]
  if (!t) throw conflict(`endpoint ${host}:${port} was not found in the current policy`)
  if (t.ep.protocol === undefined) throw conflict(`endpoint ${host}:${port} has no L7 inspection configured (protocol is empty)`)
  if (t.ep.protocol !== 'rest' && t.ep.protocol !== 'websocket') {
    throw conflict(`endpoint ${host}:${port} uses unsupported protocol '${t.ep.protocol}'; this operation currently supports only protocol 'rest' or 'websocket'`)
  }
  return t
}

function groupRules(flag: string, specs: readonly string[]): Map<string, { host: string; port: number; rules: L7Rule[] }> {
  const parsed = specs.map(s => parseRuleSpec(flag, s))
  // OpenShell groups by (host, port) in sorted order.
  parsed.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : a.port - b.port))
  const groups = new Map<string, { host: string; port: number; rules: L7Rule[] }>()
  for (const r of parsed) {
    const key = `${r.host}\0${r.port}`
    const g = groups.get(key) ?? { host: r.host, port: r.port, rules: [] }
    g.rules.push({ method: r.method, path: r.path })
    groups.set(key, g)
  }
  return groups
}

/** MCP endpoints cannot share a host and port with a differently inspected endpoint. */
function inspectionConflicts(p: Policy): Map<string, string[]> {
  const found = new Map<string, { mcp: string | undefined; desc: string }[]>()
  for (const rule of Object.values(p.network_policies ?? {})) {
    for (const ep of rule.endpoints ?? []) {
      if (ep.protocol === undefined) continue
      for (const port of endpointPorts(ep)) {
        const k = `${(ep.host ?? '').toLowerCase()}:${port}`
        const list = found.get(k) ?? []
        list.push({ mcp: mcpContract(ep), desc: describeMcp(ep) })
        found.set(k, list)
      }
    }
  }
  const out = new Map<string, string[]>()
  for (const [k, list] of found) {
    const mcps = list.filter(x => x.mcp !== undefined)
    if (mcps.length === 0) continue
    if (list.some(x => x.mcp === undefined) || mcps.some(x => x.mcp !== mcps[0]!.mcp)) out.set(k, [...new Set(list.map(x => x.desc))].sort())
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

/**
 * Applies `policy update` operations to `p` and returns the new policy and what changed (one line
 * per change, then merge notes prefixed "note:"). An unchanged policy returns no changes. The
 * result is validated; an invalid result throws PolicyError and nothing is applied.
 */
export function applyPolicyUpdate(p: Policy, ops: PolicyUpdateOps): { policy: Policy; changes: string[] } {
  const addEndpoints = ops.addEndpoints ?? []
  const binaries = ops.binaries ?? []
  if (binaries.some(b => b.trim() === '')) throw invalid('--binary values must not be empty')
  if (binaries.length > 0 && addEndpoints.length === 0) throw invalid('--binary can only be used with --add-endpoint')
  if (ops.ruleName !== undefined && addEndpoints.length === 0) throw invalid('--rule-name can only be used with --add-endpoint')
  if (ops.ruleName !== undefined && addEndpoints.length > 1) throw invalid('--rule-name is only supported when exactly one --add-endpoint is provided')
  const removeRules = (ops.removeRules ?? []).map(r => {
    if (r.trim() === '') throw invalid('--remove-rule values must not be empty')
    return r.trim()
  })
  // Parse everything first: a bad flag fails before anything is computed.
  const endpoints = addEndpoints.map(parseEndpointSpec)
  const removals = (ops.removeEndpoints ?? []).map(s => parseHostPortSpec(s))
  const allows = groupRules('--add-allow', ops.addAllow ?? [])
  const denies = groupRules('--add-deny', ops.addDeny ?? [])
  if (endpoints.length + removals.length + removeRules.length + allows.size + denies.size === 0) {
    throw invalid('policy update requires at least one operation flag')
  }
  const bins: Binary[] = [...new Set(binaries.map(b => b.trim()))].map(path => ({ path }))

  const next: Policy = structuredClone(p)
  const before = inspectionConflicts(next)
  const changes: string[] = []
  const warnings: string[] = []

  for (const ep of endpoints) {
    const ruleName = ops.ruleName?.trim() || generatedRuleName(ep.host!, ep.port!)
    const rule: NetworkPolicy = { name: ruleName, endpoints: [ep] }
    if (bins.length > 0) rule.binaries = structuredClone(bins)
    addRule(next, ruleName, rule, changes, warnings)
  }
  for (const r of removals) removeEndpoint(next, r.host, r.port, changes)
  for (const name of removeRules) {
    if (next.network_policies && Object.prototype.hasOwnProperty.call(next.network_policies, name)) {
      delete next.network_policies[name]
      changes.push(`removed ${formatKeyPath(['network_policies', name])}`)
    }
  }
  for (const g of allows.values()) {
    const t = l7Target(next, g.host, g.port)
    expandAccessPreset(t.ep, g.host, g.port, warnings)
    const before = t.ep.rules?.length ?? 0
    t.ep.rules = dedupBy([...(t.ep.rules ?? []), ...g.rules.map(r => ({ allow: r }))])
    if (t.ep.rules.length > before) changes.push(`added ${t.ep.rules.length - before} allow rule(s) to ${g.host}:${g.port} in ${formatKeyPath(['network_policies', t.key])}`)
  }
  for (const g of denies.values()) {
    const t = l7Target(next, g.host, g.port)
    if (t.ep.access === undefined && (t.ep.rules?.length ?? 0) === 0) {
      throw conflict(`endpoint ${g.host}:${g.port} has no base allow set; configure access or explicit allow rules before adding deny rules`)
    }
    const before = t.ep.deny_rules?.length ?? 0
    t.ep.deny_rules = dedupBy([...(t.ep.deny_rules ?? []), ...g.rules])
    if (t.ep.deny_rules.length > before) changes.push(`added ${t.ep.deny_rules.length - before} deny rule(s) to ${g.host}:${g.port} in ${formatKeyPath(['network_policies', t.key])}`)
  }
  for (const [k, contracts] of inspectionConflicts(next)) {
    if (!before.has(k)) {
      throw conflict(`${k} would carry more than one L7 inspection contract (${contracts.join(', ')}); the sandbox resolves one contract per host and port`)
    }
  }
  if (next.network_policies && Object.keys(next.network_policies).length === 0 && p.network_policies === undefined) delete next.network_policies

  if (same(next, p)) return { policy: p, changes: [] }
  const { policy } = validatePolicy(next, 'policy update result')
  return { policy, changes: [...changes, ...warnings.map(w => `note: ${w}`)] }
}
