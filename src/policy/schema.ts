import { createHash } from 'node:crypto'
import { closeSync, openSync } from 'node:fs'
import { isIP } from 'node:net'
import { z } from 'zod'
import { isMap, isPair, isScalar, isSeq, parseAllDocuments, stringify, type Document, type Node as YamlNode } from 'yaml'
import { PodshellError } from '../errors.js'
import { readFdBounded } from '../util/fs.js'
import { HostPattern, hostPatternProblem } from '../rules/host-pattern.js'
import { compileGlob } from '../rules/glob.js'
import { checkAllowedIpsEntry } from '../rules/ip.js'

// The one host-pattern rule lives in src/rules/host-pattern.ts; re-exported for existing importers.
export { HostPattern, hostPatternProblem }

/**
 * The OpenShell v1 sandbox policy: the YAML document users hand to `sandbox create --policy`,
 * `policy set` and `policy validate`.
 *
 * OpenShell (crates/openshell-policy `PolicyFile`, `validate_sandbox_policy`, and the supervisor's
 * `validate_l7_policies`) is the reference for what is valid. The rule here is parity: a document
 * OpenShell accepts, podshell accepts; a document OpenShell rejects on ANY of its load paths (gRPC
 * `policy set`, or the supervisor reading the YAML from disk), podshell rejects. Where OpenShell
 * silently coerces a typo into a default (e.g. `enforcement: enforc` becomes audit, i.e. allow and
 * log), podshell rejects the value instead: a misspelled security setting must never quietly widen
 * access. Those divergences are marked "stricter than OpenShell" below.
 *
 * Every problem is reported as `key.path: message` (e.g.
 * `network_policies.github.endpoints[0].hots: unrecognized key (did you mean "host"?)`).
 */

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/** OpenShell's MAX_POLICY_SIZE (crates/openshell-server/src/grpc/mod.rs). */
export const MAX_POLICY_BYTES = 256 * 1024
/** OpenShell's MAX_FILESYSTEM_PATHS (read_only + read_write). */
export const MAX_FILESYSTEM_PATHS = 256
/** OpenShell's MAX_PATH_LENGTH, in bytes. */
export const MAX_PATH_BYTES = 4096
/** OpenShell's MAX_MIDDLEWARE_CONFIGS. */
export const MAX_MIDDLEWARES = 10
/** OpenShell's MAX_MIDDLEWARE_SELECTOR_PATTERNS (include + exclude). */
export const MAX_MIDDLEWARE_SELECTOR_PATTERNS = 32
/**
 * Nesting limit for the parsed document. A real policy nests about ten levels (params matchers and
 * middleware config a few more); the limit keeps recursive code (validation, hashing, YAML output)
 * far from the JS stack limit whatever the input.
 */
export const MAX_POLICY_DEPTH = 64
/** YAML alias expansion budget handed to the `yaml` package (stops "billion laughs"). */
export const MAX_YAML_ALIAS_COUNT = 100
const MIN_SANDBOX_ID = 1
const MAX_SANDBOX_ID = 4294967294 // u32::MAX - 1: u32::MAX is the "invalid id" sentinel

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/**
 * Messages quote values from the document; a value may hold newlines or terminal escape sequences.
 * Control characters are shown escaped so every issue stays one line and cannot drive the terminal.
 */
export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/**
 * A policy document that cannot be used. `issues` lists every problem as `key.path: message`;
 * the one-line message names the source, the first problem and how many there are.
 */
export class PolicyError extends PodshellError {
  readonly issues: string[]
  readonly source: string

  /** `opts.summary` replaces the "invalid policy SOURCE: …" line (file-level errors such as "not found"). */
  constructor(source: string, issues: string[], opts: { hint?: string; code?: string; cause?: unknown; summary?: string } = {}) {
    const list = issues.length > 0 ? issues.map(printable) : ['(document): invalid policy']
    const more = list.length > 1 ? ` (and ${list.length - 1} more problem${list.length > 2 ? 's' : ''})` : ''
    super(opts.summary !== undefined ? printable(opts.summary) : `invalid policy ${source}: ${list[0]}${more}`, {
      hint: opts.hint ?? `fix the policy; \`podshell policy validate ${source}\` lists every problem`,
      code: opts.code ?? 'POLICY_INVALID',
      exitCode: 1,
      cause: opts.cause,
    })
    this.name = 'PolicyError'
    this.issues = list
    this.source = source
  }
}

// ---------------------------------------------------------------------------------------------
// Key paths
// ---------------------------------------------------------------------------------------------

const BARE_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/

/** `['network_policies','gh','endpoints',0,'host']` → `network_policies.gh.endpoints[0].host`. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') {
      out += `[${seg}]`
      continue
    }
    const s = String(seg)
    if (BARE_KEY.test(s) && s.length <= 80) out += out ? `.${s}` : s
    else {
      const shown = s.length > 60 ? `${s.slice(0, 60)}…` : s
      out += `[${JSON.stringify(shown)}]`
    }
  }
  return out || '(document)'
}

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
// Structural schema
// ---------------------------------------------------------------------------------------------

const QueryAnySchema = z
  .strictObject({
    any: z
      .array(z.string().describe('A glob'))
      .min(1, 'list must not be empty')
      .describe('Matches when any of these globs matches'),
  })
  .describe('Expanded matcher: { any: [globs] }')

const QueryMatcherSchema = z
  .union([z.string().describe('Glob matched against the decoded value'), QueryAnySchema], {
    error: 'expected a glob string or { any: [globs] }',
  })
  .describe('A glob string, or { any: [globs] }')

export type QueryMatcher = z.infer<typeof QueryMatcherSchema>
export type ParamMatcher = QueryMatcher | { [key: string]: ParamMatcher }

const ParamMatcherSchema: z.ZodType<ParamMatcher> = z.lazy(() =>
  z
    .union([z.string().describe('Glob'), QueryAnySchema, z.record(z.string(), ParamMatcherSchema).describe('Nested params')], {
      error: 'expected a glob string, { any: [globs] } or a map of nested params',
    })
    .describe('MCP params matcher: a glob, { any: [globs] }, or nested params'),
)

const l7MatchShape = {
  method: z.string().describe('HTTP method (REST/WebSocket: GET, POST, WEBSOCKET_TEXT, "*"), or the JSON-RPC/MCP method').optional(),
  path: z.string().describe('URL path glob (REST/WebSocket); "*" and "**" may cross "/"').optional(),
  command: z.string().describe('SQL command (protocol sql, audit only)').optional(),
  query: z.record(z.string(), QueryMatcherSchema).describe('Query parameter matchers keyed by decoded parameter name').optional(),
  operation_type: z.string().describe('GraphQL operation type: query, mutation or subscription').optional(),
  operation_name: z.string().describe('GraphQL operation-name glob').optional(),
  fields: z.array(z.string().describe('Root-field glob')).describe('GraphQL root-field globs').optional(),
  tool: QueryMatcherSchema.describe('MCP tools/call params.name matcher').optional(),
  params: z.record(z.string(), ParamMatcherSchema).describe('MCP params matchers (only params.name is supported)').optional(),
}

/** The match fields shared by allow rules (under `allow:`) and deny rules. */
const L7MatchSchema = z.strictObject(l7MatchShape).describe('Request fields an L7 allow rule matches')
const L7AllowRuleSchema = z.strictObject({ allow: L7MatchSchema.describe('What this rule allows') }).describe('An L7 allow rule')
const L7DenyRuleSchema = z.strictObject(l7MatchShape).describe('An L7 deny rule: requests matching it are blocked even if allowed')

