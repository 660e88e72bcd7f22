import { describe, it, expect } from 'vitest'
import { PolicyEngine, canonicalizePath, parseQuery, checkResolved, type PolicyInput, type EndpointInput } from '../../src/gateway/policy-engine.js'
import { canonicalizeHost, parseIp } from '../../src/gateway/address.js'

const H = (s: string) => canonicalizeHost(s)
const one = (ep: EndpointInput, key = 'p'): PolicyInput => ({ network_policies: { [key]: { endpoints: [ep] } } })
const connect = (policy: PolicyInput, host: string, port = 443) => PolicyEngine.compile(policy).decideConnect(H(host), port)
const http = (policy: PolicyInput, method: string, url: string) => {
  const u = new URL(url)
  const target = url.slice(url.indexOf('/', url.indexOf('//') + 2))
  const q = target.indexOf('?')
  return PolicyEngine.compile(policy).decideHttp({
    method,
    host: H(u.hostname),
    port: Number(u.port || 80),
    path: q === -1 ? target : target.slice(0, q),
    query: q === -1 ? null : target.slice(q + 1),
  })
}

describe('deny by default', () => {
  it('empty network_policies denies everything', () => {
    const d = connect({ network_policies: {} }, 'api.github.com')
    expect(d.allowed).toBe(false)
    expect(d.reason).toBe('network connections not allowed by policy')
  })
  it('missing network_policies denies everything', () => {
    expect(connect({}, 'example.com').allowed).toBe(false)
    expect(PolicyEngine.denyAll().decideConnect(H('example.com'), 443).allowed).toBe(false)
  })
  it('an unlisted host is denied with OpenShell\'s reason', () => {
    const d = connect(one({ host: 'api.github.com', port: 443 }), 'evil.com')
    expect(d.allowed).toBe(false)
    expect(d.reason).toBe('endpoint evil.com:443 is not allowed by any policy')
    expect(d.policy).toBeNull()
  })
})

describe('host matching', () => {
  const exact = one({ host: 'api.github.com', port: 443 })
  it('exact, case-insensitive, trailing dot ignored', () => {
    expect(connect(exact, 'API.GitHub.com').allowed).toBe(true)
    expect(connect(exact, 'api.github.com.').allowed).toBe(true)
    expect(connect(one({ host: 'API.GITHUB.COM.', port: 443 }), 'api.github.com').allowed).toBe(true)
  })
  it('exact does not match sub- or sibling domains', () => {
    expect(connect(exact, 'x.api.github.com').allowed).toBe(false)
    expect(connect(exact, 'api.github.com.evil.com').allowed).toBe(false)
    expect(connect(exact, 'github.com').allowed).toBe(false)
  })

  const star = one({ host: '*.github.com', port: 443 })
  it('*.x.com matches exactly one label', () => {
    expect(connect(star, 'api.github.com').allowed).toBe(true)
    expect(connect(star, 'a.b.github.com').allowed).toBe(false)
  })
  it('*.x.com does not match the apex, look-alikes or suffix tricks', () => {
    expect(connect(star, 'github.com').allowed).toBe(false)
    expect(connect(star, 'malicious-github.com').allowed).toBe(false)
    expect(connect(star, 'x.githubusercontent.com').allowed).toBe(false)
    expect(connect(star, 'api.github.com.evil.com').allowed).toBe(false)
  })
  const dstar = one({ host: '**.github.com', port: 443 })
  it('**.x.com matches any depth but not the apex', () => {
    expect(connect(dstar, 'api.github.com').allowed).toBe(true)
    expect(connect(dstar, 'a.b.c.github.com').allowed).toBe(true)
    expect(connect(dstar, 'github.com').allowed).toBe(false)
    expect(connect(dstar, 'evilgithub.com').allowed).toBe(false)
  })
  it('intra-label wildcard *-foo.x.com', () => {
    const p = one({ host: '*-cdn.example.com', port: 443 })
    expect(connect(p, 'eu-cdn.example.com').allowed).toBe(true)
    expect(connect(p, 'eu.x-cdn.example.com').allowed).toBe(false)
    expect(connect(p, 'cdn.example.com').allowed).toBe(false)
  })
  it('a middle * label', () => {
    const p = one({ host: 'api.*.example.com', port: 443 })
    expect(connect(p, 'api.eu.example.com').allowed).toBe(true)
    expect(connect(p, 'api.eu.x.example.com').allowed).toBe(false)
  })
  it('globs never match IP literals', () => {
    expect(connect(one({ host: '*.0.0.1', port: 443 }), '127.0.0.1').allowed).toBe(false)
  })
  it('an IP-literal host matches every spelling of the address', () => {
    const p = one({ host: '93.184.216.34', port: 80 })
    for (const s of ['93.184.216.34', '0x5d.0xb8.0xd8.0x22', '1572395042', '93.12113954']) expect(connect(p, s, 80).allowed).toBe(true)
    expect(connect(p, '93.184.216.35', 80).allowed).toBe(false)
  })
})

