import { describe, it, expect } from 'vitest'
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PolicyError, PolicySchema, endpointPorts, type Policy } from '../../src/policy/schema.js'
import { loadPolicyFile, parsePolicyText, validatePolicy } from '../../src/policy/parse.js'
import { policyHash, policyJsonSchema, policyToYaml, restrictiveDefaultPolicy, unenforcedWarnings } from '../../src/policy/document.js'
import { PodshellError } from '../../src/errors.js'

/** A policy with one network policy `gh` whose endpoint list is `eps` (YAML flow or block). */
const withEndpoint = (ep: string, extra = '') =>
  `version: 1\nnetwork_policies:\n  gh:\n    name: github\n    endpoints:\n      - ${ep}\n    binaries: [{ path: /usr/bin/git }]\n${extra}`

function issuesOf(text: string): string[] {
  try {
    parsePolicyText(text, 'test.yaml')
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError)
    expect(e).toBeInstanceOf(PodshellError)
    return (e as PolicyError).issues
  }
  throw new Error('expected the policy to be rejected, but it was accepted')
}

/** Asserts rejection with an issue at exactly `path` whose message contains `fragment`. */
function expectRejected(text: string, path: string, fragment: string): void {
  const issues = issuesOf(text)
  const hit = issues.find(i => i.startsWith(`${path}: `) && i.includes(fragment))
  expect(hit, `no issue at ${path} containing ${JSON.stringify(fragment)} in:\n${issues.join('\n')}`).toBeDefined()
}

const accept = (text: string) => parsePolicyText(text, 'test.yaml')

const EP = 'network_policies.gh.endpoints[0]'