const GraphqlOperationSchema = z
  .strictObject({
    operation_type: z.string().describe('query, mutation or subscription').optional(),
    operation_name: z.string().describe('Operation name').optional(),
    fields: z.array(z.string().describe('Root field')).describe('Root fields').optional(),
  })
  .describe('A trusted GraphQL persisted operation')

const portSchema = z
  .number()
  .int('must be an integer')
  .min(0, 'must be between 1 and 65535')
  .max(65535, 'must be between 1 and 65535')

const u32 = z.number().int('must be an integer').min(0, 'must not be negative').max(4294967295, 'must be at most 4294967295')

const EndpointObject = z.strictObject({
  host: z.string().describe('Hostname or IP; wildcards *.x.com, **.x.com, *-foo.x.com (first label) and a whole middle "*" label').optional(),
  path: z.string().describe('HTTP path glob selecting between L7 endpoints on the same host:port').optional(),
  port: portSchema.describe('TCP port 1-65535 (ignored when ports is set)').optional(),
  ports: z.array(portSchema.describe('TCP port 1-65535')).describe('Several ports; wins over port').optional(),
  protocol: z
    .enum(['rest', 'websocket', 'graphql', 'mcp', 'json-rpc', 'sql', 'tcp'])
    .describe('L7 inspection protocol; omitted means L4 passthrough through the proxy')
    .optional(),
  tls: z.enum(['skip', 'terminate', 'passthrough']).describe('skip disables TLS auto-detection; terminate/passthrough are deprecated no-ops').optional(),
  enforcement: z.enum(['enforce', 'audit']).describe('enforce blocks disallowed requests; audit (the default) logs and allows').optional(),
  access: z.enum(['read-only', 'read-write', 'full']).describe('Access preset; mutually exclusive with rules').optional(),
  rules: z.array(L7AllowRuleSchema).describe('Fine-grained allow rules; mutually exclusive with access').optional(),
  allowed_ips: z.array(z.string().describe('CIDR or IP')).describe('CIDR/IP allowlist (SSRF override for private ranges)').optional(),
  deny_rules: z.array(L7DenyRuleSchema).describe('Deny rules; they win over allow rules and access').optional(),
  allow_encoded_slash: z.boolean().describe('Keep %2F inside path segments instead of rejecting the request').optional(),
  websocket_credential_rewrite: z.boolean().describe('Rewrite credential placeholders in client WebSocket text messages').optional(),
  request_body_credential_rewrite: z.boolean().describe('Rewrite credential placeholders in REST request bodies').optional(),
  allow_uninspected_credentials: z.boolean().describe('Allow provider credentials on traffic that cannot be inspected').optional(),
  persisted_queries: z.enum(['deny', 'allow_registered']).describe('GraphQL hash-only query behaviour').optional(),
  graphql_persisted_queries: z.record(z.string(), GraphqlOperationSchema).describe('Trusted GraphQL persisted-query registry keyed by hash or id').optional(),
  graphql_max_body_bytes: u32.describe('Max GraphQL request body buffered for inspection (default 65536)').optional(),
  credential_signing: z.enum(['sigv4', 'sigv4:body', 'sigv4:no_body']).describe('Proxy-side AWS SigV4 re-signing mode').optional(),
  signing_service: z.string().describe('AWS service name for SigV4 (required with credential_signing)').optional(),
  signing_region: z.string().describe('AWS region override for SigV4').optional(),
  credential_binding: z
    .strictObject({ provider: z.string().describe('Name of an attached provider') })
    .describe('Bind an attached endpointless provider\'s credentials to this endpoint')
    .optional(),
  json_rpc: z
    .strictObject({ max_body_bytes: u32.describe('Max JSON-RPC request body buffered for inspection').optional() })
    .describe('JSON-RPC endpoint options')
    .optional(),
  mcp: z
    .strictObject({
      max_body_bytes: u32.describe('Max MCP request body buffered for inspection').optional(),
      strict_tool_names: z.boolean().describe('Require tools/call names to match ^[A-Za-z0-9_.-]{1,128}$ (default true)').optional(),
      allow_all_known_mcp_methods: z.boolean().describe('Enable the MCP method profile (default false)').optional(),
    })
    .describe('MCP endpoint options (protocol mcp only)')
    .optional(),
})

export type Endpoint = z.infer<typeof EndpointObject>
export type L7Rule = z.infer<typeof L7MatchSchema>
export type L7AllowRule = z.infer<typeof L7AllowRuleSchema>

type AddIssue = (path: PropertyKey[], message: string) => void

const BinarySchema = z
  .strictObject({
    path: z.string().describe('Executable path or glob (* and **)'),
    harness: z.boolean().describe('Deprecated and ignored (accepted for compatibility)').optional(),
  })
  .describe('An executable allowed to use the endpoints')
export type Binary = z.infer<typeof BinarySchema>

const MiddlewareObject = z.strictObject({
  name: z.string().describe('Display name; defaults to the map key').optional(),
  middleware: z.string().describe('Built-in (openshell/...) or registered middleware name'),
  order: z
    .number()
    .int('must be an integer')
    .min(-2147483648, 'must fit in a 32-bit integer')
    .max(2147483647, 'must fit in a 32-bit integer')
    .describe('Execution order; lower runs first; unique across the policy (default 0)')
    .optional(),
  config: z.record(z.string(), z.unknown()).describe('Implementation-owned configuration').optional(),
  on_error: z.enum(['fail_closed', 'fail_open']).describe('What a failing stage does (default fail_closed)').optional(),
  endpoints: z
    .strictObject({
      include: z.array(z.string().describe('Host pattern')).describe('Host patterns selected (required, non-empty)').optional(),
      exclude: z.array(z.string().describe('Host pattern')).describe('Host patterns excluded; exclusions win').optional(),
    })
    .describe('Destination host selector')
    .optional(),
})
export type NetworkMiddleware = z.infer<typeof MiddlewareObject>

// ---------------------------------------------------------------------------------------------
// Semantic checks (OpenShell's validate_sandbox_policy + the supervisor's validate_l7_policies)
// ---------------------------------------------------------------------------------------------

function checkProcessIdentity(value: string | undefined, add: (m: string) => void, field: string) {
  if (value === undefined || value === '') return
  if (value === 'sandbox') return
  const ok = /^\+?\d{1,10}$/.test(value) && Number(value) >= MIN_SANDBOX_ID && Number(value) <= MAX_SANDBOX_ID
  if (!ok) {
    add(`${field} must be 'sandbox' or a numeric UID/GID in range [${MIN_SANDBOX_ID}, ${MAX_SANDBOX_ID}], got '${value.length > 40 ? value.slice(0, 40) + '…' : value}'`)
  }
}

function checkFsPath(p: string, add: (m: string) => void) {
  const bytes = Buffer.byteLength(p)
  if (bytes > MAX_PATH_BYTES) {
    add(`path exceeds maximum length (${bytes} > ${MAX_PATH_BYTES})`)
    return
  }
  if (!p.startsWith('/')) add(`path must be absolute (start with '/'): ${p}`)
  if (p.split('/').includes('..')) add(`path contains '..' traversal component: ${p}`)
}

