/**
 * Compilation of a sandbox policy's `network_policies` into the matchers the egress policy engine
 * (policy-engine.ts) decides with: the input shapes it reads, the compiled form, and the host
 * matcher. Semantics are described at the top of policy-engine.ts.
 */
import { canonicalizeHost, parseCidr, type CanonicalHost, type Cidr } from './address.js'
import { compileGlob, type Glob } from '../rules/glob.js'
import { HostPattern, hostPatternProblem } from '../rules/host-pattern.js'

// ---------------------------------------------------------------------------------------------
// Input shapes (structurally compatible with src/policy/schema.ts `Policy`; only what the engine
// reads is listed, everything readonly so parsed zod output is accepted as is).
// ---------------------------------------------------------------------------------------------

export type QueryMatcherInput = string | { readonly any?: readonly string[]; readonly glob?: string }

export interface L7RuleFieldsInput {
  readonly method?: string
  readonly path?: string
  readonly query?: Readonly<Record<string, QueryMatcherInput>>
}

export interface EndpointInput {
  readonly host?: string
  readonly port?: number
  readonly ports?: readonly number[]
  readonly path?: string
  readonly protocol?: string
  readonly tls?: string
  readonly enforcement?: string
  readonly access?: string
  readonly rules?: readonly { readonly allow?: L7RuleFieldsInput }[]
  readonly deny_rules?: readonly L7RuleFieldsInput[]
  readonly allowed_ips?: readonly string[]
  readonly allow_encoded_slash?: boolean
  readonly request_body_credential_rewrite?: boolean
  readonly websocket_credential_rewrite?: boolean
  readonly credential_binding?: unknown
}

export interface NetworkPolicyInput {
  readonly name?: string
  readonly endpoints?: readonly EndpointInput[]
}

export interface PolicyInput {
  readonly network_policies?: Readonly<Record<string, NetworkPolicyInput>> | null
}

/** An attached provider as listed in `gateway/sandboxes/<name>/providers.json`. */
export interface ProviderAttachment {
  readonly name: string
  readonly type: string
  readonly config?: Readonly<Record<string, string>>
  /** An imported provider profile's endpoints (src/credentials/profiles.ts), snapshotted at create. */
  readonly endpoints?: readonly { readonly host: string; readonly port: number; readonly path?: string }[]
}

// ---------------------------------------------------------------------------------------------
// Compiled form
// ---------------------------------------------------------------------------------------------

export type HostMatcher =
  | { readonly kind: 'ip-only' } // hostless endpoint with allowed_ips: IP literals only, never a name
  | { readonly kind: 'exact'; readonly host: string }
  | { readonly kind: 'glob'; readonly glob: HostPattern }
  | { readonly kind: 'none'; readonly why: string } // host that can never match (invalid)

export interface CompiledQuery {
  readonly key: string
  readonly patterns: readonly Glob[]
}

export interface CompiledRule {
  /** Where it came from, for decisions: `rules[1]`, `deny_rules[0]`, `access: read-only (GET)`. */
  readonly ref: string
  /** undefined = the rule can never match (allow rule without method or path). */
  readonly method: Glob | undefined
  readonly path: Glob | undefined
  readonly query: readonly CompiledQuery[]
  /** `*` method, `**` path, no query: allows everything. */
  readonly matchesAll: boolean
}

export type Enforcement = 'enforce' | 'audit'

/** L7 protocols podshell evaluates; the others are known but not inspectable yet. */
const INSPECTABLE = new Set(['rest', 'websocket'])
const L4_PROTOCOLS = new Set(['', 'tcp'])

export interface CompiledEndpoint {
  readonly policy: string
  readonly policyName: string
  readonly index: number
  readonly host: HostMatcher
  readonly ports: ReadonlySet<number>
  readonly pathGlob: Glob | undefined
  /** undefined = L4 endpoint. */
  readonly l7: CompiledL7 | undefined
  /** allowed_ips, plus the host itself when the host is an IP literal (OpenShell's implicit rule). */
  readonly allowedIps: readonly Cidr[] | undefined
  readonly allowEncodedSlash: boolean
  /** `tls: skip`: CONNECTs to it are always tunnelled, never terminated (src/gateway/tls-terminate.ts). */
  readonly tlsSkip: boolean
  /** A `credential_binding`: placeholders are substituted on its decrypted requests (issue 12), so it is terminated. */
  readonly credentialBinding: boolean
  /** The provider a `credential_binding` names ('' when none or not a name). */
  readonly bindingProvider: string
  /** `request_body_credential_rewrite: true`: placeholders in request bodies are substituted too (issue 12). */
  readonly bodyRewrite: boolean
  /** `websocket_credential_rewrite: true`: placeholders in client WebSocket text messages are substituted (issue 12). */
  readonly wsRewrite: boolean
}