describe('malformed policies are rejected with the key path of the problem', () => {
  const cases: [string, string, string, string][] = [
    // [what, yaml, key path, message fragment]
    ['unknown top-level key', 'version: 1\nverison: 1\n', 'verison', 'unrecognized key (did you mean "version"?)'],
    ['unknown filesystem_policy key', 'version: 1\nfilesystem_policy: { read_olny: [/usr] }\n', 'filesystem_policy.read_olny', 'did you mean "read_only"'],
    ['unknown landlock key', 'version: 1\nlandlock: { compat: best_effort }\n', 'landlock.compat', 'unrecognized key'],
    ['unknown process key', 'version: 1\nprocess: { run_as: sandbox }\n', 'process.run_as', 'unrecognized key'],
    ['unknown network policy key', 'version: 1\nnetwork_policies:\n  gh:\n    endpoint: []\n', 'network_policies.gh.endpoint', 'did you mean "endpoints"'],
    ['unknown endpoint key', withEndpoint('{ hots: api.github.com, port: 443 }'), `${EP}.hots`, 'unrecognized key (did you mean "host"?)'],
    ['unknown binary key', 'version: 1\nnetwork_policies:\n  gh:\n    endpoints: [{ host: a.example.com, port: 443 }]\n    binaries: [{ pth: /usr/bin/git }]\n', 'network_policies.gh.binaries[0].pth', 'did you mean "path"'],
    ['unknown allow-rule key', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, rules: [{ allow: { methd: GET, path: /x } }] }'), `${EP}.rules[0].allow.methd`, 'did you mean "method"'],
    ['rule without allow', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, rules: [{ alow: { method: GET } }] }'), `${EP}.rules[0].alow`, 'did you mean "allow"'],
    ['unknown deny-rule key', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, access: full, deny_rules: [{ method: POST, paht: /x }] }'), `${EP}.deny_rules[0].paht`, 'did you mean "path"'],
    ['unknown mcp key', withEndpoint('{ host: a.example.com, port: 443, protocol: mcp, mcp: { strict: true, allow_all_known_mcp_methods: true } }'), `${EP}.mcp.strict`, 'unrecognized key'],
    ['unknown middleware key', 'version: 1\nnetwork_middlewares:\n  mw: { middleware: x, ordr: 1, endpoints: { include: [a.example.com] } }\n', 'network_middlewares.mw.ordr', 'did you mean "order"'],
    ['unknown selector key', 'version: 1\nnetwork_middlewares:\n  mw: { middleware: x, endpoints: { includes: [a.example.com] } }\n', 'network_middlewares.mw.endpoints.includes', 'did you mean "include"'],
    ['port as a string', withEndpoint('{ host: a.example.com, port: "443" }'), `${EP}.port`, 'expected a number, got a string'],
    ['include_workdir not a boolean', 'version: 1\nfilesystem_policy: { include_workdir: "yes" }\n', 'filesystem_policy.include_workdir', 'expected a boolean'],
    ['endpoints as a map', 'version: 1\nnetwork_policies:\n  gh:\n    endpoints: { host: a.example.com }\n', 'network_policies.gh.endpoints', 'expected a list, got a map'],
    ['run_as_user as a number (OpenShell wants a string)', 'version: 1\nprocess: { run_as_user: 1500 }\n', 'process.run_as_user', 'expected a string'],
    ['binary without path', withEndpoint('{ host: a.example.com, port: 443 }').replace('{ path: /usr/bin/git }', '{ harness: true }'), 'network_policies.gh.binaries[0].path', 'required'],
    ['relative path', 'version: 1\nfilesystem_policy: { read_only: [usr/lib] }\n', 'filesystem_policy.read_only[0]', "path must be absolute (start with '/'): usr/lib"],
    ['.. in a path', 'version: 1\nfilesystem_policy: { read_write: [/tmp, /sandbox/../etc] }\n', 'filesystem_policy.read_write[1]', "'..' traversal"],
    ['/ read-write', 'version: 1\nfilesystem_policy: { read_write: [/] }\n', 'filesystem_policy.read_write[0]', 'overly broad: /'],
    ['/// read-write', 'version: 1\nfilesystem_policy: { read_write: ["///"] }\n', 'filesystem_policy.read_write[0]', 'overly broad'],
    ['path over 4096 bytes', `version: 1\nfilesystem_policy: { read_only: [/${'a'.repeat(4100)}] }\n`, 'filesystem_policy.read_only[0]', 'path exceeds maximum length (4101 > 4096)'],
    ['more than 256 paths', `version: 1\nfilesystem_policy:\n  read_only: [${Array.from({ length: 200 }, (_, i) => `/r${i}`).join(', ')}]\n  read_write: [${Array.from({ length: 57 }, (_, i) => `/w${i}`).join(', ')}]\n`, 'filesystem_policy', 'too many filesystem paths (257 > 256)'],
    ['rules: []', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, rules: [] }'), `${EP}.rules`, 'rules list cannot be empty'],
    ['deny_rules: []', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, access: full, deny_rules: [] }'), `${EP}.deny_rules`, 'deny_rules list cannot be empty'],
    ['access together with rules', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, access: full, rules: [{ allow: { method: GET, path: /x } }] }'), `${EP}.access`, 'rules and access are mutually exclusive'],
    ['mcp with access', withEndpoint('{ host: a.example.com, port: 443, protocol: mcp, access: full }'), `${EP}.access`, 'protocol mcp does not support access presets'],
    ['json-rpc with access', withEndpoint('{ host: a.example.com, port: 443, protocol: json-rpc, access: read-only }'), `${EP}.access`, 'protocol json-rpc does not support access presets'],
    ['json-rpc without rules', withEndpoint('{ host: a.example.com, port: 443, protocol: json-rpc }'), `${EP}.rules`, 'requires explicit rules'],
    ['rest without rules or access', withEndpoint('{ host: a.example.com, port: 443, protocol: rest }'), `${EP}.protocol`, 'requires rules or access'],
    ['tcp with L7 fields', withEndpoint('{ host: redis.example.com, port: 6379, protocol: tcp, path: /x, enforcement: enforce }'), `${EP}.enforcement`, 'protocol tcp does not support L7-only fields: enforcement, path'],
    ['tcp with rules', withEndpoint('{ host: redis.example.com, port: 6379, protocol: tcp, rules: [{ allow: { method: GET, path: /x } }] }'), `${EP}.rules`, 'protocol tcp does not support access, rules, or deny_rules'],
    ['tcp with an IP literal', withEndpoint('{ host: 10.0.0.5, port: 6379, protocol: tcp }'), `${EP}.host`, 'must use a DNS hostname, not an IP literal'],
    ['tcp without host', withEndpoint('{ port: 6379, protocol: tcp, allowed_ips: [10.0.0.0/8] }'), `${EP}.host`, 'protocol tcp requires a DNS hostname'],
    ['tcp host with a trailing dot', withEndpoint('{ host: redis.example.com., port: 6379, protocol: tcp }'), `${EP}.host`, 'trailing DNS root dot'],
    ['bare * host', withEndpoint('{ host: "*", port: 443 }'), `${EP}.host`, "host wildcard '*' matches all hosts"],
    ['bare ** host', withEndpoint('{ host: "**", port: 443 }'), `${EP}.host`, "host wildcard '**' matches all hosts"],
    ['TLD-wide wildcard *.com', withEndpoint('{ host: "*.com", port: 443 }'), `${EP}.host`, "TLD wildcard '*.com' is not allowed"],
    ['TLD-wide wildcard **.com', withEndpoint('{ host: "**.com", port: 443 }'), `${EP}.host`, "TLD wildcard '**.com'"],
    ['two-label intra-label wildcard', withEndpoint('{ host: "*-api.com", port: 443 }'), `${EP}.host`, 'TLD wildcard'],
    ['partial wildcard outside the first label', withEndpoint('{ host: "api.*x.example.com", port: 443 }'), `${EP}.host`, "must be the entire label '*'"],
    ['** outside the first label', withEndpoint('{ host: "api.**.example.com", port: 443 }'), `${EP}.host`, "recursive '**'"],
    ['** inside the first label', withEndpoint('{ host: "x**.example.com", port: 443 }'), `${EP}.host`, "recursive '**'"],
    ['port 0', withEndpoint('{ host: a.example.com, port: 0 }'), `${EP}.port`, 'invalid port 0'],
    ['port 70000', withEndpoint('{ host: a.example.com, port: 70000 }'), `${EP}.port`, 'between 1 and 65535'],
    ['ports with 0', withEndpoint('{ host: a.example.com, ports: [443, 0] }'), `${EP}.ports[1]`, 'invalid port 0'],
    ['ports with 70000', withEndpoint('{ host: a.example.com, ports: [70000] }'), `${EP}.ports[0]`, 'between 1 and 65535'],
    ['no port at all', withEndpoint('{ host: a.example.com }'), `${EP}.port`, 'must declare at least one port'],
    ['empty host without allowed_ips', withEndpoint('{ port: 443 }'), `${EP}.host`, 'endpoint host must not be empty'],
    ['allowed_ips loopback', withEndpoint('{ host: a.example.com, port: 443, allowed_ips: [127.0.0.1] }'), `${EP}.allowed_ips[0]`, 'always-blocked range'],
    ['allowed_ips link-local CIDR', withEndpoint('{ host: a.example.com, port: 443, allowed_ips: [10.0.0.0/8, 169.254.169.254/32] }'), `${EP}.allowed_ips[1]`, 'always-blocked'],
    ['allowed_ips 0.0.0.0/0', withEndpoint('{ host: a.example.com, port: 443, allowed_ips: ["0.0.0.0/0"] }'), `${EP}.allowed_ips[0]`, 'always-blocked'],
    ['allowed_ips broad range over loopback', withEndpoint('{ host: a.example.com, port: 443, allowed_ips: ["64.0.0.0/2"] }'), `${EP}.allowed_ips[0]`, 'always-blocked'],
    ['allowed_ips IPv6 loopback', withEndpoint('{ host: a.example.com, port: 443, allowed_ips: ["::1"] }'), `${EP}.allowed_ips[0]`, 'always-blocked'],
    ['allowed_ips IPv4-mapped loopback', withEndpoint('{ host: a.example.com, port: 443, allowed_ips: ["::ffff:127.0.0.1"] }'), `${EP}.allowed_ips[0]`, 'always-blocked'],
    ['allowed_ips IPv6 link-local', withEndpoint('{ host: a.example.com, port: 443, allowed_ips: ["fe80::/64"] }'), `${EP}.allowed_ips[0]`, 'always-blocked'],
    ['allowed_ips not an IP', withEndpoint('{ host: a.example.com, port: 443, allowed_ips: [intranet] }'), `${EP}.allowed_ips[0]`, 'invalid CIDR/IP in allowed_ips: intranet'],
    ['allowed_ips prefix too long', withEndpoint('{ host: a.example.com, port: 443, allowed_ips: [10.0.0.0/33] }'), `${EP}.allowed_ips[0]`, 'invalid CIDR/IP'],
    ['uid 0', 'version: 1\nprocess: { run_as_user: "0" }\n', 'process.run_as_user', "got '0'"],
    ['root by name', 'version: 1\nprocess: { run_as_group: root }\n', 'process.run_as_group', "got 'root'"],
    ['uid u32::MAX', 'version: 1\nprocess: { run_as_user: "4294967295" }\n', 'process.run_as_user', 'range [1, 4294967294]'],
    ['version 2', 'version: 2\n', 'version', 'must be 1'],
    ['version missing', 'network_policies: {}\n', 'version', 'required'],
    ['version as a string', 'version: "1"\n', 'version', 'must be 1'],
    ['credential_signing without signing_service', withEndpoint('{ host: bedrock.us-east-1.amazonaws.com, port: 443, protocol: rest, access: full, credential_signing: sigv4 }'), `${EP}.signing_service`, 'signing_service is empty'],
    ['credential_signing with body rewrite', withEndpoint('{ host: s3.example.com, port: 443, protocol: rest, access: full, credential_signing: sigv4, signing_service: s3, request_body_credential_rewrite: true }'), `${EP}.credential_signing`, 'mutually exclusive'],
    ['deny_rules without protocol', withEndpoint('{ host: a.example.com, port: 443, deny_rules: [{ method: POST, path: /x }] }'), `${EP}.deny_rules`, 'deny_rules require protocol'],
    ['deny_rules without a base allow set', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, deny_rules: [{ method: POST, path: /x }] }'), `${EP}.deny_rules`, 'require rules or access'],
    ['rules that allow nothing', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, rules: [{ allow: {} }] }'), `${EP}.rules`, 'rules would deny all traffic'],
    ['sql with enforce', withEndpoint('{ host: db.example.com, port: 5432, protocol: sql, enforcement: enforce, access: full }'), `${EP}.enforcement`, 'SQL enforcement requires full SQL parsing'],
    ['graphql rule without operation_type', withEndpoint('{ host: api.example.com, port: 443, protocol: graphql, rules: [{ allow: { operation_name: Foo } }] }'), `${EP}.rules[0].allow.operation_type`, 'required for GraphQL'],
    ['graphql empty fields', withEndpoint('{ host: api.example.com, port: 443, protocol: graphql, rules: [{ allow: { operation_type: query, fields: [] } }] }'), `${EP}.rules[0].allow.fields`, 'must not be empty'],
    ['unknown protocol', withEndpoint('{ host: a.example.com, port: 443, protocol: grpc, access: full }'), `${EP}.protocol`, 'must be one of rest, websocket, graphql, mcp, json-rpc, sql, tcp'],
    ['enforcement typo (OpenShell would silently audit)', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, access: full, enforcement: enforc }'), `${EP}.enforcement`, 'must be one of enforce, audit'],
    ['access typo', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, access: read-olny }'), `${EP}.access`, 'must be one of read-only, read-write, full'],
    ['landlock typo', 'version: 1\nlandlock: { compatibility: best-effort }\n', 'landlock.compatibility', 'must be one of best_effort, hard_requirement'],
    ['query matcher with a glob key', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: /x, query: { repo: { glob: "a*" } } } }] }'), `${EP}.rules[0].allow.query.repo.glob`, 'unrecognized key'],
    ['query any: []', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: /x, query: { repo: { any: [] } } } }] }'), `${EP}.rules[0].allow.query.repo.any`, 'list must not be empty'],
    ['reserved _provider_ key', 'version: 1\nnetwork_policies:\n  _provider_github: { endpoints: [{ host: a.example.com, port: 443 }] }\n', 'network_policies._provider_github', "reserved '_provider_' prefix"],
    ['endpoint path not starting with /', withEndpoint('{ host: a.example.com, port: 443, path: api/v1, protocol: rest, access: full }'), `${EP}.path`, "must start with '/' or be '**'"],
    ['mcp options on a rest endpoint', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, access: full, mcp: { max_body_bytes: 1024 } }'), `${EP}.mcp`, 'only valid for protocol mcp'],
    ['json-rpc method glob', withEndpoint('{ host: a.example.com, port: 443, protocol: json-rpc, rules: [{ allow: { method: "reports.*" } }] }'), `${EP}.rules[0].allow.method`, 'do not support glob'],
    ['mcp tool argument matching', withEndpoint('{ host: a.example.com, port: 443, protocol: mcp, rules: [{ allow: { method: tools/call, params: { arguments: { path: "*" } } } }] }'), `${EP}.rules[0].allow.params.arguments`, 'not supported yet'],
    ['tool on a rest endpoint', withEndpoint('{ host: a.example.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: /x, tool: search } }] }'), `${EP}.rules[0].allow.tool`, 'only valid for protocol mcp'],
    ['persisted_queries typo', withEndpoint('{ host: a.example.com, port: 443, protocol: graphql, access: full, persisted_queries: allow }'), `${EP}.persisted_queries`, 'must be one of deny, allow_registered'],
    ['graphql_max_body_bytes 0', withEndpoint('{ host: a.example.com, port: 443, protocol: graphql, access: full, graphql_max_body_bytes: 0 }'), `${EP}.graphql_max_body_bytes`, 'positive integer'],
    ['more than 10 middlewares', `version: 1\nnetwork_middlewares:\n${Array.from({ length: 11 }, (_, i) => `  m${i}: { middleware: x, order: ${i}, endpoints: { include: [a.example.com] } }`).join('\n')}\n`, 'network_middlewares', 'too many middleware configs (11 > 10)'],
    ['duplicate middleware order', 'version: 1\nnetwork_middlewares:\n  a: { middleware: x, order: 5, endpoints: { include: [a.example.com] } }\n  b: { middleware: y, order: 5, endpoints: { include: [b.example.com] } }\n', 'network_middlewares.b.order', "duplicate order 5 (also used by 'a')"],
    ['two middlewares both defaulting to order 0', 'version: 1\nnetwork_middlewares:\n  a: { middleware: x, endpoints: { include: [a.example.com] } }\n  b: { middleware: y, endpoints: { include: [b.example.com] } }\n', 'network_middlewares.b.order', 'duplicate order 0'],
    ['middleware without selector', 'version: 1\nnetwork_middlewares:\n  a: { middleware: x }\n', 'network_middlewares.a.endpoints', 'endpoint selector is required'],
    ['middleware with empty include', 'version: 1\nnetwork_middlewares:\n  a: { middleware: x, endpoints: { include: [] } }\n', 'network_middlewares.a.endpoints.include', 'at least one host pattern'],
    ['middleware brace pattern', 'version: 1\nnetwork_middlewares:\n  a: { middleware: x, endpoints: { include: ["{a,b}.example.com"] } }\n', 'network_middlewares.a.endpoints.include[0]', 'brace alternates'],
    ['middleware without middleware name', 'version: 1\nnetwork_middlewares:\n  a: { endpoints: { include: [a.example.com] } }\n', 'network_middlewares.a.middleware', 'required'],
    ['fail-closed middleware over a tls: skip endpoint', `${withEndpoint('{ host: api.example.com, port: 443, tls: skip }')}network_middlewares:\n  guard: { middleware: x, endpoints: { include: ["*.example.com"] } }\n`, 'network_middlewares.guard.endpoints', "tls: skip endpoint 'api.example.com'"],
    ['same host:port with conflicting tls', 'version: 1\nnetwork_policies:\n  a: { endpoints: [{ host: api.example.com, port: 443 }] }\n  b: { endpoints: [{ host: "*.example.com", port: 443, tls: skip }] }\n', 'network_policies.b.endpoints[0]', 'tls="auto" vs "skip"'],
    ['duplicate key', 'version: 1\nnetwork_policies:\n  gh:\n    endpoints: [{ host: a.example.com, port: 443 }]\n    endpoints: [{ host: b.example.com, port: 443 }]\n', 'network_policies.gh.endpoints', 'duplicate key'],
    ['duplicate top-level key', 'version: 1\nversion: 1\n', 'version', 'duplicate key'],
  ]

  it('has at least 25 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(25)
  })

  for (const [what, yaml, path, fragment] of cases) {
    it(`rejects ${what}`, () => expectRejected(yaml, path, fragment))
  }

  it('rejects a document over 256 KiB before parsing it', () => {
    const big = `version: 1\n# ${'x'.repeat(256 * 1024)}\n`
    expectRejected(big, '(document)', 'the maximum is 262144')
  })

  it('rejects a YAML alias bomb (billion laughs) quickly', () => {
    const rows = ['a: &a [x, x, x, x, x, x, x, x, x]']
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i)
      const cur = String.fromCharCode(97 + i)
      rows.push(`${cur}: &${cur} [${Array(9).fill(`*${prev}`).join(', ')}]`)
    }
    const t0 = performance.now()
    expectRejected(`version: 1\n${rows.join('\n')}\n`, '(document)', 'aliases expand too much')
    expect(performance.now() - t0).toBeLessThan(2000)
  })

  it('rejects several YAML documents in one file', () => {
    expectRejected('version: 1\n---\nversion: 1\nnetwork_policies: { all: { endpoints: [{ host: "*.example.com", port: 443 }] } }\n', '(document)', '2 YAML documents')
  })

  it('rejects deep nesting without overflowing the stack', () => {
    expectRejected(`version: 1\nnetwork_middlewares:\n  a:\n    middleware: x\n    config: ${'['.repeat(5000)}${']'.repeat(5000)}\n`, '(document)', 'nest')
  })

  it('rejects a YAML syntax error as a document-level reason with a position', () => {
    expectRejected('version: 1\nnetwork_policies: {a: [}\n', '(document)', 'line 2')
  })

  it('rejects an empty document and a non-map document', () => {
    expectRejected('', '(document)', 'empty')
    expectRejected('# just a comment\n', '(document)', 'empty')
    expectRejected('- version: 1\n', '(document)', 'expected a map')
    expectRejected('null\n', '(document)', 'expected a map')
  })

  it('reports every problem, and names the source, the first problem and the count in one line', () => {
    try {
      parsePolicyText(withEndpoint('{ hots: a.example.com, port: 0 }', 'process: { run_as_user: root }\n'), '/tmp/p.yaml')
      expect.unreachable()
    } catch (e) {
      const err = e as PolicyError
      expect(err.issues.length).toBeGreaterThanOrEqual(3)
      const line = err.oneLine()
      expect(line).not.toContain('\n')
      expect(line).toContain('/tmp/p.yaml')
      expect(line).toContain(err.issues[0]!)
      expect(line).toContain(`and ${err.issues.length - 1} more problems`)
      expect(err.code).toBe('POLICY_INVALID')
      expect(err.exitCode).toBe(1)
    }
  })
})