describe('ports', () => {
  it('the port must match', () => {
    const p = one({ host: 'github.com', port: 443 })
    expect(connect(p, 'github.com', 22).allowed).toBe(false)
    expect(connect(p, 'github.com', 8080).allowed).toBe(false)
  })
  it('ports wins over port', () => {
    const p = one({ host: 'github.com', port: 443, ports: [22, 8443] })
    expect(connect(p, 'github.com', 22).allowed).toBe(true)
    expect(connect(p, 'github.com', 8443).allowed).toBe(true)
    expect(connect(p, 'github.com', 443).allowed).toBe(false)
  })
  it('an endpoint without a port matches nothing', () => {
    expect(connect(one({ host: 'github.com' }), 'github.com', 443).allowed).toBe(false)
  })
})

describe('decisions name the policy and rule', () => {
  it('L4 allow names the key and endpoint', () => {
    const d = connect({ network_policies: { github_api: { name: 'github-api', endpoints: [{ host: 'x.com', port: 1 }, { host: 'api.github.com', port: 443 }] } } }, 'api.github.com')
    expect(d).toMatchObject({ allowed: true, mode: 'allow', layer: 'l4', policy: 'github_api', policyName: 'github-api', rule: 'endpoints[1]', matched: 'github_api.endpoints[1]' })
  })
  it('several matching policies: the smallest key is reported', () => {
    const p: PolicyInput = { network_policies: { zeta: { endpoints: [{ host: 'a.com', port: 443 }] }, alpha: { endpoints: [{ host: 'a.com', port: 443 }] } } }
    expect(connect(p, 'a.com').policy).toBe('alpha')
  })
  it('names the providers serving the host', () => {
    const e = PolicyEngine.compile(one({ host: '**.githubusercontent.com', port: 443 }), [
      { name: 'my-gh', type: 'github', config: {} },
      { name: 'claude', type: 'claude', config: {} },
      { name: 'jira', type: 'jira', config: { JIRA_URL: 'https://jira.corp.example/' } },
    ])
    expect(e.decideConnect(H('raw.githubusercontent.com'), 443).providers).toEqual(['my-gh'])
    expect(e.decideConnect(H('jira.corp.example'), 443).providers).toEqual(['jira'])
    expect(e.decideConnect(H('api.anthropic.com'), 443).providers).toEqual(['claude'])
  })
})