const isL7 = (protocol: string | undefined) => protocol !== undefined && protocol !== 'tcp'
const isJsonRpcFamily = (protocol: string | undefined) => protocol === 'mcp' || protocol === 'json-rpc'
const nonEmpty = (s: string | undefined): s is string => s !== undefined && s !== ''

function globUsesWildcard(s: string): boolean {
  return /[*?[\]{}]/.test(s)
}

function matcherUsesWildcard(m: unknown): boolean {
  if (typeof m === 'string') return globUsesWildcard(m)
  if (m && typeof m === 'object' && Array.isArray((m as { any?: unknown }).any)) {
    return ((m as { any: unknown[] }).any).some(v => typeof v === 'string' && globUsesWildcard(v))
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

const hasGraphqlFields = (r: L7Rule) => nonEmpty(r.operation_type) || nonEmpty(r.operation_name) || r.fields !== undefined
const hasTransportFields = (r: L7Rule) => r.method !== undefined || r.path !== undefined || r.query !== undefined
const hasPathOrQuery = (r: L7Rule) => nonEmpty(r.path) || (r.query !== undefined && Object.keys(r.query).length > 0)

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
      add(['method'], 'generic JSON-RPC method rules do not support glob or wildcard matchers; use "*" to allow all methods or an exact method name')
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

function checkEndpoint(ep: Endpoint, add: AddIssue) {
  const protocol = ep.protocol
  const tcp = protocol === 'tcp'
  const host = ep.host ?? ''
  const allowedIps = ep.allowed_ips ?? []
  const rules = ep.rules
  const denyRules = ep.deny_rules
  const hasRules = (rules?.length ?? 0) > 0
  const hasDeny = (denyRules?.length ?? 0) > 0
  const access = ep.access
  const allowAllMcp = ep.mcp?.allow_all_known_mcp_methods ?? false
  const strictToolNames = ep.mcp?.strict_tool_names ?? true

  // Host.
  if (host.trim() === '' && tcp) {
    add(['host'], 'protocol tcp requires a DNS hostname; hostless allowed_ips endpoints are supported only by the forward proxy')
  } else if (host.trim() === '' && allowedIps.length === 0) {
    add(['host'], 'endpoint host must not be empty unless allowed_ips constrains a non-TCP proxy endpoint')
  } else if (tcp) {
    if (isIP(host) !== 0) {
      add(['host'], `protocol tcp endpoint '${host}' must use a DNS hostname, not an IP literal; direct IP connections bypass policy DNS and are blocked`)
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
  if (protocol === 'json-rpc' && !hasRules && access === undefined) add(['rules'], 'protocol json-rpc requires explicit rules with allow.method')
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

  if (nonEmpty(ep.path) && !ep.path.startsWith('/') && ep.path !== '**') {
    add(['path'], `endpoint path must start with '/' or be '**', got '${ep.path}'`)
  }
  if (protocol === 'sql' && ep.enforcement === 'enforce') {
    add(['enforcement'], 'SQL enforcement requires full SQL parsing (not available in v1); use `enforcement: audit`')
  }
  if (ep.mcp !== undefined && protocol !== 'mcp') add(['mcp'], 'mcp options are only valid for protocol mcp')
  if (ep.graphql_max_body_bytes === 0) add(['graphql_max_body_bytes'], 'graphql_max_body_bytes must be a positive integer')

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
        addRule(['method'], 'method matcher allows every tool call and conflicts with MCP tool allow rules; add tool or params.name to narrow tools/call, or remove the tool allow rules')
      }
    }
    checkJsonRpcRuleFields(a, addRule, rctx)
    const gql = hasGraphqlFields(a)
    if (wsGraphqlPolicy && a.method?.toUpperCase() === 'WEBSOCKET_TEXT') {
      addRule(['method'], 'WebSocket endpoints with GraphQL operation policy must use operation_type/operation_name/fields rules for client messages instead of WEBSOCKET_TEXT')
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
      addDeny(['method'], 'method matcher denies every tool call and conflicts with MCP tool allow rules; add tool or params.name to deny specific tools, or remove the tool allow rules')
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

function checkMiddleware(m: NetworkMiddleware, add: AddIssue) {
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

function compileSelector(m: NetworkMiddleware): HostSelector | undefined {
  const include = m.endpoints?.include ?? []
  const exclude = m.endpoints?.exclude ?? []
  if (include.length === 0) return undefined
  const inc = include.map(p => HostPattern.parse(p))
  const exc = exclude.map(p => HostPattern.parse(p))
  if (inc.some(p => !p) || exc.some(p => !p)) return undefined
  return new HostSelector(inc as HostPattern[], exc as HostPattern[])
}

const normTls = (t: string | undefined) => (t === 'skip' ? 'skip' : 'auto')
const normEnforcement = (e: string | undefined) => (e === 'enforce' ? 'enforce' : 'audit')
const normIps = (ips: readonly string[] | undefined) => [...new Set((ips ?? []).map(s => s.trim().toLowerCase()))].sort().join(',')
const pathSpecificity = (p: string) => [...p].filter(c => c !== '*').length
const pathsCertainlyOverlap = (a: string, b: string) =>
  a === '' || b === '' || a === '**' || a === '/**' || b === '**' || b === '/**' || a === b
const contributesRequestMetadata = (e: Endpoint) =>
  isL7(e.protocol) || (e.allowed_ips?.length ?? 0) > 0 || e.tls !== undefined || e.credential_binding !== undefined

/**
 * OpenShell rejects two endpoints that can authorize the same request (overlapping host pattern
 * and port) yet disagree on how the connection is handled, because iteration order would decide.
 * Connection metadata (tcp, tls, allowed_ips) is checked fully; request metadata only where the
 * paths certainly overlap (OpenShell also compares partially overlapping path globs).
 */
function endpointAmbiguities(p: { network_policies?: Record<string, { endpoints?: Endpoint[] }> }, add: AddIssue) {
  interface Ref {
    idx: number
    key: string
    i: number
    ep: Endpoint
    host: string
    literal: string | undefined
    pat: HostPattern | undefined
    path: string
  }
  const byPort = new Map<number, Ref[]>()
  let idx = 0
  for (const [key, rule] of Object.entries(p.network_policies ?? {})) {
    ;(rule.endpoints ?? []).forEach((ep, i) => {
      const host = (ep.host ?? '').toLowerCase()
      const ref: Ref = { idx: idx++, key, i, ep, host, literal: /[*?[]/.test(host) ? undefined : host, pat: undefined, path: ep.path ?? '' }
      if (ref.literal === undefined) ref.pat = HostPattern.parse(host)
      for (const port of new Set(endpointPorts(ep).filter(x => x > 0))) {
        const list = byPort.get(port) ?? []
        list.push(ref)
        byPort.set(port, list)
      }
    })
  }
  const connSig = (e: Endpoint) => `${e.protocol === 'tcp'}|${normTls(e.tls)}|${normIps(e.allowed_ips)}`
  const proto = (e: Endpoint) => (e.protocol === 'tcp' ? '' : e.protocol ?? '')
  const reqSig = (e: Endpoint) =>
    contributesRequestMetadata(e)
      ? JSON.stringify([proto(e), normEnforcement(e.enforcement), !!e.allow_encoded_slash, !!e.websocket_credential_rewrite, !!e.request_body_credential_rewrite, e.credential_signing ?? '', e.signing_service ?? '', e.signing_region ?? '', e.credential_binding?.provider ?? ''])
      : '-'
  const hostsOverlap = (l: Ref, r: Ref): boolean => {
    if (l.host === '' || r.host === '') return true
    if (l.literal !== undefined && r.literal !== undefined) return l.literal === r.literal
    if (l.literal !== undefined && r.pat) return r.pat.matches(l.literal)
    if (r.literal !== undefined && l.pat) return l.pat.matches(r.literal)
    if (l.pat && r.pat) {
      wildcardChecks++
      return l.pat.overlaps(r.pat)
    }
    return l.host === r.host
  }
  // Only endpoints whose handling differs can conflict, so pairs are compared across classes of
  // identical handling. A 256 KiB document holds a few thousand endpoints at most; the budget
  // keeps a hostile one (thousands of wildcards with alternating settings) from taking seconds.
  let wildcardChecks = 0
  let pairs = 0
  const reported = new Map<string, { l: Ref; r: Ref; ports: number[]; conflicts: string[] }>()
  outer: for (const [port, refs] of byPort) {
    const classes = new Map<string, Ref[]>()
    for (const r of refs) {
      const sig = `${connSig(r.ep)}#${reqSig(r.ep)}`
      const c = classes.get(sig) ?? []
      c.push(r)
      classes.set(sig, c)
    }
    if (classes.size <= 1) continue
    const list = [...classes.values()]
    for (let a = 0; a < list.length; a++) {
      for (let b = a + 1; b < list.length; b++) {
        for (const x of list[a]!) {
          for (const y of list[b]!) {
            if (++pairs > 5_000_000 || wildcardChecks > 200_000) {
              add([], 'too many overlapping endpoints with differing settings to check for ambiguity; split the network policies')
              return
            }
            const [l, r] = x.idx < y.idx ? [x, y] : [y, x]
            const id = `${l.idx}:${r.idx}`
            const prev = reported.get(id)
            if (prev) {
              prev.ports.push(port)
              continue
            }
            if (!hostsOverlap(l, r)) continue
            const conflicts: string[] = []
            const cmp = (field: string, u: unknown, v: unknown) => {
              if (u !== v) conflicts.push(`${field}=${JSON.stringify(u)} vs ${JSON.stringify(v)}`)
            }
            cmp('transparent_tcp', l.ep.protocol === 'tcp', r.ep.protocol === 'tcp')
            cmp('tls', normTls(l.ep.tls), normTls(r.ep.tls))
            cmp('allowed_ips', normIps(l.ep.allowed_ips), normIps(r.ep.allowed_ips))
            if (
              contributesRequestMetadata(l.ep) &&
              contributesRequestMetadata(r.ep) &&
              pathsCertainlyOverlap(l.path, r.path) &&
              pathSpecificity(l.path) === pathSpecificity(r.path)
            ) {
              cmp('protocol', proto(l.ep), proto(r.ep))
              cmp('enforcement', normEnforcement(l.ep.enforcement), normEnforcement(r.ep.enforcement))
              cmp('allow_encoded_slash', !!l.ep.allow_encoded_slash, !!r.ep.allow_encoded_slash)
              cmp('websocket_credential_rewrite', !!l.ep.websocket_credential_rewrite, !!r.ep.websocket_credential_rewrite)
              cmp('request_body_credential_rewrite', !!l.ep.request_body_credential_rewrite, !!r.ep.request_body_credential_rewrite)
              cmp('credential_signing', l.ep.credential_signing ?? '', r.ep.credential_signing ?? '')
              cmp('signing_service', l.ep.signing_service ?? '', r.ep.signing_service ?? '')
              cmp('signing_region', l.ep.signing_region ?? '', r.ep.signing_region ?? '')
              cmp('credential_binding.provider', l.ep.credential_binding?.provider ?? '', r.ep.credential_binding?.provider ?? '')
            }
            if (conflicts.length > 0) {
              reported.set(id, { l, r, ports: [port], conflicts })
              if (reported.size >= 50) break outer
            }
          }
        }
      }
    }
  }
  for (const { l, r, ports, conflicts } of reported.values()) {
    const sel = (x: Ref) => `${x.ep.host || '<any-host>'}:${endpointPorts(x.ep).join(',')}${x.path}`
    add(
      ['network_policies', r.key, 'endpoints', r.i],
      `overlaps ${formatKeyPath(['network_policies', l.key, 'endpoints', l.i])} (${sel(l)} vs ${sel(r)}) on port(s) ${ports.sort((a, b) => a - b).join(',')} with conflicting metadata: ${conflicts.join('; ')}`,
    )
  }
}

// ---------------------------------------------------------------------------------------------
// The schema
// ---------------------------------------------------------------------------------------------

const addAt = (ctx: z.RefinementCtx, base: PropertyKey[] = []): AddIssue => (path, message) =>
  ctx.addIssue({ code: 'custom', message, path: [...base, ...path] as (string | number)[] })

const EndpointSchema = EndpointObject.superRefine((ep, ctx) => checkEndpoint(ep, addAt(ctx))).describe(
  'A destination: host (or allowed_ips) and port(s), with optional L7 inspection',
)

const NetworkPolicySchema = z
  .strictObject({
    name: z.string().describe('Display name used in logs; defaults to the map key').optional(),
    endpoints: z.array(EndpointSchema).describe('Destinations this entry allows').optional(),
    binaries: z.array(BinarySchema).describe('Executables allowed to reach the endpoints (podshell does not enforce this)').optional(),
  })
  .describe('A named set of endpoints and the binaries allowed to reach them')
export type NetworkPolicy = z.infer<typeof NetworkPolicySchema>

const MiddlewareSchema = MiddlewareObject.superRefine((m, ctx) => checkMiddleware(m, addAt(ctx))).describe(
  'A supervisor middleware stage selected by destination host (podshell does not run middlewares)',
)

const FilesystemPolicySchema = z
  .strictObject({
    include_workdir: z.boolean().describe('Add the sandbox working directory to read_write').optional(),
    read_only: z.array(z.string().describe('Absolute path')).describe('Paths the agent can read').optional(),
    read_write: z.array(z.string().describe('Absolute path')).describe('Paths the agent can read and write').optional(),
  })
  .superRefine((fs, ctx) => {
    const ro = fs.read_only ?? []
    const rw = fs.read_write ?? []
    const add = addAt(ctx)
    if (ro.length + rw.length > MAX_FILESYSTEM_PATHS) {
      add([], `too many filesystem paths (${ro.length + rw.length} > ${MAX_FILESYSTEM_PATHS})`)
    }
    ro.forEach((p, i) => checkFsPath(p, m => add(['read_only', i], m)))
    rw.forEach((p, i) => {
      checkFsPath(p, m => add(['read_write', i], m))
      if (p.replace(/\/+$/, '') === '') add(['read_write', i], `read-write path is overly broad: ${p === '' ? '(empty)' : p}`)
    })
  })
  .describe('STATIC. Which paths the agent can read and write')

const ProcessSchema = z
  .strictObject({
    run_as_user: z.string().describe("'sandbox' or a numeric UID 1-4294967294 (never root)").optional(),
    run_as_group: z.string().describe("'sandbox' or a numeric GID 1-4294967294 (never root)").optional(),
  })
  .superRefine((p, ctx) => {
    const add = addAt(ctx)
    checkProcessIdentity(p.run_as_user, m => add(['run_as_user'], m), 'run_as_user')
    checkProcessIdentity(p.run_as_group, m => add(['run_as_group'], m), 'run_as_group')
  })
  .describe('STATIC. The identity the agent runs as')

export const PolicySchema = z
  .strictObject({
    version: z.literal(1, 'must be 1 (the only OpenShell policy schema version)').describe('Policy schema version; must be 1'),
    filesystem_policy: FilesystemPolicySchema.optional(),
    landlock: z
      .strictObject({
        compatibility: z.enum(['best_effort', 'hard_requirement']).describe('What happens when Landlock is unavailable (default best_effort)').optional(),
      })
      .describe('STATIC. Landlock LSM behaviour (podshell enforces the filesystem with mounts instead)')
      .optional(),
    process: ProcessSchema.optional(),
    network_policies: z
      .record(z.string(), NetworkPolicySchema)
      .describe('DYNAMIC. Allowed destinations, keyed by rule id; no entries means all egress is denied')
      .optional(),
    network_middlewares: z
      .record(z.string(), MiddlewareSchema)
      .describe(`DYNAMIC. Up to ${MAX_MIDDLEWARES} middleware stages keyed by id`)
      .optional(),
  })
  .superRefine((p, ctx) => {
    const add = addAt(ctx)
    for (const key of Object.keys(p.network_policies ?? {})) {
      if (key.startsWith('_provider_')) {
        add(['network_policies', key], "uses the reserved '_provider_' prefix for provider composition; rename the entry")
      }
    }
    const mws = Object.entries(p.network_middlewares ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    if (mws.length > MAX_MIDDLEWARES) add(['network_middlewares'], `too many middleware configs (${mws.length} > ${MAX_MIDDLEWARES})`)
    const orders = new Map<number, string>()
    for (const [key, m] of mws) {
      if (key === '') add(['network_middlewares', key], 'name must not be empty')
      const order = m.order ?? 0
      const first = orders.get(order)
      if (first !== undefined) add(['network_middlewares', key, 'order'], `duplicate order ${order} (also used by '${first}')`)
      else orders.set(order, key)
      const sel = compileSelector(m)
      if (!sel || (m.on_error ?? 'fail_closed') !== 'fail_closed') continue
      for (const [pk, rule] of Object.entries(p.network_policies ?? {})) {
        for (const ep of rule.endpoints ?? []) {
          if (ep.tls !== 'skip' || !ep.host) continue
          const pat = HostPattern.parse(ep.host)
          if (pat && sel.mayMatchPattern(pat)) {
            add(['network_middlewares', key, 'endpoints'], `fail-closed selector covers network policy '${pk}' tls: skip endpoint '${ep.host}', which cannot be inspected`)
          }
        }
      }
    }
    endpointAmbiguities(p, add)
  })
  .describe('OpenShell sandbox policy, version 1')

export type Policy = z.infer<typeof PolicySchema>

// ---------------------------------------------------------------------------------------------
// Issue formatting
// ---------------------------------------------------------------------------------------------

function levenshtein(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 99
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!
    prev[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1))
      diag = tmp
    }
  }
  return prev[b.length]!
}

/** Keys a strict object at `path` knows, for "did you mean" hints. */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  const s = path.map(p => (typeof p === 'number' ? '#' : String(p)))
  const shape = (o: { shape: Record<string, unknown> }) => Object.keys(o.shape)
  const n = s.length
  if (n === 0) return shape(PolicySchema as unknown as { shape: Record<string, unknown> })
  if (n === 1) {
    if (s[0] === 'filesystem_policy') return ['include_workdir', 'read_only', 'read_write']
    if (s[0] === 'landlock') return ['compatibility']
    if (s[0] === 'process') return ['run_as_user', 'run_as_group']
  }
  if (s[0] === 'network_policies') {
    if (n === 2) return shape(NetworkPolicySchema)
    if (n === 4 && s[2] === 'endpoints') return shape(EndpointObject)
    if (n === 4 && s[2] === 'binaries') return shape(BinarySchema)
    if (n === 5 && s[4] === 'rules') return []
    if (n === 6 && s[4] === 'rules') return ['allow']
    if ((n === 7 && s[6] === 'allow') || (n === 6 && s[4] === 'deny_rules')) return Object.keys(l7MatchShape)
    if (n === 6 && s[4] === 'graphql_persisted_queries') return ['operation_type', 'operation_name', 'fields']
    if (n === 5 && (s[4] === 'mcp' || s[4] === 'json_rpc' || s[4] === 'credential_binding')) {
      return s[4] === 'mcp' ? ['max_body_bytes', 'strict_tool_names', 'allow_all_known_mcp_methods'] : s[4] === 'json_rpc' ? ['max_body_bytes'] : ['provider']
    }
  }
  if (s[0] === 'network_middlewares') {
    if (n === 2) return shape(MiddlewareObject)
    if (n === 3 && s[2] === 'endpoints') return ['include', 'exclude']
  }
  return []
}

function suggest(key: string, path: readonly PropertyKey[]): string {
  const known = knownKeysAt(path)
  let best: string | undefined
  let bestD = 3
  for (const k of known) {
    const d = levenshtein(key.toLowerCase(), k)
    if (d < bestD) {
      bestD = d
      best = k
    }
  }
  return best ? ` (did you mean "${best}"?)` : ''
}

function typeName(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a map'
  if (typeof v === 'string') return 'a string'
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number'
  if (typeof v === 'boolean') return 'a boolean'
  return typeof v
}

const expectedName: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'a boolean (true or false)',
  object: 'a map',
  array: 'a list',
  record: 'a map',
}

type AnyIssue = z.core.$ZodIssue

function issueLines(issue: AnyIssue, out: string[]): void {
  const path = issue.path as PropertyKey[]
  switch (issue.code) {
    case 'unrecognized_keys':
      for (const k of issue.keys) out.push(`${formatKeyPath([...path, k])}: unrecognized key${suggest(k, path)}`)
      return
    case 'invalid_type': {
      const exp = expectedName[issue.expected] ?? issue.expected
      if (!('input' in issue) || issue.input === undefined) {
        out.push(`${formatKeyPath(path)}: required (${exp})`)
        return
      }
      out.push(`${formatKeyPath(path)}: expected ${exp}, got ${typeName(issue.input)}`)
      return
    }
    case 'invalid_value': {
      if (!('input' in issue) || issue.input === undefined) {
        out.push(`${formatKeyPath(path)}: required; ${issue.values.length === 1 ? issue.message : `one of ${issue.values.map(v => String(v)).join(', ')}`}`)
        return
      }
      const got = 'input' in issue ? ` got ${JSON.stringify(issue.input)?.slice(0, 60)}` : ''
      if (issue.values.length === 1) out.push(`${formatKeyPath(path)}: ${issue.message}${got ? `,${got}` : ''}`)
      else out.push(`${formatKeyPath(path)}: must be one of ${issue.values.map(v => String(v)).join(', ')};${got}`)
      return
    }
    case 'invalid_union': {
      // Report the branch that got furthest: the one whose first problem is not a type mismatch
      // of the value itself (e.g. an unknown key inside `{ any: ... }`).
      const branches = (issue as { errors?: AnyIssue[][] }).errors ?? []
      const best = branches.find(b => b.length > 0 && !(b[0]!.code === 'invalid_type' && b[0]!.path.length === 0))
      if (best) {
        for (const sub of best) issueLines({ ...sub, path: [...path, ...sub.path] } as AnyIssue, out)
        return
      }
      out.push(`${formatKeyPath(path)}: ${issue.message}`)
      return
    }
    default:
      out.push(`${formatKeyPath(path)}: ${issue.message}`)
  }
}

/** Formats zod issues as `key.path: message` lines. */
export function formatPolicyIssues(err: z.ZodError): string[] {
  const out: string[] = []
  for (const i of err.issues) issueLines(i, out)
  return [...new Set(out)]
}

// ---------------------------------------------------------------------------------------------
// Warnings OpenShell itself emits (accepted but suspicious)
// ---------------------------------------------------------------------------------------------

function globSyntaxProblem(p: string): string | undefined {
  let sq = 0
  let br = 0
  for (const c of p) {
    if (c === '[') sq++
    else if (c === ']') {
      if (sq === 0) return `glob pattern '${p}' has unmatched ']'`
      sq--
    } else if (c === '{') br++
    else if (c === '}') {
      if (br === 0) return `glob pattern '${p}' has unmatched '}'`
      br--
    }
  }
  if (sq > 0) return `glob pattern '${p}' has unclosed '['`
  if (br > 0) return `glob pattern '${p}' has unclosed '{'`
  return undefined
}

const REST_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', '*']
const WS_METHODS = ['GET', 'WEBSOCKET_TEXT', '*']

function validationWarnings(p: Policy): string[] {
  const w: string[] = []
  for (const [key, rule] of Object.entries(p.network_policies ?? {})) {
    ;(rule.endpoints ?? []).forEach((ep, i) => {
      const at = (...rest: PropertyKey[]) => formatKeyPath(['network_policies', key, 'endpoints', i, ...rest])
      const proto = ep.protocol
      if (ep.tls === 'terminate' || ep.tls === 'passthrough') {
        // OpenShell's notice (crates/openshell-sandbox l7 validation), word for word.
        w.push(`${at('tls')}: 'tls: ${ep.tls}' is deprecated; TLS termination is now automatic. Use 'tls: skip' to disable.`)
      }
      // A warning, not an error, as in OpenShell (a policy OpenShell loads must load here). The
      // gateway fails closed on it: a `tls: skip` endpoint is never terminated, so L7 rules narrower
      // than full deny its CONNECTs under enforce (src/gateway/policy-engine.ts decideConnect).
      if (ep.tls === 'skip' && proto !== undefined && endpointPorts(ep).includes(443)) {
        w.push(`${at('tls')}: 'tls: skip' with L7 rules on port 443 — L7 inspection cannot work on encrypted traffic`)
      }
      ;(ep.allowed_ips ?? []).forEach((entry, j) => {
        const v = checkAllowedIpsEntry(entry)
        if (v.ok && v.warning) w.push(`${at('allowed_ips', j)}: ${v.warning}`)
      })
      if (nonEmpty(ep.path)) {
        const g = globSyntaxProblem(ep.path)
        if (g) w.push(`${at('path')}: ${g}`)
      }
      if (proto !== 'graphql' && proto !== 'websocket' && (ep.persisted_queries !== undefined || ep.graphql_persisted_queries !== undefined || ep.graphql_max_body_bytes !== undefined)) {
        w.push(`${at()}: GraphQL-specific endpoint fields are ignored unless protocol is graphql or websocket`)
      }
      if (!isJsonRpcFamily(proto) && ep.json_rpc?.max_body_bytes) {
        w.push(`${at('json_rpc')}: JSON-RPC-specific endpoint fields are ignored unless protocol is json-rpc or mcp`)
      }
      if (ep.websocket_credential_rewrite && proto !== 'rest' && proto !== 'websocket') {
        w.push(`${at('websocket_credential_rewrite')}: ignored unless protocol is rest or websocket`)
      }
      if (ep.request_body_credential_rewrite && proto !== 'rest') {
        w.push(`${at('request_body_credential_rewrite')}: ignored unless protocol is rest`)
      }
      const methods = proto === 'websocket' ? WS_METHODS : REST_METHODS
      const checkRule = (r: L7Rule, base: PropertyKey[], isAllow: boolean) => {
        if ((proto === 'rest' || proto === 'websocket') && nonEmpty(r.method) && !methods.includes(r.method.toUpperCase())) {
          w.push(`${at(...base, 'method')}: unknown HTTP/WebSocket method '${r.method}'; standard methods: ${methods.join(', ')}`)
        }
        if (nonEmpty(r.path)) {
          const g = globSyntaxProblem(r.path)
          if (g) w.push(`${at(...base, 'path')}: ${g}`)
        }
        for (const [q, m] of Object.entries(r.query ?? {})) {
          for (const s of typeof m === 'string' ? [m] : m.any) {
            const g = globSyntaxProblem(s)
            if (g) w.push(`${at(...base, 'query', q)}: ${g}`)
          }
        }
        if (!isAllow && nonEmpty(r.command) && proto === 'rest') w.push(`${at(...base, 'command')}: command is for SQL protocol, not REST`)
        if (hasGraphqlFields(r) && proto !== 'graphql' && proto !== 'websocket') {
          w.push(`${at(...base)}: GraphQL rule fields are ignored unless protocol is graphql or websocket`)
        }
      }
      ;(ep.rules ?? []).forEach((r, j) => checkRule(r.allow, ['rules', j, 'allow'], true))
      ;(ep.deny_rules ?? []).forEach((r, j) => checkRule(r, ['deny_rules', j], false))
    })
  }
  return w
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/** Depth of nested objects/arrays, computed without recursion (input may be hostile). */
function maxDepth(root: unknown, limit: number): number {
  let max = 0
  const stack: [unknown, number][] = [[root, 1]]
  while (stack.length > 0) {
    const [v, d] = stack.pop()!
    if (v === null || typeof v !== 'object') continue
    if (d > max) max = d
    if (max > limit) return max
    const children = Array.isArray(v) ? v : Object.values(v as object)
    for (const c of children) if (c !== null && typeof c === 'object') stack.push([c, d + 1])
  }
  return max
}

function structuralSizeProblem(obj: unknown): string | undefined {
  if (maxDepth(obj, MAX_POLICY_DEPTH) > MAX_POLICY_DEPTH) return `(document): nests deeper than ${MAX_POLICY_DEPTH} levels`
  return undefined
}

/**
 * A key with an empty value (`read_only:` with everything under it commented out) is YAML null.
 * OpenShell's YAML reader (serde_yml) reads an empty value as the empty list/map/default, i.e. as
 * if the key were omitted, so null map values are dropped here (a copy; the input is untouched).
 * Middleware `config` is opaque JSON and keeps its nulls; nulls inside lists stay (and are errors).
 */
function withoutNullFields(v: unknown, inConfig = false): unknown {
  if (Array.isArray(v)) return v.map(x => withoutNullFields(x, inConfig))
  if (v === null || typeof v !== 'object') return v
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) {
    if (x === null && !inConfig) continue
    Object.defineProperty(out, k, { value: withoutNullFields(x, inConfig || k === 'config'), enumerable: true, writable: true, configurable: true })
  }
  return out
}

function validateParsed(obj: unknown, source: string, extraWarnings: string[]): { policy: Policy; warnings: string[] } {
  const depth = structuralSizeProblem(obj)
  if (depth) throw new PolicyError(source, [depth])
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new PolicyError(source, [`(document): expected a map with "version: 1" at the top, got ${obj === undefined || obj === null ? 'an empty document' : typeName(obj)}`])
  }
  const r = PolicySchema.safeParse(withoutNullFields(obj), { reportInput: true })
  if (!r.success) throw new PolicyError(source, formatPolicyIssues(r.error))
  return { policy: r.data, warnings: [...extraWarnings, ...validationWarnings(r.data)].map(printable) }
}

/** Key path of the YAML node that contains `offset` (for duplicate-key and similar errors). */
function keyPathAtOffset(doc: Document, offset: number): PropertyKey[] {
  const path: PropertyKey[] = []
  let node: unknown = doc.contents
  for (let guard = 0; guard < 200 && node; guard++) {
    if (isMap(node)) {
      const pair = node.items.find(p => {
        const k = p.key as YamlNode | null
        const v = p.value as YamlNode | null
        const start = k?.range?.[0] ?? v?.range?.[0] ?? Infinity
        const end = v?.range?.[2] ?? k?.range?.[2] ?? -1
        return start <= offset && offset <= end
      })
      if (!pair) break
      const k = pair.key
      path.push(isScalar(k) ? String(k.value) : '?')
      const kr = (k as YamlNode | null)?.range
      if (kr && offset <= kr[1]) break
      node = pair.value
    } else if (isSeq(node)) {
      const idx = node.items.findIndex(it => {
        const r = (it as YamlNode | null)?.range
        return r != null && r[0] <= offset && offset <= r[2]
      })
      if (idx < 0) break
      path.push(idx)
      node = node.items[idx]
    } else if (isPair(node)) {
      node = node.value
    } else break
  }
  return path
}

function yamlIssue(doc: Document | undefined, e: { code: string; message: string; pos: [number, number]; linePos?: [{ line: number; col: number }, ...unknown[]] }): string {
  const first = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')
  const where = e.linePos?.[0] ? ` (line ${e.linePos[0].line}, column ${e.linePos[0].col})` : ''
  if (e.code === 'DUPLICATE_KEY' && doc) {
    const path = keyPathAtOffset(doc, e.pos[0])
    if (path.length > 0) return `${formatKeyPath(path)}: duplicate key${where}`
  }
  if (/call stack/i.test(first)) return `(document): nests too deeply for a policy${where}`
  return `(document): YAML error: ${first}${where}`
}

/**
 * Parses and validates policy YAML. Safety, before any policy semantics: documents over 256 KiB
 * are refused before parsing; duplicate keys are errors (the last one would otherwise silently
 * win); alias expansion is capped; exactly one document is allowed; nesting is bounded.
 */
export function parsePolicyText(text: string, source: string): { policy: Policy; warnings: string[] } {
  const bytes = Buffer.byteLength(text, 'utf8')
  if (bytes > MAX_POLICY_BYTES) {
    throw new PolicyError(source, [`(document): policy is ${bytes} bytes; the maximum is ${MAX_POLICY_BYTES} (256 KiB)`])
  }
  let docs: Document.Parsed[]
  try {
    const parsed = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true, strict: true })
    docs = Array.isArray(parsed) ? parsed : []
  } catch (e) {
    throw new PolicyError(source, [`(document): YAML cannot be parsed: ${(e as Error).message.split('\n')[0]}`], { cause: e })
  }
  if (docs.length === 0) throw new PolicyError(source, ['(document): the policy is empty; it needs at least "version: 1"'])
  if (docs.length > 1) {
    throw new PolicyError(source, [`(document): ${docs.length} YAML documents found; a policy file holds exactly one (remove the extra "---" separators)`])
  }
  const doc = docs[0]!
  if (doc.errors.length > 0) {
    let plain: Document | undefined
    if (doc.errors.some(e => e.code === 'DUPLICATE_KEY')) {
      try {
        plain = (parseAllDocuments(text, { uniqueKeys: false }) as Document.Parsed[])[0]
      } catch {
        plain = undefined
      }
    }
    throw new PolicyError(source, [...new Set(doc.errors.map(e => yamlIssue(plain, e as never)))])
  }
  let obj: unknown
  try {
    obj = doc.toJS({ maxAliasCount: MAX_YAML_ALIAS_COUNT })
  } catch (e) {
    const m = (e as Error).message ?? String(e)
    const reason = /alias/i.test(m)
      ? `YAML aliases expand too much (more than ${MAX_YAML_ALIAS_COUNT} resolved nodes per alias); inline the repeated values`
      : /call stack/i.test(m)
        ? 'nests too deeply for a policy'
        : `YAML cannot be converted: ${m.split('\n')[0]}`
    throw new PolicyError(source, [`(document): ${reason}`], { cause: e })
  }
  const yamlWarnings = doc.warnings.map(x => `(document): YAML warning: ${x.message.split('\n')[0]}`)
  return validateParsed(obj, source, yamlWarnings)
}