describe('parity with OpenShell: what OpenShell accepts is accepted', () => {
  it('port and ports together: ports wins', () => {
    const { policy } = accept(withEndpoint('{ host: a.example.com, port: 80, ports: [443, 8443] }'))
    expect(endpointPorts(policy.network_policies!.gh!.endpoints![0]!)).toEqual([443, 8443])
  })

  it('port 0 next to a non-empty ports list is ignored, as OpenShell skips a zero port', () => {
    const { policy } = accept(withEndpoint('{ host: a.example.com, port: 0, ports: [443] }'))
    expect(endpointPorts(policy.network_policies!.gh!.endpoints![0]!)).toEqual([443])
  })

  it('accepts first-label wildcards, intra-label wildcards and a whole middle "*" label', () => {
    for (const host of ['*.example.com', '**.example.com', '*-aiplatform.googleapis.com', 'api.*.example.com', '*.ingest.us.sentry.io']) {
      expect(() => accept(withEndpoint(`{ host: "${host}", port: 443 }`)), host).not.toThrow()
    }
  })

  it('accepts a hostless endpoint constrained by allowed_ips (forward proxy only)', () => {
    accept(withEndpoint('{ port: 9443, allowed_ips: [172.16.0.0/12, 192.168.1.1] }'))
  })

  it('accepts private allowed_ips, including a CIDR with host bits set (as Rust ipnet does)', () => {
    accept(withEndpoint('{ host: a.example.com, port: 443, allowed_ips: [10.0.0.1/8, "fd00::/8", 100.64.0.0/10] }'))
  })

  it('accepts binaries with the deprecated harness flag and glob paths', () => {
    accept(withEndpoint('{ host: a.example.com, port: 443 }').replace('{ path: /usr/bin/git }', '{ path: "/usr/lib/node_modules/@openai/**", harness: true }'))
  })

  it('accepts sandbox and numeric identities, and empty strings as "omitted"', () => {
    accept('version: 1\nprocess: { run_as_user: sandbox, run_as_group: "1500" }\n')
    accept('version: 1\nprocess: { run_as_user: "4294967294", run_as_group: "1" }\n')
    accept('version: 1\nprocess: { run_as_user: "" }\n')
  })

  it('accepts deprecated tls values with a warning', () => {
    const { warnings } = accept(withEndpoint('{ host: a.example.com, port: 443, protocol: rest, access: full, tls: terminate }'))
    expect(warnings.some(w => w.startsWith(`${EP}.tls: `) && w.includes('deprecated'))).toBe(true)
  })

  it('accepts an unknown REST method with a warning (OpenShell warns, does not reject)', () => {
    const { warnings } = accept(withEndpoint('{ host: a.example.com, port: 443, protocol: rest, rules: [{ allow: { method: BREW, path: /pot } }] }'))
    expect(warnings.some(w => w.includes("unknown HTTP/WebSocket method 'BREW'"))).toBe(true)
  })

  it('accepts an MCP endpoint with the method profile and no rules', () => {
    accept(withEndpoint('{ host: mcp.example.com, port: 443, path: /mcp, protocol: mcp, mcp: { allow_all_known_mcp_methods: true }, deny_rules: [{ method: tools/call, tool: send_email }] }'))
  })

  it('accepts MCP tool rules and a JSON-RPC "*" rule', () => {
    accept(withEndpoint('{ host: mcp.example.com, port: 443, protocol: mcp, rules: [{ allow: { method: initialize } }, { allow: { method: tools/call, tool: { any: [create_issue, list_issues] } } }] }'))
    accept(withEndpoint('{ host: rpc.example.com, port: 443, path: /rpc, protocol: json-rpc, rules: [{ allow: { method: "*" } }], deny_rules: [{ method: reports.delete }] }'))
  })

  it('accepts GraphQL rules and persisted queries', () => {
    accept(withEndpoint('{ host: api.github.com, port: 443, protocol: graphql, rules: [{ allow: { operation_type: query, fields: [viewer, repository] } }], persisted_queries: allow_registered, graphql_persisted_queries: { abc123: { operation_type: query, operation_name: Viewer } } }'))
  })

  it('accepts transparent TCP to a DNS name, and the docs npm example', () => {
    accept(withEndpoint('{ host: redis.openshell.demo, port: 6379, protocol: tcp, allowed_ips: [10.0.0.0/8] }'))
    accept(withEndpoint('{ host: registry.npmjs.org, port: 443, protocol: rest, access: read-only, allow_encoded_slash: true }'))
  })

  it('accepts path "**", an empty network_policies map, and entries without binaries', () => {
    accept(withEndpoint('{ host: a.example.com, port: 443, path: "**", protocol: rest, access: full }'))
    accept('version: 1\nnetwork_policies: {}\n')
    accept('version: 1\nnetwork_policies:\n  anthropic: { name: Anthropic API, endpoints: [{ host: api.anthropic.com, port: 443 }] }\n')
  })

  it('accepts two endpoints for the same host:port that agree on connection handling', () => {
    accept('version: 1\nnetwork_policies:\n  a: { endpoints: [{ host: github.com, port: 443 }] }\n  b: { endpoints: [{ host: github.com, port: 443, protocol: rest, tls: terminate, access: read-only }] }\n')
  })

  it('reads an empty value as omitted, as serde_yml does (e.g. every list entry commented out)', () => {
    const { policy } = accept('version: 1\nfilesystem_policy:\n  read_only:\n    # - /usr\n  read_write: [/tmp]\nnetwork_policies:\n')
    expect(policy).toEqual({ version: 1, filesystem_policy: { read_write: ['/tmp'] } })
    // ...but an empty value is still no value: a missing port is an error.
    expectRejected(withEndpoint('{ host: a.example.com, port: }'), `${EP}.port`, 'must declare at least one port')
    expectRejected('version: 1\nfilesystem_policy: { read_only: [/usr, ~] }\n', 'filesystem_policy.read_only[1]', 'expected a string, got null')
  })

  it('accepts a UTF-8 BOM, CRLF line endings and JSON (a subset of YAML)', () => {
    expect(accept('\ufeffversion: 1\r\nlandlock:\r\n  compatibility: best_effort\r\n').policy).toEqual({ version: 1, landlock: { compatibility: 'best_effort' } })
    expect(accept('{"version": 1, "network_policies": {}}').policy).toEqual({ version: 1, network_policies: {} })
  })

  it('rejects YAML merge keys like OpenShell (serde_yml reads "<<" as a field name)', () => {
    expectRejected('version: 1\nnetwork_policies:\n  a: &a { endpoints: [{ host: a.example.com, port: 443 }] }\n  b:\n    <<: *a\n    name: b\n', 'network_policies.b["<<"]', 'unrecognized key')
  })

  it('accepts YAML anchors and aliases within the budget', () => {
    const { policy } = accept('version: 1\nx-bins: &bins [{ path: /usr/bin/curl }]\n'.replace('x-bins: &bins [{ path: /usr/bin/curl }]\n', '') +
      'network_policies:\n  a: { endpoints: [{ host: a.example.com, port: 443 }], binaries: &bins [{ path: /usr/bin/curl }] }\n  b: { endpoints: [{ host: b.example.com, port: 443 }], binaries: *bins }\n')
    expect(policy.network_policies!.b!.binaries).toEqual([{ path: '/usr/bin/curl' }])
  })
})

