import { describe, it, expect } from 'vitest'
import { HostPattern, hostPatternProblem } from '../../src/rules/host-pattern.js'
import { PolicyEngine } from '../../src/gateway/policy-engine.js'
import { canonicalizeHost } from '../../src/gateway/address.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { stringify } from 'yaml'

const P = (s: string) => {
  const p = HostPattern.parse(s)
  if (!p) throw new Error(`invalid: ${s}: ${hostPatternProblem(s)}`)
  return p
}

describe('host patterns (src/rules/host-pattern.ts): OpenShell wildcard semantics', () => {
  it.each([
    ['api.example.com', 'api.example.com', true],
    ['api.example.com', 'API.Example.COM.', true], // case-insensitive, trailing dot ignored
    ['api.example.com.', 'api.example.com', true],
    ['*.example.com', 'a.example.com', true],
    ['*.example.com', 'a.b.example.com', false], // `*` is one label
    ['*.example.com', 'example.com', false],
    ['**.example.com', 'a.example.com', true],
    ['**.example.com', 'a.b.c.example.com', true],
    ['**.example.com', 'example.com', false], // `**` is one or more labels
    ['*-api.example.com', 'eu-api.example.com', true],
    ['*-api.example.com', 'eu.x-api.example.com', false], // `*` inside a label never crosses a dot
    ['api.*.example.com', 'api.eu.example.com', true],
    ['api.*.example.com', 'api.eu.west.example.com', false],
    ['a.**.z.com', 'a.b.c.z.com', true],
  ])('%s vs %s → %s', (pattern, host, want) => {
    expect(P(pattern).matches(host)).toBe(want)
  })

  it.each(['api-[ab].example.com', 'api-?.example.com', '{a,b}.example.com', 'a\\b.example.com', 'a b.com', 'a..com', 'x**.example.com', ''])(
    'refuses %j with one line naming the problem',
    p => {
      const why = hostPatternProblem(p)
      expect(why).toBeDefined()
      expect(why).not.toContain('\n')
      expect(HostPattern.parse(p)).toBeUndefined()
    },
  )

  it('subset (covers) is conservative and agrees with matches', () => {
    expect(P('*.example.com').covers(P('api.example.com'))).toBe(true)
    expect(P('*.example.com').covers(P('api-1.example.com'))).toBe(true)
    expect(P('api.example.com').covers(P('api-1.example.com'))).toBe(false)
    expect(P('**.example.com').covers(P('*.example.com'))).toBe(true)
    expect(P('**.example.com').covers(P('**.a.example.com'))).toBe(true)
    expect(P('*.example.com').covers(P('**.example.com'))).toBe(false)
    expect(P('*-api.example.com').covers(P('*.example.com'))).toBe(false)
  })

  it('overlaps finds a common host or proves there is none', () => {
    expect(P('*.example.com').overlaps(P('api.*.com'))).toBe(true)
    expect(P('*-a.example.com').overlaps(P('b-*.example.com'))).toBe(true) // b-a.example.com
    expect(P('*.example.com').overlaps(P('*.example.org'))).toBe(false)
    expect(P('**.example.com').overlaps(P('a.b.example.com'))).toBe(true)
  })

  it('a worst-case host against a many-star pattern is bounded work (label-by-label, no regex)', () => {
    const host = Array.from({ length: 120 }, () => 'a').join('.')
    const pat = P(`${Array.from({ length: 60 }, () => '**').join('.')}.b`)
    expect(pat.matches(host)).toBe(false)
    expect(P('*a*a*a*a*a*a*a*a*a*b.com').matches(`${'a'.repeat(60)}.com`)).toBe(false)
  })
})

describe('one host rule for validation and the gateway (issue 10: three matchers disagreed)', () => {
  it('a policy host the gateway cannot read the same way is a validation error', () => {
    const yaml = stringify({ version: 1, network_policies: { x: { endpoints: [{ host: 'api-[ab].example.com', port: 443 }] } } })
    expect(() => parsePolicyText(yaml, 'p.yaml')).toThrow(/api-\[ab\]\.example\.com.*'\['/)
  })
  it('the gateway matches exactly what the pattern says', () => {
    const e = PolicyEngine.compile({ network_policies: { x: { endpoints: [{ host: '*-api.example.com', port: 443 }] } } })
    expect(e.decideConnect(canonicalizeHost('eu-api.example.com'), 443).allowed).toBe(true)
    expect(e.decideConnect(canonicalizeHost('eu.x-api.example.com'), 443).allowed).toBe(false)
  })
  it('an invalid pattern reaching the engine anyway matches nothing', () => {
    const e = PolicyEngine.compile({ network_policies: { x: { endpoints: [{ host: 'api-[ab]*.example.com', port: 443 }] } } })
    expect(e.decideConnect(canonicalizeHost('api-a.example.com'), 443).allowed).toBe(false)
  })
})
