/**
 * The egress policy engine: a sandbox policy's `network_policies` compiled into matchers, and the
 * decisions the proxy asks for — one per CONNECT (host, port) and one per plain-HTTP request
 * (method, host, port, path, query).
 *
 * Compilation (input shapes, compiled form, host matchers) is in policy-compile.ts.
 *
 * Semantics follow OpenShell (crates/openshell-supervisor-network/data/sandbox-policy.rego and the
 * policy-schema reference), with the differences podshell needs written where they happen:
 *
 *  - No match means deny; an empty or missing `network_policies` denies everything.
 *  - Hosts: exact (case-insensitive, trailing dot ignored), or globs with "." as delimiter: `*.x.com`
 *    is one label, `**.x.com` any depth, neither matches `x.com`; `*-foo.x.com` works inside a
 *    label. IP-literal hosts match every spelling of the same address.
 *  - `ports` (non-empty) wins over `port`; an endpoint with neither matches nothing.
 *  - An endpoint without `protocol` (or `protocol: tcp`) is L4: everything on that host:port.
 *    With `protocol` it is L7: requests must match an allow rule (`access` presets expand to rules:
 *    read-only = GET/HEAD/OPTIONS, read-write adds POST/PUT/PATCH, full = `*`), and any matching
 *    deny rule wins. `enforcement` defaults to `audit`, as in OpenShell: violations are logged and
 *    let through. When L4 and L7 endpoints both cover a host:port, the L7 rules apply (the broader
 *    L4 entry does not silently lift them).
 *  - CONNECT carries TLS podshell does not inspect yet, so a CONNECT to an endpoint whose L7 rules
 *    are narrower than `full` cannot be enforced: it is DENIED (fail closed) with a reason saying so,
 *    unless every such endpoint is `enforcement: audit` (then allowed and logged as audit).
 *  - Protocols whose bodies podshell cannot parse yet (graphql, mcp, json-rpc, sql) are treated as
 *    "nothing matches" for plain HTTP and "narrower than full" for CONNECT: enforce → deny.
 */
import { checkAddress, classifyAddress, type CanonicalHost, type Cidr, type IpAddress } from './address.js'
import { compileGlob, MAX_INSPECTED_HEADER_BYTES, type Glob } from '../rules/glob.js'
import { providerHosts } from '../credentials/types.js'
import { canonicalizePath, parseQuery } from './request-target.js'
import {
  compileEndpoint,
  compileHost,
  hostMatches,
  terminates,
  type CompiledEndpoint,
  type CompiledRule,
  type HostMatcher,
  type PolicyInput,
  type ProviderAttachment,
} from './policy-compile.js'

export { canonicalizePath, parseQuery, type CanonicalPath } from './request-target.js'
export {
  hostMatches,
  terminates,
  type CompiledEndpoint,
  type Enforcement,
  type EndpointInput,
  type L7RuleFieldsInput,
  type NetworkPolicyInput,
  type PolicyInput,
  type ProviderAttachment,
  type QueryMatcherInput,
} from './policy-compile.js'

// ---------------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------------

export type DecisionMode = 'allow' | 'audit' | 'deny'

export interface Decision {
  readonly allowed: boolean
  /** `audit` = allowed only because the endpoint's enforcement is audit (a would-be denial). */
  readonly mode: DecisionMode
  readonly layer: 'l4' | 'l7'
  /** The network_policies key that allowed (or, for L7 denials, matched) the request; null if none. */
  readonly policy: string | null
  /** That policy's display name (`name`, default the key). */
  readonly policyName: string | null
  /**
   * The rule, OpenShell style: for L7 the request line `GET /path`; for L4 the endpoint reference
   * `endpoints[0]`; `-` when nothing matched.
   */
  readonly rule: string
  /** Which part of the policy decided: `endpoints[0]`, `endpoints[0].rules[1]`, `endpoints[2].deny_rules[0]`. */
  readonly matched: string
  /** Why: the deny reason, or what allowed it. Never contains query strings or header values. */
  readonly reason: string
  /** Attached providers whose credential hosts include this host. */
  readonly providers: readonly string[]
  /** Endpoints whose address rules the resolved addresses are checked against (allowed decisions). */
  readonly addressRules: readonly AddressRule[]
  /**
   * Whether the gateway may resolve the host name (DNS). True only for an ALLOWED decision on a
   * name that a policy host matched; a denied name, an IP literal, or a name no endpoint names
   * never reaches a resolver, so a lookup cannot carry data out (`<secret>.attacker.example`).
   */
  readonly resolve: boolean
}

