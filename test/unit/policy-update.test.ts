import { describe, it, expect } from 'vitest'
import {
  applyPolicyUpdate,
  generatedRuleName,
  parseEndpointSpec,
  parseHostPortSpec,
  parseRuleSpec,
} from '../../src/policy/update.js'
import { PolicyError, endpointPorts, type Policy } from '../../src/policy/schema.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { policyHash } from '../../src/policy/document.js'
import { PodshellError } from '../../src/errors.js'

const p = (yaml: string): Policy => parsePolicyText(yaml, 'test').policy

const base = p(`version: 1
filesystem_policy: { include_workdir: true, read_only: [/usr], read_write: [/tmp] }
network_policies:
  github_rest_api:
    name: github-rest-api
    endpoints:
      - { host: api.github.com, port: 443, protocol: rest, enforcement: enforce, access: read-only }
    binaries: [{ path: /usr/bin/gh }]
  pypi:
    endpoints:
      - { host: pypi.org, port: 443 }
      - { host: files.pythonhosted.org, ports: [443, 8443] }
    binaries: [{ path: /usr/bin/pip }]
`)

function oneLineError(f: () => unknown): string {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(PodshellError)
    const line = (e as PodshellError).oneLine()
    expect(line).not.toContain('\n')
    return (e as PodshellError).message
  }
  throw new Error('expected an error')
}

describe('flag parsing', () => {
  it('parses host:port[:access[:protocol[:enforcement[:options]]]]', () => {
    expect(parseEndpointSpec('api.example.com:443')).toEqual({ host: 'api.example.com', port: 443 })
    expect(parseEndpointSpec('api.example.com:443:read-only:rest:enforce')).toEqual({
      host: 'api.example.com',
      port: 443,
      access: 'read-only',
      protocol: 'rest',
      enforcement: 'enforce',
    })
    expect(parseEndpointSpec('redis.example.com:6379::tcp::allowed-ip=10.0.0.0/8,allowed-ip=10.0.0.0/8,allow-uninspected-credentials')).toEqual({
      host: 'redis.example.com',
      port: 6379,
      protocol: 'tcp',
      allowed_ips: ['10.0.0.0/8'],
      allow_uninspected_credentials: true,
    })
    expect(parseEndpointSpec('api.example.com:443:full:rest::request-body-credential-rewrite,websocket-credential-rewrite')).toMatchObject({
      request_body_credential_rewrite: true,
      websocket_credential_rewrite: true,
    })
  })

  const bad: [string, string][] = [
    ['api.example.com', '--add-endpoint expects host:port'],
    [':443', 'empty host segment'],
    ['api example.com:443', 'host must not contain whitespace'],
    ['a/b:443', "host must not contain '/'"],
    ['api.example.com:', 'empty port segment'],
    ['api.example.com:https', 'must be a base-10 integer'],
    ['api.example.com:0', 'range 1-65535'],
    ['api.example.com:70000', 'range 1-65535'],
    ['api.example.com:443:', 'empty access segment'],
    ['api.example.com:443:write', 'access segment must be one of'],
    ['api.example.com:443::graphql', "protocol segment must be 'tcp', 'rest', 'websocket', or 'sql'"],
    ['api.example.com:443:full:tcp', "protocol 'tcp' does not support access or enforcement"],
    ['api.example.com:443:::enforce', 'cannot set enforcement without protocol'],
    ['api.example.com:443:full:rest:strict', "enforcement segment must be 'enforce' or 'audit'"],
    ['api.example.com:443:full:rest:enforce:', 'empty options segment'],
    ['api.example.com:443:full:rest:enforce:bogus', 'options segment supports only'],
    ['api.example.com:443:full:rest:enforce:allow-uninspected-credentials,,allow-uninspected-credentials', 'must not contain empty options'],
    ['api.example.com:443:full::audit:x', 'cannot set enforcement without protocol'],
    ['api.example.com:443::tcp::request-body-credential-rewrite', "request-body-credential-rewrite endpoint option requires --add-endpoint protocol segment to be 'rest'"],
    ['api.example.com:443::::allowed-ip=', 'allowed-ip option must include a CIDR or IP value'],
    ['a:1:2:3:4:5:6', 'expects host:port[:access'],
  ]
  for (const [spec, msg] of bad) {
    it(`rejects --add-endpoint ${spec} with a one-line error`, () => {
      expect(oneLineError(() => parseEndpointSpec(spec))).toContain(msg)
    })
  }

  it('parses and rejects --add-allow / --add-deny / --remove-endpoint specs', () => {
    expect(parseRuleSpec('--add-allow', 'api.github.com:443:post:/repos/*/issues')).toEqual({
      host: 'api.github.com',
      port: 443,
      method: 'POST',
      path: '/repos/*/issues',
    })
    expect(oneLineError(() => parseRuleSpec('--add-deny', 'api.github.com:443:POST'))).toContain('--add-deny expects host:port:METHOD:path_glob')
    expect(oneLineError(() => parseRuleSpec('--add-allow', 'api.github.com:443::/x'))).toContain('empty METHOD segment')
    expect(oneLineError(() => parseRuleSpec('--add-allow', 'api.github.com:443:GET:repos'))).toContain("path must start with '/' or be '**'")
    expect(parseHostPortSpec('pypi.org:443')).toEqual({ host: 'pypi.org', port: 443 })
    expect(oneLineError(() => parseHostPortSpec('pypi.org'))).toContain('--remove-endpoint expects host:port')
  })

  it("generates OpenShell's rule names", () => {
    expect(generatedRuleName('api.github.com', 443)).toBe('allow_api_github_com_443')
    expect(generatedRuleName('my-host.example.com', 8080)).toBe('allow_my_host_example_com_8080')
    expect(generatedRuleName('*.example.com', 443)).toBe('allow__example_com_443')
    expect(generatedRuleName('navigator.navigator.svc.cluster.local', 8080)).toBe('allow_navigator_navigator_svc_cluster_local_8080')
  })
})

