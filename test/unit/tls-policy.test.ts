import { describe, it, expect } from 'vitest'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadPolicyFile, parsePolicyText } from '../../src/policy/parse.js'
import { unenforcedWarnings } from '../../src/policy/document.js'
import { PolicyEngine } from '../../src/gateway/policy-engine.js'
import { canonicalizeHost } from '../../src/gateway/address.js'

/**
 * With TLS inspection, OpenShell's L7 rules on HTTPS endpoints are enforced, not refused: no policy
 * warns "plain HTTP only" any more, and the Community base policy's GitHub endpoints are inspected.
 */
const fixturesDir = process.env.PODSHELL_FIXTURES_DIR ?? fileURLToPath(new URL('../fixtures/openshell-policies/', import.meta.url))
const files = readdirSync(fixturesDir).filter(f => /\.ya?ml$/.test(f))
const h = (s: string) => canonicalizeHost(s)

describe('OpenShell fixtures under TLS inspection', () => {
  it('has the 15 fixtures', () => expect(files.length).toBeGreaterThanOrEqual(15))

  for (const f of files) {
    it(`${f}: no "plain HTTP only" or "never terminates TLS" warning`, () => {
      const { policy, warnings } = loadPolicyFile(join(fixturesDir, f))
      for (const w of [...warnings, ...unenforcedWarnings(policy)]) expect(w).not.toMatch(/plain HTTP only|never terminates TLS|does not inspect TLS/)
    })
  }

  it("Community base policy: GitHub's git, REST API and Copilot endpoints are inspected, each request decided", () => {
    const { policy } = loadPolicyFile(join(fixturesDir, 'community__sandboxes__base__policy.yaml'))
    const e = PolicyEngine.compile(policy)
    for (const host of ['github.com', 'api.github.com', 'api.githubcopilot.com']) {
      expect(e.inspects(h(host), 443), host).toBe(true)
      expect(e.decideConnect(h(host), 443, { inspect: true }).allowed, host).toBe(true)
      // Without inspection (old behaviour) the enforce endpoints were refused outright.
      expect(e.decideConnect(h(host), 443).allowed, host).toBe(false)
    }
    const git = (method: string, path: string, query: string | null = null) => e.decideHttp({ method, host: h('github.com'), port: 443, path, query }).allowed
    expect(git('GET', '/org/repo.git/info/refs', 'service=git-upload-pack')).toBe(true)
    const api = (method: string, path: string) => e.decideHttp({ method, host: h('api.github.com'), port: 443, path, query: null })
    expect(api('GET', '/repos/o/r').allowed).toBe(true)
    // The stricter of the two matching endpoints (L4 copilot entry and read-only REST entry) wins.
    expect(api('POST', '/gists').allowed).toBe(false)
  })

  it("'tls: terminate' gets OpenShell's deprecation notice; tls: skip is tunnelled and narrow rules then fail closed", () => {
    const { policy, warnings } = parsePolicyText(`version: 1
network_policies:
  a:
    endpoints:
      - { host: t.example.com, port: 443, protocol: rest, enforcement: enforce, access: read-only, tls: terminate }
      - { host: s.example.com, port: 443, protocol: rest, enforcement: enforce, access: read-only, tls: skip }
      - { host: b.example.com, port: 443, credential_binding: { provider: gh } }
      - { host: l4.example.com, port: 443 }
`, 'test')
    expect(warnings).toContain("network_policies.a.endpoints[0].tls: 'tls: terminate' is deprecated; TLS termination is now automatic. Use 'tls: skip' to disable.")
    expect(warnings).toContain("network_policies.a.endpoints[1].tls: 'tls: skip' with L7 rules on port 443 — L7 inspection cannot work on encrypted traffic")
    const e = PolicyEngine.compile(policy)
    expect(e.inspects(h('t.example.com'), 443)).toBe(true)
    expect(e.inspects(h('s.example.com'), 443)).toBe(false)
    expect(e.decideConnect(h('s.example.com'), 443, { inspect: true }).allowed).toBe(false)
    // A credential binding is terminated (placeholders are substituted on decrypted requests); plain L4 is not.
    expect(e.inspects(h('b.example.com'), 443)).toBe(true)
    expect(e.inspects(h('l4.example.com'), 443)).toBe(false)
  })

  it('a credential_binding on a tls: skip endpoint is refused (placeholders could not be seen there) unless allow_uninspected_credentials says so', () => {
    const doc = (extra: string) => `version: 1
network_policies:
  a:
    endpoints:
      - { host: b.example.com, port: 443, tls: skip, credential_binding: { provider: gh }${extra} }
`
    expect(() => parsePolicyText(doc(''), 'test')).toThrow(/credentialed endpoint uses tls: skip; configure L7 inspection or explicitly set allow_uninspected_credentials: true/)
    const { policy } = parsePolicyText(doc(', allow_uninspected_credentials: true'), 'test')
    expect(PolicyEngine.compile(policy).inspects(h('b.example.com'), 443)).toBe(false)
  })
})