describe('L7 REST rules over plain HTTP', () => {
  const ro = one({ host: 'api.example.com', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'read-only' }, 'api')
  it('read-only allows GET/HEAD/OPTIONS', () => {
    for (const m of ['GET', 'HEAD', 'OPTIONS']) expect(http(ro, m, 'http://api.example.com/x').allowed).toBe(true)
  })
  it('read-only denies POST, PUT, PATCH and DELETE with the OpenShell reason', () => {
    for (const m of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const d = http(ro, m, 'http://api.example.com/repos/x')
      expect(d.allowed).toBe(false)
      expect(d.layer).toBe('l7')
      expect(d.reason).toBe(`${m} /repos/x not permitted by policy`)
      expect(d.rule).toBe(`${m} /repos/x`)
      expect(d.policy).toBe('api')
    }
  })
  it('read-write adds POST/PUT/PATCH but not DELETE', () => {
    const rw = one({ host: 'api.example.com', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'read-write' })
    for (const m of ['POST', 'PUT', 'PATCH']) expect(http(rw, m, 'http://api.example.com/x').allowed).toBe(true)
    expect(http(rw, 'DELETE', 'http://api.example.com/x').allowed).toBe(false)
  })
  it('full allows everything, including odd methods', () => {
    const full = one({ host: 'api.example.com', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'full' })
    for (const m of ['DELETE', 'PROPFIND', 'PURGE']) expect(http(full, m, 'http://api.example.com/x').allowed).toBe(true)
  })

  const rules = one({
    host: 'github.com', port: 80, protocol: 'rest', enforcement: 'enforce',
    rules: [
      { allow: { method: 'GET', path: '/**/info/refs*' } },
      { allow: { method: 'POST', path: '/**/git-upload-pack' } },
      { allow: { method: 'GET', path: '/search', query: { q: 'repo:*', sort: { any: ['stars', 'forks'] } } } },
    ],
    deny_rules: [{ method: 'POST', path: '/admin/**' }, { method: '*', path: '/search', query: { q: '*secret*' } }],
  }, 'git')
  it('method + path globs', () => {
    expect(http(rules, 'GET', 'http://github.com/org/repo.git/info/refs?service=git-upload-pack').allowed).toBe(true)
    expect(http(rules, 'POST', 'http://github.com/org/repo.git/git-upload-pack').allowed).toBe(true)
    expect(http(rules, 'POST', 'http://github.com/org/repo.git/git-receive-pack').allowed).toBe(false)
    expect(http(rules, 'GET', 'http://github.com/org/repo').allowed).toBe(false)
  })
  it('HEAD is allowed by a GET rule (RFC 9110), not the other way round', () => {
    expect(http(rules, 'HEAD', 'http://github.com/o/r/info/refs').allowed).toBe(true)
    const head = one({ host: 'a.com', port: 80, protocol: 'rest', enforcement: 'enforce', rules: [{ allow: { method: 'HEAD', path: '/**' } }] })
    expect(http(head, 'GET', 'http://a.com/x').allowed).toBe(false)
  })
  it('query matchers: every configured key present and all values matching', () => {
    expect(http(rules, 'GET', 'http://github.com/search?q=repo:x&sort=stars').allowed).toBe(true)
    expect(http(rules, 'GET', 'http://github.com/search?q=repo:x&sort=stars&extra=1').allowed).toBe(true)
    expect(http(rules, 'GET', 'http://github.com/search?q=repo:x').allowed).toBe(false) // sort missing
    expect(http(rules, 'GET', 'http://github.com/search?q=repo:x&sort=updated').allowed).toBe(false)
    expect(http(rules, 'GET', 'http://github.com/search?q=repo:x&q=user:y&sort=stars').allowed).toBe(false) // one value fails
    expect(http(rules, 'GET', 'http://github.com/search?q=repo%3Ax&sort=stars').allowed).toBe(true) // decoded
  })
  it('deny rules win over allow rules', () => {
    const d = http(rules, 'GET', 'http://github.com/search?q=repo:secretstuff&sort=stars')
    expect(d.allowed).toBe(false)
    expect(d.reason).toBe('GET /search blocked by deny rule')
    expect(d.matched).toBe('git.endpoints[0].deny_rules[1]')
  })
  it('deny query matching: any value matching fires; encoded spellings are decoded first', () => {
    expect(http(rules, 'GET', 'http://github.com/search?q=repo:a&q=x%73ecretx&sort=stars').allowed).toBe(false)
    expect(http(rules, 'GET', 'http://github.com/search?q=repo:a+secret&sort=stars').allowed).toBe(false)
  })
  it('deny rules apply across policies that cover the same host', () => {
    const p: PolicyInput = {
      network_policies: {
        a: { endpoints: [{ host: 'x.com', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'full' }] },
        b: { endpoints: [{ host: 'x.com', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'read-only', deny_rules: [{ method: 'GET', path: '/private/**' }] }] },
      },
    }
    expect(http(p, 'GET', 'http://x.com/private/key').allowed).toBe(false)
    expect(http(p, 'DELETE', 'http://x.com/public').allowed).toBe(true)
  })
  it('path tricks are canonicalised before matching', () => {
    const p = one({ host: 'x.com', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'full', deny_rules: [{ method: '*', path: '/admin/**' }] })
    for (const path of ['/admin/x', '/public/../admin/x', '//admin/x', '/./admin/x', '/%61dmin/x', '/admin;jsessionid=1/x', '/public/%2e%2e/admin/x']) {
      expect({ path, allowed: http(p, 'GET', `http://x.com${path}`).allowed }).toEqual({ path, allowed: false })
    }
    expect(http(p, 'GET', 'http://x.com/administrator').allowed).toBe(true)
  })
  it('encoded slashes are refused unless allow_encoded_slash', () => {
    const p = one({ host: 'registry.npmjs.org', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'read-only' })
    expect(http(p, 'GET', 'http://registry.npmjs.org/@scope%2Fname').allowed).toBe(false)
    const q = one({ host: 'registry.npmjs.org', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'read-only', allow_encoded_slash: true })
    expect(http(q, 'GET', 'http://registry.npmjs.org/@scope%2Fname').allowed).toBe(true)
  })
  it('an endpoint path selects between endpoints on one host', () => {
    const p: PolicyInput = {
      network_policies: {
        p: {
          endpoints: [
            { host: 'api.x.com', port: 80, path: '/repos/**', protocol: 'rest', enforcement: 'enforce', access: 'read-write' },
            { host: 'api.x.com', port: 80, path: '/graphql', protocol: 'rest', enforcement: 'enforce', access: 'read-only' },
          ],
        },
      },
    }
    expect(http(p, 'POST', 'http://api.x.com/repos/a/b/issues').allowed).toBe(true)
    expect(http(p, 'POST', 'http://api.x.com/graphql').allowed).toBe(false)
    expect(http(p, 'GET', 'http://api.x.com/users').allowed).toBe(false)
  })
  it('an allow rule missing method or path matches nothing (cannot widen access)', () => {
    const p = one({ host: 'a.com', port: 80, protocol: 'rest', enforcement: 'enforce', rules: [{ allow: { path: '/**' } }, { allow: { method: 'GET' } }] })
    expect(http(p, 'GET', 'http://a.com/x').allowed).toBe(false)
  })
  it('L7 rules restrict even when an L4 endpoint also covers the host', () => {
    const p: PolicyInput = {
      network_policies: {
        l4: { endpoints: [{ host: 'a.com', port: 80 }] },
        l7: { endpoints: [{ host: 'a.com', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'read-only' }] },
      },
    }
    expect(http(p, 'POST', 'http://a.com/x').allowed).toBe(false)
    expect(http(p, 'GET', 'http://a.com/x').allowed).toBe(true)
  })
  it('L4 endpoint: any method and path', () => {
    expect(http(one({ host: 'a.com', port: 80 }), 'DELETE', 'http://a.com/anything').allowed).toBe(true)
  })
  it('protocols podshell cannot inspect yet deny under enforce', () => {
    const p = one({ host: 'a.com', port: 80, protocol: 'graphql', enforcement: 'enforce', access: 'read-only' })
    const d = http(p, 'POST', 'http://a.com/graphql')
    expect(d.allowed).toBe(false)
    expect(d.reason).toMatch(/cannot inspect protocol graphql/)
  })
})