describe('applyPolicyUpdate', () => {
  it('adds an endpoint as a new rule named allow_<host>_<port>, with binaries', () => {
    const { policy, changes } = applyPolicyUpdate(base, { addEndpoints: ['registry.npmjs.org:443:read-only:rest:enforce'], binaries: ['/usr/bin/node', '/usr/bin/node'] })
    expect(policy.network_policies!.allow_registry_npmjs_org_443).toEqual({
      name: 'allow_registry_npmjs_org_443',
      endpoints: [{ host: 'registry.npmjs.org', port: 443, protocol: 'rest', enforcement: 'enforce', access: 'read-only' }],
      binaries: [{ path: '/usr/bin/node' }],
    })
    expect(changes[0]).toContain('added endpoint registry.npmjs.org:443')
    // the input is never modified
    expect(base.network_policies!.allow_registry_npmjs_org_443).toBeUndefined()
  })

  it('puts the endpoint into --rule-name', () => {
    const { policy } = applyPolicyUpdate(base, { addEndpoints: ['registry.npmjs.org:443'], ruleName: 'npm', binaries: ['/usr/bin/npm'] })
    expect(policy.network_policies!.npm!.endpoints![0]).toEqual({ host: 'registry.npmjs.org', port: 443 })
  })

  it('folds an endpoint already covered by a rule with the same binaries into that rule', () => {
    const { policy, changes } = applyPolicyUpdate(base, { addEndpoints: ['pypi.org:443'], binaries: ['/usr/bin/pip'] })
    expect(policy.network_policies!.allow_pypi_org_443).toBeUndefined()
    expect(policy.network_policies!.pypi!.endpoints!.filter(e => e.host === 'pypi.org')).toHaveLength(1)
    // Same authorization: nothing changed, so no changes are reported.
    expect(changes).toEqual([])
  })

  it('keeps an overlapping endpoint on its own rule when folding would hand the other binaries new access', () => {
    const { policy, changes } = applyPolicyUpdate(base, { addEndpoints: ['pypi.org:443'], binaries: ['/usr/bin/curl'] })
    // Folding /usr/bin/curl into `pypi` would also give curl files.pythonhosted.org: not declared.
    expect(policy.network_policies!.pypi!.binaries).toEqual([{ path: '/usr/bin/pip' }])
    expect(policy.network_policies!.allow_pypi_org_443!.binaries).toEqual([{ path: '/usr/bin/curl' }])
    expect(changes.some(c => c.startsWith('note: kept add-rule'))).toBe(true)
  })

  it('refuses widening a named rule when existing binaries would inherit undeclared access', () => {
    const msg = oneLineError(() => applyPolicyUpdate(base, { addEndpoints: ['uploads.github.com:443'], ruleName: 'github_rest_api', binaries: ['/usr/bin/curl'] }))
    expect(msg).toMatch(/would grant (binary '\/usr\/bin\/curl' undeclared authorization|existing binaries)/)
  })

  it('merges into a named rule when the operation declares the whole scope', () => {
    const { policy } = applyPolicyUpdate(base, { addEndpoints: ['uploads.github.com:443'], ruleName: 'github_rest_api', binaries: ['/usr/bin/gh'] })
    expect(policy.network_policies!.github_rest_api!.endpoints!.map(e => e.host)).toEqual(['api.github.com', 'uploads.github.com'])
  })

  it('merges ports of an overlapping endpoint', () => {
    const q = p('version: 1\nnetwork_policies:\n  web: { endpoints: [{ host: example.com, ports: [80, 443] }] }\n')
    const { policy } = applyPolicyUpdate(q, { addEndpoints: ['example.com:443'], ruleName: 'web' })
    expect(endpointPorts(policy.network_policies!.web!.endpoints![0]!)).toEqual([80, 443])
  })

  it('removes an endpoint port by port, and a rule left without endpoints', () => {
    let r = applyPolicyUpdate(base, { removeEndpoints: ['files.pythonhosted.org:8443'] })
    const fph = r.policy.network_policies!.pypi!.endpoints!.find(e => e.host === 'files.pythonhosted.org')!
    expect(endpointPorts(fph)).toEqual([443])
    expect(fph.ports).toBeUndefined()
    r = applyPolicyUpdate(base, { removeEndpoints: ['API.GITHUB.COM:443'] })
    expect(r.policy.network_policies!.github_rest_api).toBeUndefined()
    expect(r.changes.some(c => c.includes('no endpoints left'))).toBe(true)
  })

  it('removing an endpoint that does not exist changes nothing', () => {
    const r = applyPolicyUpdate(base, { removeEndpoints: ['nowhere.example.com:443'] })
    expect(r.changes).toEqual([])
    expect(policyHash(r.policy)).toBe(policyHash(base))
  })

  it('removes a rule by name', () => {
    const r = applyPolicyUpdate(base, { removeRules: ['pypi'] })
    expect(r.policy.network_policies!.pypi).toBeUndefined()
    expect(r.changes).toEqual(['removed network_policies.pypi'])
  })

  it('adds allow rules, expanding an access preset first', () => {
    const r = applyPolicyUpdate(base, { addAllow: ['api.github.com:443:post:/repos/*/issues'] })
    const ep = r.policy.network_policies!.github_rest_api!.endpoints![0]!
    expect(ep.access).toBeUndefined()
    expect(ep.rules).toEqual([
      { allow: { method: 'GET', path: '**' } },
      { allow: { method: 'HEAD', path: '**' } },
      { allow: { method: 'OPTIONS', path: '**' } },
      { allow: { method: 'POST', path: '/repos/*/issues' } },
    ])
    expect(r.changes.some(c => c.includes("note: expanded access preset 'read-only'"))).toBe(true)
  })

  it('adds deny rules to an endpoint with a base allow set', () => {
    const r = applyPolicyUpdate(base, { addDeny: ['api.github.com:443:DELETE:/repos/**', 'api.github.com:443:DELETE:/repos/**'] })
    expect(r.policy.network_policies!.github_rest_api!.endpoints![0]!.deny_rules).toEqual([{ method: 'DELETE', path: '/repos/**' }])
  })

  it('refuses L7 rules on an endpoint without inspection, or one that does not exist', () => {
    expect(oneLineError(() => applyPolicyUpdate(base, { addAllow: ['pypi.org:443:GET:/simple/**'] }))).toContain('has no L7 inspection configured')
    expect(oneLineError(() => applyPolicyUpdate(base, { addDeny: ['nowhere.example.com:443:GET:/x'] }))).toContain('was not found in the current policy')
  })

  it('refuses deny rules where there is no allow base', () => {
    const q = p('version: 1\nnetwork_policies:\n  a: { endpoints: [{ host: a.example.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: /x } }] }] }\n')
    const noBase = structuredClone(q)
    noBase.network_policies!.a!.endpoints![0]!.rules = undefined
    noBase.network_policies!.a!.endpoints![0]!.access = undefined
    expect(oneLineError(() => applyPolicyUpdate(noBase, { addDeny: ['a.example.com:443:POST:/x'] }))).toContain('has no base allow set')
  })

  it('fails closed when host:port is ambiguous between rules', () => {
    const q = p(`version: 1
network_policies:
  a: { endpoints: [{ host: api.example.com, port: 443, protocol: rest, access: full }], binaries: [{ path: /a }] }
  b: { endpoints: [{ host: api.example.com, port: 443, protocol: rest, access: read-only }], binaries: [{ path: /b }] }
`)
    expect(oneLineError(() => applyPolicyUpdate(q, { addAllow: ['api.example.com:443:POST:/x'] }))).toContain('resolves to a, b')
  })

  it('validates the flag combinations like OpenShell', () => {
    expect(oneLineError(() => applyPolicyUpdate(base, {}))).toContain('requires at least one operation flag')
    expect(oneLineError(() => applyPolicyUpdate(base, { binaries: ['/usr/bin/x'], removeRules: ['pypi'] }))).toContain('--binary can only be used with --add-endpoint')
    expect(oneLineError(() => applyPolicyUpdate(base, { ruleName: 'x', removeRules: ['pypi'] }))).toContain('--rule-name can only be used with --add-endpoint')
    expect(oneLineError(() => applyPolicyUpdate(base, { ruleName: 'x', addEndpoints: ['a.example.com:443', 'b.example.com:443'] }))).toContain('exactly one --add-endpoint')
    expect(oneLineError(() => applyPolicyUpdate(base, { addEndpoints: ['a.example.com:443'], binaries: [' '] }))).toContain('--binary values must not be empty')
    expect(oneLineError(() => applyPolicyUpdate(base, { removeRules: [''] }))).toContain('--remove-rule values must not be empty')
  })

  it('is atomic: a failing later operation leaves nothing applied', () => {
    const before = policyHash(base)
    expect(() => applyPolicyUpdate(base, { addEndpoints: ['new.example.com:443'], addDeny: ['nowhere.example.com:443:GET:/x'] })).toThrow(PodshellError)
    expect(policyHash(base)).toBe(before)
  })

  it('validates the result: an update producing an invalid policy is refused', () => {
    expect(() => applyPolicyUpdate(base, { addEndpoints: ['*.com:443'] })).toThrow(PolicyError)
    expect(() => applyPolicyUpdate(base, { addEndpoints: ['a.example.com:443::::allowed-ip=127.0.0.1'] })).toThrow(/always-blocked/)
    expect(() => applyPolicyUpdate(base, { addEndpoints: ['10.0.0.5:6379::tcp'] })).toThrow(/not an IP literal/)
  })

  it('refuses a second inspection contract for an MCP host:port', () => {
    const q = p('version: 1\nnetwork_policies:\n  m: { endpoints: [{ host: mcp.example.com, port: 443, protocol: mcp, mcp: { allow_all_known_mcp_methods: true } }] }\n')
    expect(oneLineError(() => applyPolicyUpdate(q, { addEndpoints: ['mcp.example.com:443:full:rest'], ruleName: 'other' }))).toMatch(/MCP contracts|inspection contract/)
  })
})
