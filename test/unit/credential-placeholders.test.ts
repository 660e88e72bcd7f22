import { describe, it, expect } from 'vitest'
import { credentialPrefix, makePlaceholder } from '../../src/credentials/placeholder.js'
import { substituteCredentials, substituteBody, findPlaceholders, CREDENTIAL_MISMATCH_BODY, type HeldCredential } from '../../src/gateway/credential-substitution.js'
import { PolicyEngine } from '../../src/gateway/policy-engine.js'
import { canonicalizeHost } from '../../src/gateway/address.js'

const GHP = 'ghp_' + 'R3alT0kenValue1234567890abcdefABCDEF'
const ANT = 'sk-ant-api03-' + 'Zq'.repeat(40)

describe('placeholder generation', () => {
  it('keeps the prefix that SDKs check (ghp_, sk-ant-, xoxb-, github_pat_) and nothing after it', () => {
    expect(credentialPrefix(GHP)).toBe('ghp_')
    expect(credentialPrefix(ANT)).toBe('sk-ant-')
    expect(credentialPrefix('xoxb-1234567890-abcdefghijklmnopqrstu')).toBe('xoxb-')
    expect(credentialPrefix('github_pat_11ABCDEFG0123456789abcdefghijklmnop')).toBe('github_pat_')
    expect(credentialPrefix('ATATT3xFfGF0abcdefghijklmnopqrstuvwxyz')).toBe('')
    // too little left to randomise: no prefix kept
    expect(credentialPrefix('ab_cdefgh')).toBe('')
  })

  it('same length, same prefix, random rest, never the value, different per call', () => {
    for (const v of [GHP, ANT, 'plainsecretvalue123456789', 'xoxb-1234567890-abcdefghijklmnopqrstu']) {
      const a = makePlaceholder(v)
      const b = makePlaceholder(v)
      expect(a).toHaveLength(v.length)
      expect(a.startsWith(credentialPrefix(v))).toBe(true)
      expect(a).not.toBe(v)
      expect(a).not.toBe(b)
      expect(a).toMatch(/^[A-Za-z0-9_-]+$/)
      // no run of 8 characters of the value beyond its prefix survives
      const rest = v.slice(credentialPrefix(v).length)
      for (let i = 0; i + 8 <= rest.length; i++) expect(a.slice(credentialPrefix(v).length)).not.toContain(rest.slice(i, i + 8))
    }
  })

  it('avoids placeholders already taken and pads very short values', () => {
    let n = 0
    const seq = (k: number) => n++ % k
    const first = makePlaceholder('abcdefghijkl', new Set(), seq)
    n = 0
    const second = makePlaceholder('abcdefghijkl', new Set([first]), seq)
    expect(second).not.toBe(first)
    expect(makePlaceholder('abc').length).toBeGreaterThanOrEqual(8)
  })
})

const cred = (over: Partial<HeldCredential> = {}): HeldCredential => ({ provider: 'gh', variable: 'GITHUB_TOKEN', placeholder: 'ghp_PLACEHOLDERxxxxxxxxxxxxxxxxxxxxxxxx', value: GHP, ...over })

describe('substitution', () => {
  const c = cred()
  const bound = () => true

  it('replaces the placeholder in Bearer and custom headers, query values and path segments', () => {
    const r = substituteCredentials({ rawHeaders: ['Host', 'api.github.com', 'Authorization', `Bearer ${c.placeholder}`, 'X-Api-Key', c.placeholder], url: `/repos/${c.placeholder}/x?token=${c.placeholder}&a=1` }, [c], bound)
    expect(r.kind).toBe('substituted')
    if (r.kind !== 'substituted') return
    expect(r.rawHeaders).toEqual(['Host', 'api.github.com', 'Authorization', `Bearer ${GHP}`, 'X-Api-Key', GHP])
    expect(r.url).toBe(`/repos/${GHP}/x?token=${GHP}&a=1`)
    expect(r.used.map(u => u.where).sort()).toEqual(['header authorization', 'header x-api-key', 'path', 'query'])
  })

  it('decodes, substitutes and re-encodes Basic credentials', () => {
    const basic = Buffer.from(`user:${c.placeholder}`).toString('base64')
    const r = substituteCredentials({ rawHeaders: ['Authorization', `Basic ${basic}`], url: '/' }, [c], bound)
    expect(r.kind).toBe('substituted')
    if (r.kind !== 'substituted') return
    expect(r.rawHeaders[1]).toBe(`Basic ${Buffer.from(`user:${GHP}`).toString('base64')}`)
  })

  it('refuses a placeholder outside its binding (mismatch) and never returns the value', () => {
    const r = substituteCredentials({ rawHeaders: ['Authorization', `token ${c.placeholder}`], url: '/gists' }, [c], () => false)
    expect(r).toEqual({ kind: 'mismatch', provider: 'gh', variable: 'GITHUB_TOKEN', where: 'header authorization' })
    expect(JSON.stringify(r)).not.toContain(GHP)
    expect(CREDENTIAL_MISMATCH_BODY.error).toBe('credential_endpoint_mismatch')
  })

  it('one unbound placeholder refuses the whole request, even next to a bound one', () => {
    const other = cred({ provider: 'jira', variable: 'JIRA_API_TOKEN', placeholder: 'JIRAPLACEHOLDERyyyyyyyyyyyy', value: 'jira-real-value-zzzzzzzzzz' })
    const r = substituteCredentials({ rawHeaders: ['A', c.placeholder, 'B', other.placeholder], url: '/' }, [c, other], p => p === 'gh')
    expect(r.kind).toBe('mismatch')
  })

  it('a placeholder without a held value (provider deleted, gateway restarted) is unavailable, not forwarded', () => {
    const r = substituteCredentials({ rawHeaders: ['Authorization', `Bearer ${c.placeholder}`], url: '/' }, [cred({ value: undefined })], bound)
    expect(r.kind).toBe('unavailable')
  })

  it('strings that are not this sandbox\'s placeholders are left alone', () => {
    expect(substituteCredentials({ rawHeaders: ['Authorization', 'Bearer ghp_someOtherSandboxPlaceholder000000000'], url: '/?q=1' }, [c], bound)).toEqual({ kind: 'none' })
    expect(findPlaceholders({ rawHeaders: [], url: '/' }, [])).toEqual([])
  })
})