describe('enforcement: audit (OpenShell default for L7)', () => {
  it('enforcement defaults to audit: violations pass and are marked', () => {
    const p = one({ host: 'a.com', port: 80, protocol: 'rest', access: 'read-only' })
    const d = http(p, 'POST', 'http://a.com/x')
    expect(d).toMatchObject({ allowed: true, mode: 'audit', layer: 'l7' })
    expect(d.reason).toMatch(/not permitted by policy; allowed because enforcement is audit/)
  })
  it('an enforce endpoint wins over an audit endpoint on the same host', () => {
    const p: PolicyInput = {
      network_policies: {
        a: { endpoints: [{ host: 'a.com', port: 80, protocol: 'rest', access: 'read-only', enforcement: 'audit' }] },
        b: { endpoints: [{ host: 'a.com', port: 80, protocol: 'rest', access: 'read-only', enforcement: 'enforce' }] },
      },
    }
    expect(http(p, 'POST', 'http://a.com/x').allowed).toBe(false)
  })
  it('a path that cannot be canonicalised is denied even in audit mode', () => {
    const p = one({ host: 'a.com', port: 80, protocol: 'rest', access: 'read-only' })
    expect(http(p, 'GET', 'http://a.com/%zz').allowed).toBe(false)
  })
})

describe('CONNECT and L7 rules (no TLS inspection yet)', () => {
  it('CONNECT to a read-only enforce endpoint is denied, with a reason that says why', () => {
    const d = connect(one({ host: 'api.github.com', port: 443, protocol: 'rest', enforcement: 'enforce', access: 'read-only' }, 'github_api'), 'api.github.com')
    expect(d.allowed).toBe(false)
    expect(d.reason).toMatch(/would bypass the L7 rules of policy github_api \(access: read-only\); podshell does not inspect TLS yet/)
    expect(d.policy).toBe('github_api')
  })
  it('CONNECT to a read-only audit endpoint is allowed and marked audit', () => {
    const d = connect(one({ host: 'api.github.com', port: 443, protocol: 'rest', enforcement: 'audit', access: 'read-only' }), 'api.github.com')
    expect(d).toMatchObject({ allowed: true, mode: 'audit' })
  })
  it('CONNECT to an L7 endpoint with the default enforcement (audit) is allowed as audit', () => {
    expect(connect(one({ host: 'a.com', port: 443, protocol: 'rest', access: 'read-only' }), 'a.com').mode).toBe('audit')
  })
  it('CONNECT to access: full without deny rules is a plain allow', () => {
    expect(connect(one({ host: 'a.com', port: 443, protocol: 'rest', enforcement: 'enforce', access: 'full' }), 'a.com').mode).toBe('allow')
  })
  it('access: full with deny_rules or an endpoint path is narrower than full', () => {
    expect(connect(one({ host: 'a.com', port: 443, protocol: 'rest', enforcement: 'enforce', access: 'full', deny_rules: [{ method: 'DELETE', path: '/**' }] }), 'a.com').allowed).toBe(false)
    expect(connect(one({ host: 'a.com', port: 443, path: '/v1/**', protocol: 'rest', enforcement: 'enforce', access: 'full' }), 'a.com').allowed).toBe(false)
  })
  it('explicit catch-all rules count as full', () => {
    expect(connect(one({ host: 'a.com', port: 443, protocol: 'rest', enforcement: 'enforce', rules: [{ allow: { method: '*', path: '**' } }] }), 'a.com').allowed).toBe(true)
  })
})