/** Validates an already-parsed policy object (from JSON, or built in code). */
export function validatePolicy(obj: unknown, source: string): { policy: Policy; warnings: string[] } {
  const depth = structuralSizeProblem(obj)
  if (depth) throw new PolicyError(source, [depth])
  let size: number
  try {
    size = Buffer.byteLength(JSON.stringify(obj) ?? '')
  } catch (e) {
    throw new PolicyError(source, [`(document): cannot be serialised: ${(e as Error).message}`], { cause: e })
  }
  if (size > MAX_POLICY_BYTES) {
    throw new PolicyError(source, [`(document): policy is ${size} bytes serialised; the maximum is ${MAX_POLICY_BYTES} (256 KiB)`])
  }
  return validateParsed(obj, source, [])
}

/**
 * Reads and validates a policy file. Fails closed: a missing or unreadable policy is an error,
 * never "no policy" (which a caller could mistake for "no restrictions"). Reads at most 256 KiB + 1
 * bytes, so /dev/zero or a huge file cannot exhaust memory; pipes (`<(...)`) work.
 */
export function loadPolicyFile(path: string): { policy: Policy; warnings: string[] } {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT') {
      const m = `policy file not found: ${path}`
      throw new PolicyError(path, [`(document): ${m}`], { summary: m, code: 'POLICY_NOT_FOUND', hint: 'check the path; podshell never falls back to another policy', cause: e })
    }
    const m = `cannot open policy file ${path} (${code ?? 'error'})`
    throw new PolicyError(path, [`(document): ${m}`], { summary: m, code: 'POLICY_UNREADABLE', hint: 'check the file permissions', cause: e })
  }
  let data: Buffer | undefined
  try {
    data = readFdBounded(fd, MAX_POLICY_BYTES)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    const what = code === 'EISDIR' ? `${path} is a directory, not a policy file` : `cannot read policy file ${path} (${code ?? 'error'})`
    throw new PolicyError(path, [`(document): ${what}`], { summary: what, code: 'POLICY_UNREADABLE', hint: 'give the path of a policy YAML file', cause: e })
  } finally {
    closeSync(fd)
  }
  if (data === undefined) throw new PolicyError(path, [`(document): policy file is larger than ${MAX_POLICY_BYTES} bytes (256 KiB)`])
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data)
  } catch (e) {
    throw new PolicyError(path, ['(document): the file is not valid UTF-8'], { cause: e })
  }
  return parsePolicyText(text, path)
}