function withResolution(d: Omit<Decision, 'resolve'>, host: CanonicalHost): Decision {
  return { ...d, resolve: d.allowed && host.kind === 'name' && d.addressRules.length > 0 }
}

export interface AddressRule {
  readonly endpoint: string
  readonly allowedIps: readonly Cidr[] | undefined
}

export interface HttpRequestInfo {
  readonly method: string
  readonly host: CanonicalHost
  readonly port: number
  /** Raw path from the request target (starts with "/"), without the query. */
  readonly path: string
  /** Raw query without "?", or null. Only ever matched, never logged. */
  readonly query: string | null
}

/** Ports of cluster control planes: refused for private (allowed_ips) destinations, as OpenShell. */
export const CONTROL_PLANE_PORTS: ReadonlySet<number> = new Set([2379, 2380, 6443, 10250, 10255])

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

interface ProviderMatcher {
  readonly name: string
  readonly hosts: readonly HostMatcher[]
  /** Profile endpoints: the credential binds on exactly these host, port (and path) triples. */
  readonly endpoints: readonly { host: HostMatcher; port: number; path: Glob | undefined }[]
}

export class PolicyEngine {
  readonly endpoints: readonly CompiledEndpoint[]
  private readonly providers: readonly ProviderMatcher[]
  private readonly policyCount: number

  private constructor(endpoints: CompiledEndpoint[], providers: ProviderMatcher[], policyCount: number) {
    this.endpoints = endpoints
    this.providers = providers
    this.policyCount = policyCount
  }

  /** Compiles a policy (and the sandbox's attached providers, for attribution). Never throws. */
  static compile(policy: PolicyInput | null | undefined, providers: readonly ProviderAttachment[] = []): PolicyEngine {
    const eps: CompiledEndpoint[] = []
    const np = policy?.network_policies ?? {}
    // Sorted by key: when several policies match, the lexicographically smallest key is reported,
    // as OpenShell's `min(_matching_policy_names)`.
    const keys = Object.keys(np).sort()
    for (const key of keys) {
      const p = np[key]!
      const name = p.name ?? key
      ;(p.endpoints ?? []).forEach((ep, i) => eps.push(compileEndpoint(key, name, ep, i)))
    }
    const provs = providers.map(pr => ({
      name: pr.name,
      hosts: providerHosts(pr.type, pr.config ?? {}).map(h => compileHost({ host: h })),
      endpoints: (pr.endpoints ?? []).map(e => ({ host: compileHost({ host: e.host }), port: e.port, path: e.path !== undefined && e.path !== '' && e.path !== '**' ? compileGlob(e.path) : undefined })),
    }))
    return new PolicyEngine(eps, provs, keys.length)
  }

  /** The engine used when no policy was ever loaded: denies everything. */
  static denyAll(): PolicyEngine {
    return new PolicyEngine([], [], 0)
  }

  private providersFor(host: CanonicalHost): string[] {
    return this.providers.filter(p => p.hosts.some(m => hostMatches(m, host))).map(p => p.name)
  }

  private noMatch(host: CanonicalHost, port: number, layer: 'l4' | 'l7', rule = '-'): Omit<Decision, 'resolve'> {
    const reason = this.policyCount === 0 || this.endpoints.length === 0
      ? 'network connections not allowed by policy'
      : `endpoint ${host.host}:${port} is not allowed by any policy`
    return { allowed: false, mode: 'deny', layer, policy: null, policyName: null, rule, matched: '-', reason, providers: this.providersFor(host), addressRules: [] }
  }

