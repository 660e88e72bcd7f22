import { isIP } from 'node:net'
import { HostPattern, hostPatternProblem } from '../rules/host-pattern.js'
import { compileGlob } from '../rules/glob.js'
import { checkAllowedIpsEntry } from '../rules/ip.js'
import { MAX_PATH_BYTES, MAX_MIDDLEWARE_SELECTOR_PATTERNS, MIN_SANDBOX_ID, MAX_SANDBOX_ID } from './limits.js'
import type { Endpoint, L7Rule, NetworkMiddleware } from './schema.js'

/** Semantic checks of an OpenShell policy (validate_sandbox_policy, validate_l7_policies), run by the schema in ./schema.ts. */
export type AddIssue = (path: PropertyKey[], message: string) => void

// ---------------------------------------------------------------------------------------------
// Host, glob and IP helpers (shared by the schema and by the gateway-facing code)
// ---------------------------------------------------------------------------------------------

/** Effective ports of an endpoint: `ports` wins when non-empty, else `port` when non-zero. */
export function endpointPorts(ep: { port?: number | undefined; ports?: readonly number[] | undefined }): number[] {
  if (ep.ports && ep.ports.length > 0) return [...ep.ports]
  return ep.port ? [ep.port] : []
}

/** Shape of a wildcard host, as OpenShell checks it. Returns a reason, or undefined when fine. */
export function hostWildcardProblem(host: string): string | undefined {
  if (!host.includes('*')) return undefined
  if (host === '*' || host === '**') {
    return `host wildcard '${host}' matches all hosts; use specific patterns like '*.example.com'`
  }
  const labels = host.split('.')
  const first = labels[0] ?? ''
  const badRecursive = (first.includes('**') && first !== '**') || labels.slice(1).some(l => l.includes('**'))
  if (badRecursive) {
    return `invalid host wildcard '${host}': recursive '**' is only allowed as the entire first DNS label`
  }
  if (labels.slice(1).some(l => l.includes('*') && l !== '*')) {
    return `invalid host wildcard '${host}': a wildcard outside the first DNS label must be the entire label '*'`
  }
  // OpenShell rejects TLD and single-label wildcards: the policy engine accepts them but the proxy
  // never matches them (#787), so they would silently allow nothing, or too much elsewhere.
  if (labels.length <= 2) {
    return `TLD wildcard '${host}' is not allowed; use subdomain wildcards like '*.example.com' instead`
  }
  return undefined
}

/** `protocol: tcp` needs a host that policy DNS can answer for. Returns a reason, or undefined. */
function tcpDnsHostProblem(host: string): string | undefined {
  if (host.trim() !== host) return 'leading or trailing whitespace is not allowed'
  if (host.endsWith('.')) return 'omit the trailing DNS root dot'
  const p = hostPatternProblem(host)
  if (p) return p
  const representative = host.split('.').map(l => (l === '**' ? 'x' : l.replaceAll('*', 'x')))
  for (const l of representative) {
    if (Buffer.byteLength(l) > 63) return `selector cannot represent a valid DNS name: label '${l.slice(0, 20)}…' is longer than 63 bytes`
    if (!/^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(l)) return `selector cannot represent a valid DNS name: malformed label '${l}'`
  }
  if (Buffer.byteLength(representative.join('.')) + 1 > 255) return 'selector cannot represent a valid DNS name: longer than 255 bytes'
  return undefined
}

/** Middleware endpoint selector: includes, then exclusions win. */
class HostSelector {
  constructor(
    readonly includes: HostPattern[],
    readonly excludes: HostPattern[],
  ) {}

  /** Conservative: whether the selector can select some host admitted by `candidate`. */
  mayMatchPattern(candidate: HostPattern): boolean {
    return this.includes.some(include => {
      if (!include.overlaps(candidate)) return false
      const concrete = candidate.literal() ?? include.literal()
      const excluded =
        concrete !== undefined
          ? this.excludes.some(e => e.matches(concrete))
          : this.excludes.some(e => e.isUniversal() || e.source === include.source || e.source === candidate.source)
      return !excluded
    })
  }
}

// ---------------------------------------------------------------------------------------------
// Semantic checks (OpenShell's validate_sandbox_policy + the supervisor's validate_l7_policies)
// ---------------------------------------------------------------------------------------------