describe('body substitution (opt-in endpoints)', () => {
  const c = cred()
  it('replaces bound placeholders in the body, refuses unbound or unheld ones, leaves other bodies byte-identical', () => {
    const r = substituteBody(Buffer.from(`{"token":"${c.placeholder}"}`), [c], () => true)
    expect(r.kind === 'substituted' && r.body.toString()).toBe(`{"token":"${GHP}"}`)
    expect(substituteBody(Buffer.from(c.placeholder), [c], () => false)).toEqual({ kind: 'mismatch', provider: 'gh', variable: 'GITHUB_TOKEN', where: 'body' })
    expect(substituteBody(Buffer.from(c.placeholder), [cred({ value: undefined })], () => true).kind).toBe('unavailable')
    expect(substituteBody(Buffer.from([0xff, 0x00, 0x80]), [c], () => true)).toEqual({ kind: 'none' })
  })
})

describe('binding (policy engine)', () => {
  const host = (h: string) => canonicalizeHost(h)
  const policy = {
    network_policies: {
      p: {
        endpoints: [
          { host: 'api.github.com', port: 443 },
          { host: 'jira.example.test', port: 443, protocol: 'rest', access: 'full', path: '/rest/**', credential_binding: { provider: 'myjira' } },
          { host: 'paste.example.test', port: 443 },
          { host: 'jira.example.test', port: 443, protocol: 'rest', access: 'full', path: '/body/**', credential_binding: { provider: 'myjira' }, request_body_credential_rewrite: true },
        ],
      },
    },
  }
  const e = PolicyEngine.compile(policy, [
    { name: 'gh', type: 'github', config: {} },
    { name: 'corp', type: 'jira', config: { JIRA_URL: 'https://corp.example.test/' } },
  ])

  it('built-in profile hosts on 443 bind their provider only', () => {
    expect(e.credentialBound('gh', host('api.github.com'), 443, '/user')).toBe(true)
    expect(e.credentialBound('gh', host('api.github.com'), 8443, '/user')).toBe(false)
    expect(e.credentialBound('gh', host('paste.example.test'), 443, '/')).toBe(false)
    expect(e.credentialBound('corp', host('corp.example.test'), 443, '/rest/api/2/issue')).toBe(true)
    expect(e.credentialBound('corp', host('api.github.com'), 443, '/')).toBe(false)
  })

  it('credential_binding binds host, port and path', () => {
    expect(e.credentialBound('myjira', host('jira.example.test'), 443, '/rest/api/2/issue')).toBe(true)
    expect(e.credentialBound('myjira', host('jira.example.test'), 443, '/other')).toBe(false)
    expect(e.credentialBound('gh', host('jira.example.test'), 443, '/rest/x')).toBe(false)
  })

  it('request_body_credential_rewrite opts in by host, port and path', () => {
    expect(e.rewritesBody(host('jira.example.test'), 443, '/body/x')).toBe(true)
    expect(e.rewritesBody(host('jira.example.test'), 443, '/rest/x')).toBe(false)
    expect(e.rewritesBody(host('api.github.com'), 443, '/body/x')).toBe(false)
  })

  it("a provider's built-in host is terminated so placeholders can be substituted", () => {
    expect(e.inspects(host('api.github.com'), 443)).toBe(true)
    expect(e.inspects(host('paste.example.test'), 443)).toBe(false)
  })
})