describe('loadPolicyFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'podshell-policy-'))

  it('fails closed on a missing file, naming it', () => {
    const missing = join(dir, 'nope.yaml')
    expect(() => loadPolicyFile(missing)).toThrow(PolicyError)
    try {
      loadPolicyFile(missing)
    } catch (e) {
      expect((e as PolicyError).message).toBe(`policy file not found: ${missing}`)
      expect((e as PolicyError).oneLine()).toMatch(/^policy file not found: .*nope\.yaml: check the path/)
      expect((e as PolicyError).issues).toEqual([`(document): policy file not found: ${missing}`])
      expect((e as PolicyError).code).toBe('POLICY_NOT_FOUND')
    }
  })

  it('rejects a directory', () => {
    const d = join(dir, 'adir')
    mkdirSync(d)
    expect(() => loadPolicyFile(d)).toThrow(/is a directory/)
  })

  it('stops reading an endless file at 256 KiB (/dev/zero)', () => {
    expect(() => loadPolicyFile('/dev/zero')).toThrow(/larger than 262144 bytes/)
  })

  it('rejects invalid UTF-8', () => {
    const f = join(dir, 'latin1.yaml')
    writeFileSync(f, Buffer.from([0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x3a, 0x20, 0x31, 0x0a, 0x23, 0xe9, 0x0a]))
    expect(() => loadPolicyFile(f)).toThrow(/not valid UTF-8/)
  })

  it('loads a valid file', () => {
    const f = join(dir, 'ok.yaml')
    writeFileSync(f, 'version: 1\n')
    expect(loadPolicyFile(f).policy).toEqual({ version: 1 })
  })
})