  private matching(host: CanonicalHost, port: number): CompiledEndpoint[] {
    return this.endpoints.filter(e => e.ports.has(port) && hostMatches(e.host, host))
  }

  /**
   * Whether a CONNECT to host:port is terminated for L7 inspection: any matching endpoint
   * `terminates`, or (issue 12) the host is an attached provider's built-in host on 443 and no
   * matching endpoint is `tls: skip` — placeholders are substituted only on decrypted requests.
   */
  inspects(host: CanonicalHost, port: number): boolean {
    const eps = this.matching(host, port)
    if (eps.some(terminates)) return true
    return port === 443 && eps.length > 0 && !eps.some(e => e.tlsSkip) && this.providersFor(host).length > 0
  }

  /**
   * Whether `provider`'s credentials may be substituted on a request to host:port/path: the host is
   * one of the provider's built-in (or configured) hosts on port 443, or a policy endpoint with
   * `credential_binding: { provider }` matches host, port and path.
   */
  /** Whether an endpoint matching host, port and path opts in to request body rewriting. */
  rewritesBody(host: CanonicalHost, port: number, path: string, flag: 'bodyRewrite' | 'wsRewrite' = 'bodyRewrite'): boolean {
    return this.matching(host, port).some(e => {
      if (!e[flag]) return false
      if (!e.pathGlob) return true
      const cp = canonicalizePath(path, e.allowEncodedSlash)
      return cp.ok && e.pathGlob.test(cp.path)
    })
  }

  /** Whether an endpoint matching host, port and path opts in to WebSocket text rewriting. */
  rewritesWebSocket(host: CanonicalHost, port: number, path: string): boolean {
    return this.rewritesBody(host, port, path, 'wsRewrite')
  }

  credentialBound(provider: string, host: CanonicalHost, port: number, path: string): boolean {
    if (port === 443 && this.providers.some(p => p.name === provider && p.hosts.some(m => hostMatches(m, host)))) return true
    const cpath = canonicalizePath(path, false)
    if (this.providers.some(p => p.name === provider && p.endpoints.some(e => e.port === port && hostMatches(e.host, host) && (!e.path || (cpath.ok && e.path.test(cpath.path)))))) return true
    return this.matching(host, port).some(e => {
      if (e.bindingProvider !== provider) return false
      if (!e.pathGlob) return true
      const cp = canonicalizePath(path, e.allowEncodedSlash)
      return cp.ok && e.pathGlob.test(cp.path)
    })
  }

  /**
   * Decision for `CONNECT host:port` (an opaque, usually TLS, tunnel). With `inspect` (the gateway
   * terminates TLS), endpoints that `terminates()` do not make the CONNECT narrow: each request
   * inside is decided by decideHttp instead.
   */
  decideConnect(host: CanonicalHost, port: number, opts: { inspect?: boolean } = {}): Decision {
    return withResolution(this.connectDecision(host, port, opts), host)
  }

  /**
   * Decision for one plain-HTTP (absolute-form) request; see httpDecision. The host is matched
   * (and the request judged) BEFORE anything is resolved: `resolve` on the result is the only
   * permission to look the name up.
   */
  decideHttp(req: HttpRequestInfo, opts: { upgrade?: boolean } = {}): Decision {
    return withResolution(this.httpDecision(req, opts), req.host)
  }