export interface CompiledL7 {
  readonly protocol: string
  readonly enforcement: Enforcement
  readonly inspectable: boolean
  readonly access: string | undefined
  readonly rules: readonly CompiledRule[]
  readonly denyRules: readonly CompiledRule[]
  /** Why a CONNECT (uninspected TLS) would bypass this endpoint's L7 rules; undefined = it would not. */
  readonly narrower: string | undefined
}

// ---------------------------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------------------------

const PRESET_METHODS: Record<string, readonly string[]> = {
  'read-only': ['GET', 'HEAD', 'OPTIONS'],
  'read-write': ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH'],
  full: ['*'],
}
const WEBSOCKET_PRESET_METHODS: Record<string, readonly string[]> = {
  'read-only': ['GET'],
  'read-write': ['GET', 'WEBSOCKET_TEXT'],
  full: ['*'],
}

export function compileHost(ep: EndpointInput): HostMatcher {
  const raw = ep.host
  if (raw === undefined || raw === '') {
    // A hostless endpoint with allowed_ips matches IP-literal destinations inside allowed_ips and
    // NO name: matching a name would mean resolving an attacker-chosen name to find out whether
    // its addresses are inside allowed_ips, and that lookup is itself the leak
    // (`<secret>.attacker.example` reaches the attacker's DNS server). Without allowed_ips it
    // matches nothing.
    return ep.allowed_ips && ep.allowed_ips.length > 0 ? { kind: 'ip-only' } : { kind: 'none', why: 'endpoint has no host' }
  }
  const lower = raw.toLowerCase().replace(/\.$/, '')
  if (lower.includes('*')) {
    // The one host-pattern rule (src/rules/host-pattern.ts); an invalid pattern matches nothing.
    const pat = HostPattern.parse(lower)
    return pat ? { kind: 'glob', glob: pat } : { kind: 'none', why: `invalid host pattern ${JSON.stringify(raw)}: ${hostPatternProblem(lower)}` }
  }
  try {
    return { kind: 'exact', host: canonicalizeHost(lower).host }
  } catch {
    return { kind: 'none', why: `invalid host ${JSON.stringify(raw)}` }
  }
}

function compileQuery(q: L7RuleFieldsInput['query']): CompiledQuery[] {
  if (!q) return []
  return Object.entries(q).map(([key, m]) => {
    const pats = typeof m === 'string' ? [m] : [...(m.any ?? []), ...(m.glob !== undefined ? [m.glob] : [])]
    return { key, patterns: pats.map(p => compileGlob(p)) }
  })
}

function compileRule(r: L7RuleFieldsInput, ref: string, side: 'allow' | 'deny'): CompiledRule {
  // Allow rules need both method and path (OpenShell's schema requires them; a rule missing one
  // matches nothing, so a half-written allow rule cannot widen access). Deny rules missing one
  // match every value of it: a half-written deny rule errs towards denying.
  const method = r.method !== undefined && r.method !== '' ? compileGlob(r.method.toUpperCase()) : side === 'deny' ? compileGlob('*') : undefined
  const path = r.path !== undefined && r.path !== '' ? compileGlob(r.path) : side === 'deny' ? compileGlob('**') : undefined
  const query = compileQuery(r.query)
  return { ref, method, path, query, matchesAll: r.method === '*' && (r.path === '**' || r.path === '/**') && query.length === 0 }
}