describe('path and query canonicalisation', () => {
  it.each([
    ['/a/b/../c', '/a/c'],
    ['/a/./b', '/a/b'],
    ['//a///b', '/a/b'],
    ['/../../etc', '/etc'],
    ['/a%20b', '/a b'],
    ['/a/b/', '/a/b/'],
    ['/', '/'],
    ['/a;x=1/b;y', '/a/b'],
  ])('%s → %s', (raw, want) => {
    expect(canonicalizePath(raw)).toEqual({ ok: true, path: want })
  })
  it.each(['/a%2fb', '/a%5cb', '/a\\b', '/a%00', '/a%zz', '/a%', 'relative'])('rejects %s', raw => {
    expect(canonicalizePath(raw).ok).toBe(false)
  })
  it('parses repeated keys and decodes + as space', () => {
    const q = parseQuery('a=1&a=2&b=x+y&c')!
    expect(q.get('a')).toEqual(['1', '2'])
    expect(q.get('b')).toEqual(['x y'])
    expect(q.get('c')).toEqual([''])
  })
  it('malformed escapes are undefined (caller denies)', () => {
    expect(parseQuery('a=%zz')).toBeUndefined()
  })
})

describe('resolved addresses against allowed decisions', () => {
  const A = (s: string) => parseIp(s)!
  it('an allowed name resolving to loopback is refused (DNS rebinding)', () => {
    const e = PolicyEngine.compile(one({ host: 'good.example', port: 443 }))
    const d = e.decideConnect(H('good.example'), 443)
    const r = checkResolved(d, 'good.example', 443, [A('127.0.0.1')])
    expect(r.ok).toBe(false)
  })
  it('all-or-nothing: one bad address in the answer refuses the lot', () => {
    const d = PolicyEngine.compile(one({ host: 'good.example', port: 443 })).decideConnect(H('good.example'), 443)
    expect(checkResolved(d, 'good.example', 443, [A('8.8.8.8'), A('10.0.0.1')]).ok).toBe(false)
    expect(checkResolved(d, 'good.example', 443, [A('8.8.8.8'), A('1.1.1.1')]).ok).toBe(true)
  })
  it('private addresses pass with allowed_ips, and only inside it', () => {
    const d = PolicyEngine.compile(one({ host: 'db.internal', port: 5432, allowed_ips: ['10.1.0.0/16'] })).decideConnect(H('db.internal'), 5432)
    expect(checkResolved(d, 'db.internal', 5432, [A('10.1.2.3')]).ok).toBe(true)
    expect(checkResolved(d, 'db.internal', 5432, [A('10.2.0.1')]).ok).toBe(false)
  })
  it('control-plane ports are refused for private destinations', () => {
    const d = PolicyEngine.compile(one({ host: 'k8s.internal', port: 6443, allowed_ips: ['10.0.0.0/8'] })).decideConnect(H('k8s.internal'), 6443)
    const r = checkResolved(d, 'k8s.internal', 6443, [A('10.0.0.1')])
    expect(r).toMatchObject({ ok: false })
  })
  it('an IP-literal host is its own allowed_ips (may be private, never loopback)', () => {
    const d = PolicyEngine.compile(one({ host: '10.0.0.7', port: 80 })).decideConnect(H('10.0.0.7'), 80)
    expect(checkResolved(d, '10.0.0.7', 80, [A('10.0.0.7')]).ok).toBe(true)
    const lo = PolicyEngine.compile(one({ host: '127.0.0.1', port: 80 })).decideConnect(H('127.1'), 80)
    expect(lo.allowed).toBe(true) // the policy names it…
    expect(checkResolved(lo, '127.0.0.1', 80, [A('127.0.0.1')]).ok).toBe(false) // …the SSRF guard still refuses it
  })
  it('a hostless endpoint with allowed_ips matches IP literals inside it and never a name (issue 9 finding 8)', () => {
    const e = PolicyEngine.compile(one({ port: 8080, allowed_ips: ['192.168.5.0/24'] }))
    const ip = e.decideConnect(H('192.168.5.9'), 8080)
    expect(ip.allowed).toBe(true)
    expect(ip.resolve).toBe(false) // an IP literal is never resolved
    expect(checkResolved(ip, '192.168.5.9', 8080, [A('192.168.5.9')]).ok).toBe(true)
    expect(checkResolved(e.decideConnect(H('8.8.8.8'), 8080), '8.8.8.8', 8080, [A('8.8.8.8')]).ok).toBe(false)
    // A name is denied before anything is resolved: the lookup itself would carry the secret out.
    const name = e.decideConnect(H('c2VjcmV0.attacker.example'), 8080)
    expect(name).toMatchObject({ allowed: false, resolve: false })
    const http = e.decideHttp({ method: 'GET', host: H('c2VjcmV0.attacker.example'), port: 8080, path: '/', query: null })
    expect(http).toMatchObject({ allowed: false, resolve: false })
  })
  it('resolution is permitted only for an allowed decision on a name a policy host matched', () => {
    const e = PolicyEngine.compile(one({ host: '*.example.com', port: 443 }))
    expect(e.decideConnect(H('api.example.com'), 443)).toMatchObject({ allowed: true, resolve: true })
    expect(e.decideConnect(H('api.example.org'), 443)).toMatchObject({ allowed: false, resolve: false })
    expect(e.decideConnect(H('api.example.com'), 80)).toMatchObject({ allowed: false, resolve: false })
  })
  it('an invalid allowed_ips entry disables the endpoint (fails closed)', () => {
    expect(connect(one({ host: 'a.com', port: 443, allowed_ips: ['not-a-cidr'] }), 'a.com').allowed).toBe(false)
  })
})