describe('validatePolicy (already-parsed objects)', () => {
  it('validates objects and rejects the same problems with the same paths', () => {
    expect(validatePolicy({ version: 1 }, 'obj').policy).toEqual({ version: 1 })
    try {
      validatePolicy({ version: 1, network_policies: { a: { endpoints: [{ host: '*.com', port: 443 }] } } }, 'obj')
      expect.unreachable()
    } catch (e) {
      expect((e as PolicyError).issues[0]).toMatch(/^network_policies\.a\.endpoints\[0\]\.host: TLD wildcard/)
    }
  })

  it('rejects a serialised size over 256 KiB and cyclic objects', () => {
    const huge = { version: 1, filesystem_policy: { read_only: Array.from({ length: 200 }, () => `/${'a'.repeat(2000)}`) } }
    expect(() => validatePolicy(huge, 'obj')).toThrow(/maximum is 262144/)
    const cyclic: Record<string, unknown> = { version: 1 }
    cyclic.self = cyclic
    expect(() => validatePolicy(cyclic, 'obj')).toThrow(PolicyError)
  })
})

describe('canonical YAML and hashing', () => {
  const text = withEndpoint('{ host: a.example.com, port: 443 }', 'landlock: { compatibility: best_effort }\n')

  it('round-trips through policyToYaml to an equal policy and hash', () => {
    const { policy } = accept(text)
    const again = accept(policyToYaml(policy)).policy
    expect(again).toEqual(policy)
    expect(policyHash(again)).toBe(policyHash(policy))
  })

  it('puts version first and sorts network policy keys', () => {
    const { policy } = accept('network_policies:\n  zeta: { endpoints: [{ host: z.example.com, port: 443 }] }\n  alpha: { endpoints: [{ host: a.example.com, port: 443 }] }\nversion: 1\n')
    const y = policyToYaml(policy)
    expect(y.startsWith('version: 1\n')).toBe(true)
    expect(y.indexOf('alpha:')).toBeLessThan(y.indexOf('zeta:'))
  })

  it('hashes independently of key order, and differently for different content', () => {
    const a = accept('version: 1\nlandlock: { compatibility: best_effort }\nprocess: { run_as_user: sandbox }\n').policy
    const b = accept('process: { run_as_user: sandbox }\nlandlock: { compatibility: best_effort }\nversion: 1\n').policy
    const c = accept('version: 1\nlandlock: { compatibility: hard_requirement }\nprocess: { run_as_user: sandbox }\n').policy
    expect(policyHash(a)).toBe(policyHash(b))
    expect(policyHash(a)).not.toBe(policyHash(c))
    expect(policyHash(a)).toMatch(/^[0-9a-f]{64}$/)
  })
})