  private connectDecision(host: CanonicalHost, port: number, opts: { inspect?: boolean }): Omit<Decision, 'resolve'> {
    const eps = this.matching(host, port)
    if (eps.length === 0) return this.noMatch(host, port, 'l4')
    const providers = this.providersFor(host)
    const l7 = eps.filter(e => e.l7)
    const narrow = l7.filter(e => e.l7!.narrower !== undefined && !(opts.inspect && terminates(e)))
    const first = eps[0]!
    if (narrow.length === 0) {
      // Every matching endpoint is L4, L7 `full` without restrictions, or inspected request by request.
      return {
        allowed: true, mode: 'allow', layer: 'l4', policy: first.policy, policyName: first.policyName,
        rule: `endpoints[${first.index}]`, matched: `${first.policy}.endpoints[${first.index}]`,
        reason: `allowed by policy ${first.policy}`, providers, addressRules: eps.map(addressRule),
      }
    }
    const n = narrow[0]!
    const why = `CONNECT ${host.host}:${port} would bypass the L7 rules of policy ${n.policy} (${n.l7!.narrower}); podshell does not inspect TLS yet`
    if (narrow.every(e => e.l7!.enforcement === 'audit')) {
      return {
        allowed: true, mode: 'audit', layer: 'l7', policy: n.policy, policyName: n.policyName,
        rule: `endpoints[${n.index}]`, matched: `${n.policy}.endpoints[${n.index}]`,
        reason: `${why}; allowed because enforcement is audit`, providers, addressRules: eps.map(addressRule),
      }
    }
    const e = narrow.find(x => x.l7!.enforcement === 'enforce')!
    return {
      allowed: false, mode: 'deny', layer: 'l7', policy: e.policy, policyName: e.policyName,
      rule: `CONNECT ${host.host}:${port}`, matched: `${e.policy}.endpoints[${e.index}]`,
      reason: `${why}: use enforcement: audit, access: full, or plain http:// for this endpoint`, providers, addressRules: [],
    }
  }