// ---------------------------------------------------------------------------------------------
// Defaults, serialisation, hashing
// ---------------------------------------------------------------------------------------------

/**
 * OpenShell's restrictive default (lib.rs `restrictive_default_policy`): standard system paths,
 * Landlock best effort, no process section, and no network policies, i.e. all egress denied.
 */
export function restrictiveDefaultPolicy(): Policy {
  return {
    version: 1,
    filesystem_policy: {
      include_workdir: true,
      read_only: ['/usr', '/lib', '/proc', '/dev/urandom', '/app', '/etc', '/var/log'],
      read_write: ['/tmp', '/dev/null'],
    },
    landlock: { compatibility: 'best_effort' },
  }
}

function sortedRecord<T>(r: Record<string, T> | undefined): Record<string, T> | undefined {
  if (r === undefined) return undefined
  const out: Record<string, T> = {}
  for (const k of Object.keys(r).sort()) out[k] = r[k]!
  return out
}

/**
 * Canonical YAML: top-level sections and fields in schema order, network_policies and
 * network_middlewares sorted by key (as OpenShell prints them), no YAML anchors.
 */
export function policyToYaml(p: Policy): string {
  const doc: Record<string, unknown> = { version: p.version }
  if (p.filesystem_policy !== undefined) doc.filesystem_policy = p.filesystem_policy
  if (p.landlock !== undefined) doc.landlock = p.landlock
  if (p.process !== undefined) doc.process = p.process
  if (p.network_policies !== undefined) doc.network_policies = sortedRecord(p.network_policies)
  if (p.network_middlewares !== undefined) doc.network_middlewares = sortedRecord(p.network_middlewares)
  return stringify(doc, { aliasDuplicateObjects: false, lineWidth: 0 })
}