export function checkProcessIdentity(value: string | undefined, add: (m: string) => void, field: string) {
  if (value === undefined || value === '') return
  if (value === 'sandbox') return
  const ok = /^\+?\d{1,10}$/.test(value) && Number(value) >= MIN_SANDBOX_ID && Number(value) <= MAX_SANDBOX_ID
  if (!ok) {
    add(
      `${field} must be 'sandbox' or a numeric UID/GID in range [${MIN_SANDBOX_ID}, ${MAX_SANDBOX_ID}], got '${value.length > 40 ? value.slice(0, 40) + '…' : value}'`,
    )
  }
}

export function checkFsPath(p: string, add: (m: string) => void) {
  const bytes = Buffer.byteLength(p)
  if (bytes > MAX_PATH_BYTES) {
    add(`path exceeds maximum length (${bytes} > ${MAX_PATH_BYTES})`)
    return
  }
  if (!p.startsWith('/')) add(`path must be absolute (start with '/'): ${p}`)
  if (p.split('/').includes('..')) add(`path contains '..' traversal component: ${p}`)
}

export const isL7 = (protocol: string | undefined) => protocol !== undefined && protocol !== 'tcp'
export const isJsonRpcFamily = (protocol: string | undefined) => protocol === 'mcp' || protocol === 'json-rpc'
export const nonEmpty = (s: string | undefined): s is string => s !== undefined && s !== ''

function globUsesWildcard(s: string): boolean {
  return /[*?[\]{}]/.test(s)
}

function matcherUsesWildcard(m: unknown): boolean {
  if (typeof m === 'string') return globUsesWildcard(m)
  if (m && typeof m === 'object' && Array.isArray((m as { any?: unknown }).any)) {
    return (m as { any: unknown[] }).any.some(v => typeof v === 'string' && globUsesWildcard(v))
  }
  return false
}

/** Simple glob (`*` `?` `[..]`, `*` crossing `/`) test used for MCP method matchers. */
function globMatchesLiteral(glob: string, s: string): boolean {
  return compileGlob(glob).test(s)
}

function methodMatchesToolsCall(method: string): boolean {
  return method === 'tools/call' || method === '*' || globMatchesLiteral(method, 'tools/call')
}

function ruleHasToolSelector(r: L7Rule): boolean {
  return r.tool !== undefined || (r.params !== undefined && Object.prototype.hasOwnProperty.call(r.params, 'name'))
}

export const hasGraphqlFields = (r: L7Rule) => nonEmpty(r.operation_type) || nonEmpty(r.operation_name) || r.fields !== undefined
export const hasTransportFields = (r: L7Rule) => r.method !== undefined || r.path !== undefined || r.query !== undefined
export const hasPathOrQuery = (r: L7Rule) => nonEmpty(r.path) || (r.query !== undefined && Object.keys(r.query).length > 0)

function checkGraphqlRule(r: L7Rule, add: AddIssue, allowStar: boolean) {
  const t = r.operation_type
  if (!nonEmpty(t)) add(['operation_type'], 'required for GraphQL L7 rules')
  else {
    const valid = allowStar ? ['query', 'mutation', 'subscription', '*'] : ['query', 'mutation', 'subscription']
    if (!valid.includes(t.toLowerCase())) add(['operation_type'], `expected ${valid.join(', ')}, got '${t}'`)
  }
  if (r.fields !== undefined) {
    if (r.fields.length === 0) add(['fields'], 'list must not be empty; omit fields to match all root fields')
    r.fields.forEach((f, i) => {
      if (f === '') add(['fields', i], 'field glob must not be empty')
    })
  }
}

interface RuleCtx {
  protocol: string | undefined
  strictToolNames: boolean
  allowAllMcp: boolean
}