  /**
   * Decision for one plain-HTTP (absolute-form) request. With `upgrade` (an Upgrade request, e.g.
   * ws://), allowing the request is not enough: after a 101 the connection becomes an opaque pipe
   * podshell does not inspect, so on an L7 endpoint narrower than `full` the upgrade is allowed
   * only when the endpoint is `protocol: websocket` and allows WEBSOCKET_TEXT on the path (the
   * messages the pipe will carry) with no deny rule for them. Otherwise: denied under enforce,
   * allowed as audit under audit.
   */
  private httpDecision(req: HttpRequestInfo, opts: { upgrade?: boolean }): Omit<Decision, 'resolve'> {
    const method = req.method.toUpperCase()
    const byHost = this.matching(req.host, req.port)
    if (byHost.length > 0 && req.path.length + (req.query?.length ?? 0) > MAX_INSPECTED_HEADER_BYTES) {
      // Bounded inspection (OpenShell: inspected headers 16 KiB): a longer request target is
      // refused before any rule sees it, whatever the enforcement mode, so no request costs the
      // shared gateway more than a bounded amount of matching.
      const e = byHost[0]!
      return {
        allowed: false, mode: 'deny', layer: 'l7', policy: e.policy, policyName: e.policyName, rule: `${method} ${req.path.slice(0, 64)}…`,
        matched: `${e.policy}.endpoints[${e.index}]`, reason: `request target longer than ${MAX_INSPECTED_HEADER_BYTES} bytes is not inspected`,
        providers: this.providersFor(req.host), addressRules: [],
      }
    }
    if (byHost.length === 0) return this.noMatch(req.host, req.port, 'l4', `${method} ${req.path}`)
    const providers = this.providersFor(req.host)
    const l7eps = byHost.filter(e => e.l7)
    if (l7eps.length === 0) {
      const first = byHost[0]!
      return {
        allowed: true, mode: 'allow', layer: 'l4', policy: first.policy, policyName: first.policyName,
        rule: `endpoints[${first.index}]`, matched: `${first.policy}.endpoints[${first.index}]`,
        reason: `allowed by policy ${first.policy}`, providers, addressRules: byHost.map(addressRule),
      }
    }
    // L7: canonical path per endpoint (allow_encoded_slash may differ between endpoints).
    const denyOut = (e: CompiledEndpoint, reason: string, matched: string): Omit<Decision, 'resolve'> => ({
      allowed: false, mode: 'deny', layer: 'l7', policy: e.policy, policyName: e.policyName,
      rule: `${method} ${req.path}`, matched, reason, providers, addressRules: [],
    })
    const query = parseQuery(req.query)
    const considered: { e: CompiledEndpoint; path: string }[] = []
    for (const e of l7eps) {
      const cp = canonicalizePath(req.path, e.allowEncodedSlash)
      if (!cp.ok) {
        // A path that cannot be canonicalised is refused outright, whatever the enforcement mode:
        // audit would otherwise pass on exactly the ambiguity a deny rule is meant to catch.
        return denyOut(e, `${method} ${req.path} rejected: ${cp.reason}`, `${e.policy}.endpoints[${e.index}]`)
      }
      if (e.pathGlob && !e.pathGlob.test(cp.path)) continue
      considered.push({ e, path: cp.path })
    }
    if (considered.length === 0) return this.noMatch(req.host, req.port, 'l7', `${method} ${req.path}`)
    if (query === undefined) {
      const e = considered[0]!.e
      return denyOut(e, `${method} ${req.path} rejected: malformed query string`, `${e.policy}.endpoints[${e.index}]`)
    }
    const { denied, allowed } = matchRules(considered, method, query)
    const upgradeBlocked = allowed && !denied && opts.upgrade ? upgradeRestriction(allowed.e, considered, method, req.path, query) : undefined
    if (allowed && !denied && !upgradeBlocked) {
      return {
        allowed: true, mode: 'allow', layer: 'l7', policy: allowed.e.policy, policyName: allowed.e.policyName,
        rule: `${method} ${req.path}`, matched: `${allowed.e.policy}.${allowed.rule.ref}`,
        reason: `allowed by ${allowed.e.policy}.${allowed.rule.ref}`, providers, addressRules: considered.map(c => addressRule(c.e)),
      }
    }
    const blame = denied?.e ?? (upgradeBlocked && allowed ? allowed.e : considered[0]!.e)
    const uninspectable = considered.find(c => !c.e.l7!.inspectable)
    const reason = upgradeBlocked
      ? upgradeBlocked
      : denied
      ? `${method} ${req.path} blocked by deny rule`
      : uninspectable && !allowed
        ? `${method} ${req.path} not permitted by policy (podshell cannot inspect protocol ${uninspectable.e.l7!.protocol} yet)`
        : `${method} ${req.path} not permitted by policy`
    const matched = denied ? `${denied.e.policy}.${denied.rule.ref}` : `${blame.policy}.endpoints[${blame.index}]`
    // Enforce wins: the request passes in audit mode only if every endpoint involved is audit.
    if (considered.every(c => c.e.l7!.enforcement === 'audit')) {
      return {
        allowed: true, mode: 'audit', layer: 'l7', policy: blame.policy, policyName: blame.policyName,
        rule: `${method} ${req.path}`, matched, reason: `${reason}; allowed because enforcement is audit`, providers,
        addressRules: considered.map(c => addressRule(c.e)),
      }
    }
    return denyOut(blame, reason, matched)
  }
}

type RuleHit = { e: CompiledEndpoint; rule: CompiledRule }

/** The first deny rule and the first allow rule (of an inspectable endpoint) the request matches. */
function matchRules(considered: readonly { e: CompiledEndpoint; path: string }[], method: string, query: Map<string, string[]>): { denied?: RuleHit; allowed?: RuleHit } {
  let denied: RuleHit | undefined
  let allowed: RuleHit | undefined
  for (const { e, path } of considered) {
    const l7 = e.l7!
    for (const r of l7.denyRules) {
      if (!denied && ruleMatches(r, method, path, query, 'deny')) denied = { e, rule: r }
    }
    if (!allowed && l7.inspectable) {
      for (const r of l7.rules) {
        if (ruleMatches(r, method, path, query, 'allow')) {
          allowed = { e, rule: r }
          break
        }
      }
    }
  }
  return { ...(denied ? { denied } : {}), ...(allowed ? { allowed } : {}) }
}