describe('Upgrade requests (ws://): the upgraded connection is not inspected', () => {
  const up = (policy: PolicyInput, path = '/ws') =>
    PolicyEngine.compile(policy).decideHttp({ method: 'GET', host: H('a.com'), port: 80, path, query: null }, { upgrade: true })
  it('websocket read-write (GET + WEBSOCKET_TEXT) allows the upgrade', () => {
    expect(up(one({ host: 'a.com', port: 80, protocol: 'websocket', enforcement: 'enforce', access: 'read-write' })).allowed).toBe(true)
  })
  it('websocket read-only (handshake only, no client messages) refuses it under enforce', () => {
    const d = up(one({ host: 'a.com', port: 80, protocol: 'websocket', enforcement: 'enforce', access: 'read-only' }))
    expect(d.allowed).toBe(false)
    expect(d.reason).toMatch(/upgrade not permitted: podshell does not inspect the upgraded connection/)
  })
  it('a deny rule on WEBSOCKET_TEXT refuses it', () => {
    expect(up(one({ host: 'a.com', port: 80, protocol: 'websocket', enforcement: 'enforce', access: 'read-write', deny_rules: [{ method: 'WEBSOCKET_TEXT', path: '/ws' }] })).allowed).toBe(false)
  })
  it('a REST endpoint narrower than full refuses an upgrade (h2c/websocket would escape its rules)', () => {
    expect(up(one({ host: 'a.com', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'read-only' })).allowed).toBe(false)
    expect(up(one({ host: 'a.com', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'full' })).allowed).toBe(true)
  })
  it('audit lets it through, marked', () => {
    expect(up(one({ host: 'a.com', port: 80, protocol: 'websocket', access: 'read-only' })).mode).toBe('audit')
  })
  it('L4 endpoints allow upgrades', () => {
    expect(up(one({ host: 'a.com', port: 80 })).allowed).toBe(true)
  })
})

