import { describe, it, expect } from 'vitest'
import { compileGlob, globProblem, globStats, MAX_INSPECTED_HEADER_BYTES } from '../../src/rules/glob.js'
import { PolicyEngine } from '../../src/gateway/policy-engine.js'
import { canonicalizeHost } from '../../src/gateway/address.js'

describe('request-field globs (src/rules/glob.ts)', () => {
  it.each([
    ['/repos/*', '/repos/a/b', true], // `*` crosses "/" (OpenShell)
    ['/repos/**', '/repos/a/b', true],
    ['/repos/*/issues', '/repos/a/issues', true],
    ['/repos/*/issues', '/repos/a/pulls', false],
    ['/v?/x', '/v1/x', true],
    ['/v[0-9]/x', '/v7/x', true],
    ['/v[!0-9]/x', '/v7/x', false],
    ['/{a,b}/x', '/b/x', true],
    ['/{a,b}/x', '/c/x', false],
    ['/{a,{b,c}d}/x', '/cd/x', true],
    ['/lit\\*', '/lit*', true],
    ['/lit\\*', '/litx', false],
    ['/x[', '/x[', true], // an unclosed class is a literal "["
    ['GET', 'GET', true],
    ['*', '', true],
  ])('%s vs %s → %s', (pattern, value, want) => {
    expect(compileGlob(pattern).test(value)).toBe(want)
  })

  it('unbalanced braces and explosive alternatives are invalid (and match nothing)', () => {
    expect(globProblem('/{a,b')).toMatch(/unclosed '\{'/)
    expect(globProblem('/a}')).toMatch(/unmatched '\}'/)
    expect(globProblem('/{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}')).toMatch(/more than 64 alternatives/)
    expect(compileGlob('/{a,b').test('/a')).toBe(false)
  })

  it('issue 9 finding 4: the 11 KB ReDoS path costs at most |path| × |pattern| steps', () => {
    // The red team's request: /repos + /issues × 1,850 against a many-star L7 rule that fails
    // only at the very end. A backtracking regex took 13 s; the two-pointer matcher is bounded.
    const path = '/repos' + '/issues'.repeat(1850) + '/x'
    expect(path.length).toBeGreaterThan(11_000)
    const pattern = '/repos/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/comments'
    const g = compileGlob(pattern)
    globStats.steps = 0
    expect(g.test(path)).toBe(false)
    const bound = (path.length + 1) * (pattern.length + 1)
    expect(globStats.steps).toBeGreaterThan(0)
    expect(globStats.steps).toBeLessThanOrEqual(bound)
  })

  it('the engine refuses request targets longer than the 16 KiB inspection bound', () => {
    const e = PolicyEngine.compile({ network_policies: { x: { endpoints: [{ host: 'a.com', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'full' }] } } })
    const long = '/' + 'a'.repeat(MAX_INSPECTED_HEADER_BYTES)
    const d = e.decideHttp({ method: 'GET', host: canonicalizeHost('a.com'), port: 80, path: long, query: null })
    expect(d).toMatchObject({ allowed: false, resolve: false })
    expect(d.reason).toMatch(/not inspected/)
    expect(e.decideHttp({ method: 'GET', host: canonicalizeHost('a.com'), port: 80, path: '/ok', query: null }).allowed).toBe(true)
  })

  it('an invalid deny-rule glob denies (fails closed); an invalid allow-rule glob allows nothing', () => {
    const e = PolicyEngine.compile({
      network_policies: {
        x: { endpoints: [{ host: 'a.com', port: 80, protocol: 'rest', enforcement: 'enforce', access: 'full', deny_rules: [{ method: 'GET', path: '/{a' }] }] },
        y: { endpoints: [{ host: 'b.com', port: 80, protocol: 'rest', enforcement: 'enforce', rules: [{ allow: { method: 'GET', path: '/{a' } }] }] },
      },
    })
    expect(e.decideHttp({ method: 'GET', host: canonicalizeHost('a.com'), port: 80, path: '/zzz', query: null }).allowed).toBe(false)
    expect(e.decideHttp({ method: 'GET', host: canonicalizeHost('b.com'), port: 80, path: '/a', query: null }).allowed).toBe(false)
  })
})