/** OpenShell's JSON-RPC family rule checks (generic JSON-RPC, MCP, and "tool/params only for MCP"). */
function checkJsonRpcRuleFields(r: L7Rule, add: AddIssue, c: RuleCtx) {
  const method = r.method ?? ''
  if (c.protocol === 'json-rpc') {
    if (method === '') add(['method'], 'required for json-rpc L7 rules')
    else if (method !== '*' && globUsesWildcard(method)) {
      add(
        ['method'],
        'generic JSON-RPC method rules do not support glob or wildcard matchers; use "*" to allow all methods or an exact method name',
      )
    }
    if (r.params !== undefined) add(['params'], 'JSON-RPC rules do not support params matchers yet')
    if (r.tool !== undefined) add(['tool'], 'MCP tool matching is only valid for protocol mcp')
    if (hasPathOrQuery(r)) add([], 'json-rpc L7 rules must use method, not path/query')
    return
  }
  if (c.protocol === 'mcp') {
    if (method !== '' && globUsesWildcard(method) && !method.startsWith('tools/')) {
      add(['method'], 'MCP method globs are only valid for the tools/ method family; omit method to use the endpoint method profile')
    }
    if (method === '' && !c.allowAllMcp) add(['method'], 'required when mcp.allow_all_known_mcp_methods is false')
    else if (ruleHasToolSelector(r) && method !== '' && method !== 'tools/call') {
      add(['method'], `must be tools/call when an MCP rule uses tool or params.name, got '${method}'`)
    }
    if (r.tool !== undefined && !c.strictToolNames && matcherUsesWildcard(r.tool)) {
      add(['tool'], 'wildcard tool-name matchers require mcp.strict_tool_names to remain enabled')
    }
    if (r.params !== undefined) {
      if (r.tool !== undefined && Object.prototype.hasOwnProperty.call(r.params, 'name')) {
        add([], 'MCP rules must use either tool or params.name, not both')
      }
      for (const k of Object.keys(r.params)) {
        if (k !== 'name') add(['params', k], 'MCP tool argument matching is not supported yet')
      }
      const name = r.params['name']
      if (name !== undefined) {
        if (typeof name !== 'string' && !(name && typeof name === 'object' && Array.isArray((name as { any?: unknown }).any))) {
          add(['params', 'name'], 'expected string glob or matcher object')
        } else if (!c.strictToolNames && matcherUsesWildcard(name)) {
          add(['params', 'name'], 'wildcard tool-name matchers require mcp.strict_tool_names to remain enabled')
        }
      }
    }
    if (hasPathOrQuery(r)) add([], 'mcp L7 rules must use method/tool, not path/query')
    return
  }
  if (r.tool !== undefined) add(['tool'], 'MCP tool matching is only valid for protocol mcp')
  if (r.params !== undefined) add(['params'], 'params matching is only valid for protocol mcp')
}

/** Endpoint facts shared by the endpoint checks below. */
function endpointFacts(ep: Endpoint) {
  const rules = ep.rules
  const denyRules = ep.deny_rules
  return {
    protocol: ep.protocol,
    tcp: ep.protocol === 'tcp',
    host: ep.host ?? '',
    allowedIps: ep.allowed_ips ?? [],
    rules,
    denyRules,
    hasRules: (rules?.length ?? 0) > 0,
    hasDeny: (denyRules?.length ?? 0) > 0,
    access: ep.access,
    allowAllMcp: ep.mcp?.allow_all_known_mcp_methods ?? false,
    strictToolNames: ep.mcp?.strict_tool_names ?? true,
  }
}

/** One endpoint, as OpenShell's validate_sandbox_policy and validate_l7_policies check it. */
export function checkEndpoint(ep: Endpoint, add: AddIssue) {
  checkEndpointHost(ep, add)
  checkEndpointAddresses(ep, add)
  checkEndpointL7Fields(ep, add)
  checkEndpointRules(ep, add)
}

/** The host: DNS names for tcp, wildcard shapes, the host-pattern rule. */
function checkEndpointHost(ep: Endpoint, add: AddIssue) {
  const { protocol, tcp, host, allowedIps } = endpointFacts(ep)
  // Host.
  if (host.trim() === '' && tcp) {
    add(['host'], 'protocol tcp requires a DNS hostname; hostless allowed_ips endpoints are supported only by the forward proxy')
  } else if (host.trim() === '' && allowedIps.length === 0) {
    add(['host'], 'endpoint host must not be empty unless allowed_ips constrains a non-TCP proxy endpoint')
  } else if (tcp) {
    if (isIP(host) !== 0) {
      add(
        ['host'],
        `protocol tcp endpoint '${host}' must use a DNS hostname, not an IP literal; direct IP connections bypass policy DNS and are blocked`,
      )
    } else {
      const p = tcpDnsHostProblem(host)
      if (p) add(['host'], `protocol tcp endpoint has invalid DNS host selector '${host}': ${p}`)
    }
  }
  if (protocol === 'mcp' && host.trim() === '' && allowedIps.length > 0) {
    add(['host'], 'protocol mcp requires host; protocol alone is not a wildcard endpoint')
  }
  const wildcard = hostWildcardProblem(host)
  if (wildcard) add(['host'], wildcard)
  else if (!tcp && host.trim() !== '' && isIP(host.replace(/^\[(.*)\]$/, '$1')) === 0) {
    // The gateway matches with the same rule (src/rules/host-pattern.ts): what it could not read
    // the same way (`[ab]`, `{a,b}`, `?`) is refused here rather than silently matching nothing.
    const p = hostPatternProblem(host)
    if (p) add(['host'], p)
  }
}