export function compileEndpoint(policy: string, policyName: string, ep: EndpointInput, index: number): CompiledEndpoint {
  const host = compileHost(ep)
  const ports = new Set<number>(ep.ports && ep.ports.length > 0 ? ep.ports : ep.port !== undefined ? [ep.port] : [])
  const pathGlob = ep.path !== undefined && ep.path !== '' && ep.path !== '**' ? compileGlob(ep.path) : undefined
  const allowed: Cidr[] = []
  let allowedInvalid = false
  for (const s of ep.allowed_ips ?? []) {
    const c = parseCidr(s)
    if (c) allowed.push(c)
    else allowedInvalid = true
  }
  if (host.kind === 'exact') {
    // OpenShell's implicit allowed_ips: a host written as an IP literal is the user's explicit
    // choice of that one address (it cannot be rebound by DNS), so it may be private.
    try {
      const h = canonicalizeHost(host.host)
      if (h.kind === 'ip') allowed.push(parseCidr(h.ip.family === 4 ? `${h.ip.text}/32` : `${h.ip.text}/128`)!)
    } catch {
      // unreachable: compileHost already canonicalised it
    }
  }
  const protocol = (ep.protocol ?? '').toLowerCase()
  let l7: CompiledL7 | undefined
  if (!L4_PROTOCOLS.has(protocol)) {
    const enforcement: Enforcement = ep.enforcement === 'enforce' ? 'enforce' : 'audit'
    const rules: CompiledRule[] = []
    if (ep.rules && ep.rules.length > 0) {
      ep.rules.forEach((r, i) => rules.push(compileRule(r.allow ?? {}, `endpoints[${index}].rules[${i}]`, 'allow')))
    } else if (ep.access) {
      const table = protocol === 'websocket' ? WEBSOCKET_PRESET_METHODS : PRESET_METHODS
      for (const m of table[ep.access] ?? []) rules.push(compileRule({ method: m, path: '**' }, `endpoints[${index}].access:${ep.access}`, 'allow'))
    }
    const denyRules = (ep.deny_rules ?? []).map((r, i) => compileRule(r, `endpoints[${index}].deny_rules[${i}]`, 'deny'))
    const inspectable = INSPECTABLE.has(protocol)
    let narrower: string | undefined
    if (!inspectable) narrower = `protocol ${protocol} needs request inspection`
    else if (pathGlob) narrower = `endpoint path ${ep.path}`
    else if (denyRules.length > 0) narrower = 'deny_rules'
    else if (!rules.some(r => r.matchesAll)) narrower = ep.access ? `access: ${ep.access}` : rules.length > 0 ? 'method/path rules' : 'no allow rules'
    l7 = { protocol, enforcement, inspectable, access: ep.access, rules, denyRules, narrower }
  }
  return {
    policy,
    policyName,
    index,
    host: allowedInvalid ? { kind: 'none', why: 'allowed_ips contains an invalid entry' } : host,
    ports,
    pathGlob,
    l7,
    allowedIps: allowed.length > 0 ? allowed : undefined,
    allowEncodedSlash: ep.allow_encoded_slash === true,
    tlsSkip: ep.tls === 'skip',
    credentialBinding: ep.credential_binding !== undefined,
    bindingProvider: bindingProviderOf(ep.credential_binding),
    bodyRewrite: ep.request_body_credential_rewrite === true,
    wsRewrite: ep.websocket_credential_rewrite === true,
  }
}

function bindingProviderOf(b: unknown): string {
  if (b && typeof b === 'object' && typeof (b as { provider?: unknown }).provider === 'string') return (b as { provider: string }).provider
  return ''
}

/**
 * Whether the gateway terminates TLS on this endpoint (OpenShell's auto mode): an inspectable L7
 * endpoint (rest, websocket) or one with a credential binding, unless it is `tls: skip`.
 */
export function terminates(e: CompiledEndpoint): boolean {
  return !e.tlsSkip && ((e.l7 !== undefined && e.l7.inspectable) || e.credentialBinding)
}

export function hostMatches(m: HostMatcher, host: CanonicalHost): boolean {
  switch (m.kind) {
    case 'ip-only':
      return host.kind === 'ip'
    case 'none':
      return false
    case 'exact':
      return m.host === host.host
    case 'glob':
      // Globs describe DNS names; an IP literal only matches an explicit IP host.
      return host.kind === 'name' && m.glob.matches(host.host)
  }
}
