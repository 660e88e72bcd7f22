import { describe, expect, it } from 'vitest'
import { canonicalJson } from '../../src/util/canonical-json.js'
import { policyHash } from '../../src/policy/document.js'
import { parsePolicyText } from '../../src/policy/parse.js'

describe('canonicalJson (the one serialisation behind the policy hash, policy update and the enterprise ceiling)', () => {
  it('sorts keys at every level and leaves undefined members out', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: undefined, x: 'é' }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"x":"é","z":1}]},"b":1}')
    expect(canonicalJson({ a: 1, b: 2 })).toBe(canonicalJson({ b: 2, a: 1 }))
    expect(canonicalJson([undefined, 'x'])).toBe('[null,"x"]')
    expect(canonicalJson(undefined)).toBe('null')
  })

  it('two documents differing only in key order hash the same; a changed value does not', () => {
    const a = parsePolicyText('version: 1\nnetwork_policies:\n  gh:\n    endpoints: [{ host: api.github.com, port: 443, access: read-only, protocol: rest }]\n', 'a').policy
    const b = parsePolicyText('network_policies:\n  gh:\n    endpoints: [{ protocol: rest, access: read-only, port: 443, host: api.github.com }]\nversion: 1\n', 'b').policy
    const c = parsePolicyText('version: 1\nnetwork_policies:\n  gh:\n    endpoints: [{ host: api.github.com, port: 443, access: read-write, protocol: rest }]\n', 'c').policy
    expect(policyHash(a)).toBe(policyHash(b))
    expect(policyHash(a)).not.toBe(policyHash(c))
  })
})
