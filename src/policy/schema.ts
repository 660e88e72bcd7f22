import { z } from 'zod'
import { HostPattern, hostPatternProblem } from '../rules/host-pattern.js'
import { MAX_FILESYSTEM_PATHS, MAX_MIDDLEWARES } from './limits.js'
import {
  checkEndpoint,
  checkMiddleware,
  checkFsPath,
  checkProcessIdentity,
  compileSelector,
  type AddIssue,
} from './checks.js'
import { endpointAmbiguities } from './ambiguity.js'

// The one host-pattern rule lives in src/rules/host-pattern.ts; re-exported for existing importers.
export { HostPattern, hostPatternProblem }
export * from './limits.js'
export { endpointPorts, hostWildcardProblem } from './checks.js'

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
// Structural schema
// ---------------------------------------------------------------------------------------------

const QueryAnySchema = z
  .strictObject({
    any: z.array(z.string().describe('A glob')).min(1, 'list must not be empty').describe('Matches when any of these globs matches'),
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

export const l7MatchShape = {
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

const portSchema = z.number().int('must be an integer').min(0, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535')

const u32 = z.number().int('must be an integer').min(0, 'must not be negative').max(4294967295, 'must be at most 4294967295')

export const EndpointObject = z.strictObject({
  host: z
    .string()
    .describe('Hostname or IP; wildcards *.x.com, **.x.com, *-foo.x.com (first label) and a whole middle "*" label')
    .optional(),
  path: z.string().describe('HTTP path glob selecting between L7 endpoints on the same host:port').optional(),
  port: portSchema.describe('TCP port 1-65535 (ignored when ports is set)').optional(),
  ports: z.array(portSchema.describe('TCP port 1-65535')).describe('Several ports; wins over port').optional(),
  protocol: z
    .enum(['rest', 'websocket', 'graphql', 'mcp', 'json-rpc', 'sql', 'tcp'])
    .describe('L7 inspection protocol; omitted means L4 passthrough through the proxy')
    .optional(),
  tls: z
    .enum(['skip', 'terminate', 'passthrough'])
    .describe('skip disables TLS auto-detection; terminate/passthrough are deprecated no-ops')
    .optional(),
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
  graphql_persisted_queries: z
    .record(z.string(), GraphqlOperationSchema)
    .describe('Trusted GraphQL persisted-query registry keyed by hash or id')
    .optional(),
  graphql_max_body_bytes: u32.describe('Max GraphQL request body buffered for inspection (default 65536)').optional(),
  credential_signing: z.enum(['sigv4', 'sigv4:body', 'sigv4:no_body']).describe('Proxy-side AWS SigV4 re-signing mode').optional(),
  signing_service: z.string().describe('AWS service name for SigV4 (required with credential_signing)').optional(),
  signing_region: z.string().describe('AWS region override for SigV4').optional(),
  credential_binding: z
    .strictObject({ provider: z.string().describe('Name of an attached provider') })
    .describe("Bind an attached endpointless provider's credentials to this endpoint")
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

export const BinarySchema = z
  .strictObject({
    path: z.string().describe('Executable path or glob (* and **)'),
    harness: z.boolean().describe('Deprecated and ignored (accepted for compatibility)').optional(),
  })
  .describe('An executable allowed to use the endpoints')
export type Binary = z.infer<typeof BinarySchema>

export const MiddlewareObject = z.strictObject({
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
// The schema
// ---------------------------------------------------------------------------------------------

const addAt =
  (ctx: z.RefinementCtx, base: PropertyKey[] = []): AddIssue =>
  (path, message) =>
    ctx.addIssue({ code: 'custom', message, path: [...base, ...path] as (string | number)[] })

const EndpointSchema = EndpointObject.superRefine((ep, ctx) => checkEndpoint(ep, addAt(ctx))).describe(
  'A destination: host (or allowed_ips) and port(s), with optional L7 inspection',
)

export const NetworkPolicySchema = z
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
        compatibility: z
          .enum(['best_effort', 'hard_requirement'])
          .describe('What happens when Landlock is unavailable (default best_effort)')
          .optional(),
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
            add(
              ['network_middlewares', key, 'endpoints'],
              `fail-closed selector covers network policy '${pk}' tls: skip endpoint '${ep.host}', which cannot be inspected`,
            )
          }
        }
      }
    }
    endpointAmbiguities(p, add)
  })
  .describe('OpenShell sandbox policy, version 1')

export type Policy = z.infer<typeof PolicySchema>