describe('restrictive default', () => {
  it("is OpenShell's: system paths, best-effort landlock, no process, no network policies (deny all)", () => {
    const p = restrictiveDefaultPolicy()
    expect(validatePolicy(p, 'default').policy).toEqual(p)
    expect(p.network_policies).toBeUndefined()
    expect(p.process).toBeUndefined()
    expect(p.filesystem_policy?.read_write).toEqual(['/tmp', '/dev/null'])
    expect(p.filesystem_policy?.include_workdir).toBe(true)
    expect(p.landlock?.compatibility).toBe('best_effort')
  })
})

describe('unenforcedWarnings: nothing accepted-but-unenforced is silent', () => {
  const p = accept(`version: 1
landlock: { compatibility: best_effort }
process: { run_as_user: sandbox, run_as_group: sandbox }
network_policies:
  claude_code:
    endpoints:
      - { host: api.anthropic.com, port: 443, protocol: rest, enforcement: enforce, access: full, tls: terminate }
      - { host: api.github.com, port: 443, protocol: rest, enforcement: enforce, access: read-only, request_body_credential_rewrite: true }
      - { host: uploads.github.com, port: 443, protocol: rest, access: read-only }
      - { host: api.example.com, port: 443, protocol: graphql, access: full }
      - { host: s3.amazonaws.com, port: 443, protocol: rest, access: full, credential_signing: sigv4, signing_service: s3 }
    binaries: [{ path: /usr/local/bin/claude }]
  nobins:
    endpoints: [{ host: pypi.org, port: 443 }]
network_middlewares:
  guard: { middleware: x, endpoints: { include: [a.example.com] } }
`).policy
  const w = unenforcedWarnings(p)
  const has = (prefix: string, fragment: string) =>
    expect(w.some(l => l.startsWith(prefix) && l.includes(fragment)), `${prefix} … ${fragment} in\n${w.join('\n')}`).toBe(true)

  it('binaries', () => has('network_policies.claude_code.binaries: ', 'not enforced — any process in the sandbox may use these endpoints'))
  it('missing binaries', () => has('network_policies.nobins.binaries: ', 'lets any process use them'))
  it('landlock', () => has('landlock: ', 'not Landlock'))
  it('filesystem_policy lists', () => {
    const d = unenforcedWarnings(restrictiveDefaultPolicy())
    expect(d.some(l => l.startsWith('filesystem_policy: ') && l.includes('paths the policy does not list stay readable'))).toBe(true)
  })
  it('process', () => has('process: ', 'your own uid'))
  it('middlewares', () => has('network_middlewares.guard: ', 'not enforced'))
  it('tls terminate: no unenforced warning (TLS is terminated automatically)', () => expect(w.some(l => l.includes('endpoints[0].tls'))).toBe(false))
  it('request body credential rewriting is enforced (issue 12): no unenforced warning', () => expect(w.some(l => l.includes('request_body_credential_rewrite'))).toBe(false))
  it('credential signing', () => has('network_policies.claude_code.endpoints[4].credential_signing: ', 'not enforced'))
  it('REST rules narrower than full are enforced on HTTPS too: no "plain HTTP only" warning', () => {
    expect(w.some(l => /plain HTTP only/.test(l))).toBe(false)
    expect(w.some(l => l.startsWith('network_policies.claude_code.endpoints[1]: ') || l.startsWith('network_policies.claude_code.endpoints[2]: '))).toBe(false)
  })
  it('REST rules with tls: skip are not inspected: said so', () => {
    const sk = accept(withEndpoint('{ host: api.example.com, port: 443, protocol: rest, enforcement: enforce, access: read-only, tls: skip }')).policy
    expect(unenforcedWarnings(sk).some(l => l.startsWith(`${EP}: `) && l.includes('its CONNECTs are denied'))).toBe(true)
  })
  it('graphql', () => has('network_policies.claude_code.endpoints[3].protocol: ', 'graphql L7 rules are not enforced'))
  it('websocket messages', () => {
    const ws = accept(withEndpoint('{ host: realtime.example.com, port: 443, protocol: websocket, access: read-only }')).policy
    expect(unenforcedWarnings(ws).some(l => l.startsWith(`${EP}.protocol: websocket`) && l.includes('does not inspect messages'))).toBe(true)
  })
  it('a policy with nothing unenforced has no warnings', () => {
    expect(unenforcedWarnings({ version: 1 })).toEqual([])
    expect(unenforcedWarnings({ version: 1, network_policies: {} })).toEqual([])
  })
})