describe('canonicalizePath: the already-canonical fast path', () => {
  // A path with no %, ';', '//' or dot segment is returned as it is without the per-segment loop.
  // The same path with ';' appended to its first segment must take the loop (';params' are
  // stripped there) and give the same result: the two paths agree.
  it('agrees with the full loop on 3,000 generated paths (dot segments, dots inside names, trailing slashes)', () => {
    const parts = ['a', 'bc', '.', '..', '.x', 'x.', '...', '-', '', 'issues']
    let seed = 7
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % n)
    let fast = 0
    for (let i = 0; i < 3000; i++) {
      const n = 1 + rnd(6)
      const raw = '/' + Array.from({ length: n }, () => parts[rnd(parts.length)]).join('/')
      const first = raw.match(/^\/([^/]*)/)![1]!
      if (first === '' || first === '.' || first === '..') continue
      const forced = raw.replace(/^\/([^/]*)/, `/$1;p`)
      const a = canonicalizePath(raw)
      expect(a, raw).toEqual(canonicalizePath(forced))
      if (a.ok && a.path === raw) fast++
    }
    expect(fast).toBeGreaterThan(100)
  })

  it('a worst-case 8 KiB target is returned unchanged', () => {
    const raw = '/repos' + '/issues'.repeat(1150)
    expect(canonicalizePath(raw)).toEqual({ ok: true, path: raw })
  })
})