/** Ports, allowed_ips (the gateway's own always-blocked list) and credential signing. */
function checkEndpointAddresses(ep: Endpoint, add: AddIssue) {
  const { allowedIps } = endpointFacts(ep)
  // Ports: `ports` wins over `port` (OpenShell promotes port into ports only when ports is empty).
  const ports = endpointPorts(ep)
  if (ports.length === 0) {
    if (ep.port === 0) add(['port'], 'invalid port 0; expected 1..=65535')
    else add(['port'], 'endpoint must declare at least one port (port or ports)')
  }
  if (ep.ports && ep.ports.length > 0) {
    ep.ports.forEach((p, i) => {
      if (p < 1) add(['ports', i], `invalid port ${p}; expected 1..=65535`)
    })
  }

  // allowed_ips: the one rule (src/rules/ip.ts checkAllowedIpsEntry) with the gateway's own
  // always-blocked list: entries the gateway could never honour are refused here, not loaded
  // silently (partial overlaps are warnings, see validationWarnings).
  allowedIps.forEach((entry, i) => {
    const v = checkAllowedIpsEntry(entry)
    if (!v.ok) add(['allowed_ips', i], v.error)
  })

  // Credential signing.
  if (ep.credential_signing !== undefined && !nonEmpty(ep.signing_service)) {
    add(['signing_service'], 'credential_signing is set but signing_service is empty')
  }
  if (ep.credential_signing !== undefined && ep.request_body_credential_rewrite) {
    add(['credential_signing'], 'credential_signing and request_body_credential_rewrite are mutually exclusive')
  }
}