/**
 * Why an allowed upgrade is refused: the upgraded connection is not inspected, so an endpoint whose
 * rules are narrower than `full` allows it only if it is a websocket endpoint that allows (and no
 * deny rule forbids) WEBSOCKET_TEXT. undefined = the upgrade may proceed.
 */
function upgradeRestriction(e: CompiledEndpoint, considered: readonly { e: CompiledEndpoint; path: string }[], method: string, rawPath: string, query: Map<string, string[]>): string | undefined {
  const l7 = e.l7!
  if (l7.narrower === undefined) return undefined
  const path = considered.find(c => c.e === e)!.path
  const textAllowed = l7.protocol === 'websocket'
    && l7.rules.some(r => ruleMatches(r, 'WEBSOCKET_TEXT', path, query, 'allow'))
    && !considered.some(c => c.e.l7!.denyRules.some(r => ruleMatches(r, 'WEBSOCKET_TEXT', c.path, query, 'deny')))
  return textAllowed ? undefined : `${method} ${rawPath} upgrade not permitted: podshell does not inspect the upgraded connection, and policy ${e.policy} restricts it (${l7.narrower})`
}

function addressRule(e: CompiledEndpoint): AddressRule {
  return { endpoint: `${e.policy}.endpoints[${e.index}]`, allowedIps: e.allowedIps }
}

/**
 * A glob test for one rule side. An invalid glob (unbalanced braces, too many alternatives) never
 * lets a request through: in an allow rule it matches nothing, in a deny rule it matches everything.
 */
function hit(g: Glob, value: string, side: 'allow' | 'deny'): boolean {
  return g.invalid !== undefined ? side === 'deny' : g.test(value)
}

function ruleMatches(r: CompiledRule, method: string, path: string, query: Map<string, string[]>, side: 'allow' | 'deny'): boolean {
  if (!r.method || !r.path) return false
  const methodOk = hit(r.method, method, side) || (method === 'HEAD' && r.method.literal && r.method.pattern === 'GET')
  if (!methodOk) return false
  if (!hit(r.path, path, side)) return false
  if (r.query.length === 0) return true
  if (side === 'allow') {
    // Every configured key must be present and ALL its values must match.
    return r.query.every(q => {
      const vals = query.get(q.key)
      return vals !== undefined && vals.length > 0 && vals.every(v => q.patterns.some(p => hit(p, v, side)))
    })
  }
  // Deny: every configured key present and ANY of its values matching fires the rule.
  return r.query.every(q => {
    const vals = query.get(q.key)
    return vals !== undefined && vals.some(v => q.patterns.some(p => hit(p, v, side)))
  })
}

/**
 * Checks the addresses a name resolved to against the allowed decision's address rules. Every
 * candidate must pass (all-or-nothing, as OpenShell does for CONNECT): a mixed answer where one
 * address is private or loopback is a rebinding attempt or a misconfiguration, never "use the
 * good one". Returns the addresses in the order to try.
 */
export function checkResolved(
  decision: Decision,
  label: string,
  port: number,
  addresses: readonly IpAddress[],
): { ok: true; addresses: IpAddress[] } | { ok: false; reason: string } {
  if (addresses.length === 0) return { ok: false, reason: `DNS resolution returned no addresses for ${label}` }
  let firstReason: string | undefined
  for (const rule of decision.addressRules) {
    let failed: string | undefined
    for (const a of addresses) {
      const c = checkAddress(a, rule.allowedIps, label)
      if (!c.ok) {
        failed = c.reason
        break
      }
      if (classifyAddress(a).verdict === 'private' && CONTROL_PLANE_PORTS.has(port)) {
        failed = `port ${port} is a blocked control-plane port for private address ${a.text}`
        break
      }
    }
    if (!failed) return { ok: true, addresses: [...addresses] }
    firstReason ??= failed
  }
  return { ok: false, reason: firstReason ?? `no endpoint permits the addresses of ${label}` }
}