function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null'
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  const o = v as Record<string, unknown>
  const keys = Object.keys(o).filter(k => o[k] !== undefined).sort()
  return `{${keys.map(k => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`
}

/** sha256 (hex) of the policy's canonical JSON (keys sorted at every level). */
export function policyHash(p: Policy): string {
  return createHash('sha256').update(canonicalJson(p)).digest('hex')
}

// ---------------------------------------------------------------------------------------------
// What podshell accepts but does not enforce
// ---------------------------------------------------------------------------------------------

/**
 * One line per field podshell accepts (for OpenShell compatibility) but does not enforce, so that
 * nothing is silently weaker than the document says. The gateway enforces: hosts and ports
 * (CONNECT and plain-HTTP proxy requests), allowed_ips, and REST/WebSocket-upgrade method/path/query
 * rules on plain HTTP and on HTTPS, which it terminates for L7 endpoints that are not `tls: skip`
 * (src/gateway/policy-engine.ts, src/gateway/tls-terminate.ts). filesystem_policy is mapped onto mounts
 * (src/sandbox/fs-policy.ts); what the mapping cannot express is warned here. Keep in step.
 */
export function unenforcedWarnings(p: Policy): string[] {
  const w: string[] = []
  if (p.filesystem_policy !== undefined) {
    w.push(
      'filesystem_policy: enforced with mounts, not Landlock — include_workdir sets the workdir mount read-write or read-only, read_write/read_only paths ' +
        'inside mounted directories are bound writable/read-only, other read_write paths get a writable tmpfs; paths the policy does not list stay ' +
        'readable (the image is read-only, not hidden), and the agent can always write its home and /tmp',
    )
  }
  if (p.landlock !== undefined) {
    w.push('landlock: not enforced — podshell uses container mounts, not Landlock, for filesystem access; compatibility has no effect')
  }
  if (p.process?.run_as_user || p.process?.run_as_group) {
    w.push('process: not enforced — the agent runs as your own uid/gid (rootless Podman, --userns=keep-id), whatever run_as_user/run_as_group say')
  }
  for (const key of Object.keys(p.network_middlewares ?? {})) {
    w.push(`${formatKeyPath(['network_middlewares', key])}: not enforced — podshell runs no supervisor middleware; requests pass without this stage`)
  }
  for (const [key, rule] of Object.entries(p.network_policies ?? {})) {
    const bin = (rule.binaries ?? []).length > 0
    w.push(
      bin
        ? `${formatKeyPath(['network_policies', key, 'binaries'])}: not enforced — any process in the sandbox may use these endpoints`
        : `${formatKeyPath(['network_policies', key, 'binaries'])}: none listed — OpenShell lets no process use these endpoints; podshell does not identify processes and lets any process use them`,
    )
    ;(rule.endpoints ?? []).forEach((ep, i) => {
      const at = (...rest: PropertyKey[]) => formatKeyPath(['network_policies', key, 'endpoints', i, ...rest])
      for (const f of ['websocket_credential_rewrite', 'request_body_credential_rewrite', 'allow_uninspected_credentials'] as const) {
        if (ep[f]) w.push(`${at(f)}: not enforced — the podshell gateway does not rewrite or gate credentials in traffic`)
      }
      for (const f of ['credential_signing', 'signing_service', 'signing_region', 'credential_binding'] as const) {
        if (ep[f] !== undefined) w.push(`${at(f)}: not enforced — the podshell gateway does not sign or bind credentials`)
      }
      const proto = ep.protocol
      const enforce = ep.enforcement === 'enforce'
      const narrowed = (ep.rules?.length ?? 0) > 0 || (ep.deny_rules?.length ?? 0) > 0 || (ep.access !== undefined && ep.access !== 'full')
      if (proto === 'websocket') {
        w.push(
          `${at('protocol')}: websocket — podshell checks the upgrade request (GET method/path/query, ws:// and inspected wss://) and does not inspect messages: ` +
            'an upgrade narrower than full is allowed only where WEBSOCKET_TEXT is allowed; after an allowed upgrade every client message passes',
        )
      } else if (proto === 'graphql' || proto === 'mcp' || proto === 'json-rpc' || proto === 'sql') {
        w.push(
          `${at('protocol')}: ${proto} L7 rules are not enforced — podshell's gateway checks REST method/path/query only; ` +
            (enforce
              ? 'with enforcement: enforce, requests it cannot check are denied'
              : 'with enforcement: audit (the default), requests are allowed and logged unchecked'),
        )
      } else if (proto === 'tcp') {
        w.push(`${at('protocol')}: tcp — podshell has no transparent TCP capture; only clients that use the proxy (HTTPS_PROXY/CONNECT) reach this endpoint`)
      } else if (proto === 'rest' && narrowed && ep.tls === 'skip') {
        w.push(
          `${at()}: REST rules narrower than full with tls: skip — HTTPS to this endpoint is not inspected: ` +
            (enforce
              ? 'its CONNECTs are denied (method/path are inside TLS); drop tls: skip to have each request checked'
              : 'with enforcement: audit (the default), HTTPS requests are allowed and logged without a method/path check'),
        )
      }
    })
  }
  return w.map(printable)
}

/** JSON Schema (draft 2020-12) of the policy document, for editors. */
export function policyJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(PolicySchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>
  return {
    ...schema,
    $id: 'urn:podshell:schema:openshell-policy:v1',
    title: 'OpenShell sandbox policy (v1), as accepted by podshell',
  }
}