/** L7 field combinations (OpenShell's validate_l7_endpoint_semantics) and what protocol tcp cannot carry. */
function checkEndpointL7Fields(ep: Endpoint, add: AddIssue) {
  const { protocol, tcp, rules, denyRules, hasRules, hasDeny, access, allowAllMcp } = endpointFacts(ep)
  // Empty lists are rejected rather than read as "omitted": `rules: []` would deny everything.
  if (rules !== undefined && rules.length === 0) {
    add(['rules'], 'rules list cannot be empty (would deny all traffic); use `access: full` or remove rules')
  }
  if (denyRules !== undefined && denyRules.length === 0) {
    add(['deny_rules'], 'deny_rules list cannot be empty (would have no effect); remove it if no denials are needed')
  }

  // L7 field combinations (OpenShell's validate_l7_endpoint_semantics).
  if (tcp && (access !== undefined || hasRules || hasDeny)) {
    const key = access !== undefined ? 'access' : hasRules ? 'rules' : 'deny_rules'
    add([key], 'protocol tcp does not support access, rules, or deny_rules; remove those L7 fields')
  }
  if (hasRules && access !== undefined) add(['access'], 'rules and access are mutually exclusive')
  if (isJsonRpcFamily(protocol) && access !== undefined) {
    add(
      ['access'],
      protocol === 'mcp'
        ? 'protocol mcp does not support access presets; use rules/deny_rules or set mcp.allow_all_known_mcp_methods: true for an allow-all MCP policy'
        : 'protocol json-rpc does not support access presets; use explicit rules with allow.method such as "*"',
    )
  }
  if (protocol === 'json-rpc' && !hasRules && access === undefined)
    add(['rules'], 'protocol json-rpc requires explicit rules with allow.method')
  if (isL7(protocol) && !isJsonRpcFamily(protocol) && !hasRules && access === undefined) {
    add(['protocol'], `protocol ${protocol} requires rules or access to define allowed traffic`)
  }
  if (protocol === 'mcp' && !hasRules && access === undefined && !allowAllMcp) {
    add(['rules'], 'protocol mcp requires rules when mcp.allow_all_known_mcp_methods is false')
  }
  const denyAll =
    hasRules &&
    rules!.every(r => {
      const a = r.allow
      return ![a.method, a.path, a.command, a.operation_type, a.operation_name].some(nonEmpty) && !ruleHasToolSelector(a)
    })
  if (denyAll && !(protocol === 'mcp' && allowAllMcp)) {
    add(['rules'], 'rules would deny all traffic (no allow clause found); use `access: full` or add allow clauses to rules')
  }
  if (hasDeny && !isL7(protocol)) add(['deny_rules'], 'deny_rules require protocol (L7 inspection must be enabled)')
  if (hasDeny && protocol !== 'mcp' && !hasRules && access === undefined) {
    add(['deny_rules'], 'deny_rules require rules or access to define the base allow set')
  }

  // protocol tcp carries no L7 configuration at all.
  if (tcp) {
    const present: string[] = []
    if (ep.enforcement !== undefined) present.push('enforcement')
    if (nonEmpty(ep.path)) present.push('path')
    if (ep.allow_encoded_slash) present.push('allow_encoded_slash')
    if (ep.websocket_credential_rewrite) present.push('websocket_credential_rewrite')
    if (ep.request_body_credential_rewrite) present.push('request_body_credential_rewrite')
    if (ep.persisted_queries !== undefined) present.push('persisted_queries')
    if (ep.graphql_persisted_queries !== undefined) present.push('graphql_persisted_queries')
    if (ep.graphql_max_body_bytes !== undefined) present.push('graphql_max_body_bytes')
    if (ep.json_rpc !== undefined) present.push('json_rpc')
    if (ep.mcp !== undefined) present.push('mcp')
    if (ep.credential_signing !== undefined) present.push('credential_signing')
    if (nonEmpty(ep.signing_service)) present.push('signing_service')
    if (nonEmpty(ep.signing_region)) present.push('signing_region')
    if (ep.credential_binding !== undefined) present.push('credential_binding')
    if (present.length > 0) add([present[0]!], `protocol tcp does not support L7-only fields: ${present.join(', ')}; remove those fields`)
  }

  // A credential binding the gateway cannot see into (OpenShell's
  // validate_uninspected_credentialed_endpoints): `tls: skip` is never terminated, so a placeholder
  // there could never be substituted or checked. Refused unless allow_uninspected_credentials
  // records the exception. (An L4-only endpoint with a binding is terminated by podshell's gateway,
  // so unlike OpenShell it is inspected and needs no exception.)
  if (ep.credential_binding !== undefined && ep.tls === 'skip' && !ep.allow_uninspected_credentials) {
    add(['credential_binding'], 'credentialed endpoint uses tls: skip; configure L7 inspection or explicitly set allow_uninspected_credentials: true')
  }
  if (nonEmpty(ep.path) && !ep.path.startsWith('/') && ep.path !== '**') {
    add(['path'], `endpoint path must start with '/' or be '**', got '${ep.path}'`)
  }
  if (protocol === 'sql' && ep.enforcement === 'enforce') {
    add(['enforcement'], 'SQL enforcement requires full SQL parsing (not available in v1); use `enforcement: audit`')
  }
  if (ep.mcp !== undefined && protocol !== 'mcp') add(['mcp'], 'mcp options are only valid for protocol mcp')
  if (ep.graphql_max_body_bytes === 0) add(['graphql_max_body_bytes'], 'graphql_max_body_bytes must be a positive integer')
}