describe('policyJsonSchema', () => {
  const schema = policyJsonSchema() as Record<string, any>

  it('describes the whole document with closed objects and descriptions', () => {
    expect(schema.$schema).toContain('json-schema.org')
    expect(Object.keys(schema.properties)).toEqual(['version', 'filesystem_policy', 'landlock', 'process', 'network_policies', 'network_middlewares'])
    expect(schema.additionalProperties).toBe(false)
    expect(schema.required).toEqual(['version'])
    // Every object schema is closed and every property has a description.
    let objects = 0
    const walk = (s: any, path: string) => {
      if (!s || typeof s !== 'object') return
      if (s.type === 'object' && s.properties) {
        objects++
        expect(s.additionalProperties, path).toBe(false)
        for (const [k, v] of Object.entries<any>(s.properties)) {
          const d = v.description ?? v.anyOf?.[0]?.description
          expect(typeof d === 'string' && d.length > 0, `${path}.${k} has no description`).toBe(true)
        }
      }
      for (const [k, v] of Object.entries(s)) if (typeof v === 'object') walk(v, `${path}/${k}`)
    }
    walk(schema, '#')
    expect(objects).toBeGreaterThan(10)
    const endpoint = JSON.stringify(schema)
    for (const key of ['allowed_ips', 'deny_rules', 'credential_signing', 'graphql_persisted_queries', 'allow_all_known_mcp_methods']) expect(endpoint).toContain(`"${key}"`)
  })

  it('is what the zod schema enforces (spot check: the schema parses the default)', () => {
    expect(PolicySchema.safeParse(restrictiveDefaultPolicy()).success).toBe(true)
    const p: Policy = { version: 1 }
    expect(PolicySchema.safeParse(p).success).toBe(true)
  })
})