/** Each allow and deny rule, and GraphQL persisted queries. */
function checkEndpointRules(ep: Endpoint, add: AddIssue) {
  const { protocol, rules, denyRules, allowAllMcp, strictToolNames } = endpointFacts(ep)
  // Per-rule checks.
  const rctx: RuleCtx = { protocol, strictToolNames, allowAllMcp }
  const wsGraphqlPolicy =
    protocol === 'websocket' &&
    ((ep.graphql_persisted_queries !== undefined && Object.keys(ep.graphql_persisted_queries).length > 0) ||
      (ep.persisted_queries !== undefined && ep.persisted_queries !== 'deny') ||
      (rules ?? []).some(r => hasGraphqlFields(r.allow)) ||
      (denyRules ?? []).some(hasGraphqlFields))
  const mcpToolAllowSelectors = protocol === 'mcp' && (rules ?? []).some(r => ruleHasToolSelector(r.allow))

  ;(rules ?? []).forEach((rule, i) => {
    const a = rule.allow
    const addRule: AddIssue = (p, m) => add(['rules', i, 'allow', ...p], m)
    if (mcpToolAllowSelectors && !ruleHasToolSelector(a)) {
      const method = a.method ?? ''
      if (methodMatchesToolsCall(method) || (method === '' && allowAllMcp)) {
        addRule(
          ['method'],
          'method matcher allows every tool call and conflicts with MCP tool allow rules; add tool or params.name to narrow tools/call, or remove the tool allow rules',
        )
      }
    }
    checkJsonRpcRuleFields(a, addRule, rctx)
    const gql = hasGraphqlFields(a)
    if (wsGraphqlPolicy && a.method?.toUpperCase() === 'WEBSOCKET_TEXT') {
      addRule(
        ['method'],
        'WebSocket endpoints with GraphQL operation policy must use operation_type/operation_name/fields rules for client messages instead of WEBSOCKET_TEXT',
      )
    }
    if (protocol === 'websocket' && gql && hasTransportFields(a)) {
      addRule([], 'WebSocket GraphQL allow rules must not combine method/path/query with operation_type/operation_name/fields')
    }
    // The gateway's validator (lib.rs) rejects operation_type "*" for protocol graphql even though
    // the docs list it; podshell follows the stricter check.
    if (protocol === 'graphql') checkGraphqlRule(a, addRule, false)
    else if (protocol === 'websocket' && gql) checkGraphqlRule(a, addRule, true)
  })

  ;(denyRules ?? []).forEach((d, i) => {
    const addDeny: AddIssue = (p, m) => add(['deny_rules', i, ...p], m)
    if (mcpToolAllowSelectors && d.method !== undefined && methodMatchesToolsCall(d.method) && !ruleHasToolSelector(d)) {
      addDeny(
        ['method'],
        'method matcher denies every tool call and conflicts with MCP tool allow rules; add tool or params.name to deny specific tools, or remove the tool allow rules',
      )
    }
    checkJsonRpcRuleFields(d, addDeny, rctx)
    const gql = hasGraphqlFields(d)
    if (protocol === 'websocket' && gql && hasTransportFields(d)) {
      addDeny([], 'WebSocket GraphQL deny rules must not combine method/path/query with operation_type/operation_name/fields')
    }
    if (protocol === 'graphql') checkGraphqlRule(d, addDeny, false)
    else if (protocol === 'websocket' && gql) checkGraphqlRule(d, addDeny, true)
  })

  for (const [key, op] of Object.entries(ep.graphql_persisted_queries ?? {})) {
    checkGraphqlRule(op, (p, m) => add(['graphql_persisted_queries', key, ...p], m), protocol !== 'graphql')
  }
}

export function checkMiddleware(m: NetworkMiddleware, add: AddIssue) {
  if (m.middleware === '') add(['middleware'], 'middleware must not be empty')
  const sel = m.endpoints
  if (!sel) {
    add(['endpoints'], 'endpoint selector is required')
    return
  }
  const include = sel.include ?? []
  const exclude = sel.exclude ?? []
  if (include.length === 0) add(['endpoints', 'include'], 'endpoint selector must include at least one host pattern')
  if (include.length + exclude.length > MAX_MIDDLEWARE_SELECTOR_PATTERNS) {
    add(['endpoints'], `too many selector patterns (${include.length + exclude.length} > ${MAX_MIDDLEWARE_SELECTOR_PATTERNS})`)
    return
  }
  include.forEach((p, i) => {
    const r = hostPatternProblem(p)
    if (r) add(['endpoints', 'include', i], `endpoint selector pattern '${p}' is invalid: ${r}`)
  })
  exclude.forEach((p, i) => {
    const r = hostPatternProblem(p)
    if (r) add(['endpoints', 'exclude', i], `endpoint selector pattern '${p}' is invalid: ${r}`)
  })
}

export function compileSelector(m: NetworkMiddleware): HostSelector | undefined {
  const include = m.endpoints?.include ?? []
  const exclude = m.endpoints?.exclude ?? []
  if (include.length === 0) return undefined
  const inc = include.map(p => HostPattern.parse(p))
  const exc = exclude.map(p => HostPattern.parse(p))
  if (inc.some(p => !p) || exc.some(p => !p)) return undefined
  return new HostSelector(inc as HostPattern[], exc as HostPattern[])
}
