import { describe, it, expect, beforeEach } from 'vitest'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'yaml'
import { builtinProfiles, bindingHostProblem, checkProfile, lintProfiles, loadProfileFiles, storeProfiles, importedProfiles, findProfile, bindingLines } from '../../src/credentials/profiles.js'

const GOOD = {
  id: 'acme',
  display_name: 'Acme',
  credentials: [{ name: 'api_key', env_vars: ['ACME_TOKEN'], required: true, auth_style: 'header', header_name: 'x-acme-key' }],
  endpoints: [
    { host: 'api.acme.test', port: 443, path: '/v1/**' },
    { host: '*.acme.test', port: 8443 },
  ],
}

let data: string
beforeEach(() => {
  data = mkdtempSync(join(tmpdir(), 'profiles-'))
})

const errors = (raw: unknown) => checkProfile(raw, 'f.yaml', { imported: true, dataDir: data }).diagnostics.filter(d => d.severity === 'error')

describe('provider profiles', () => {
  it("OpenShell's own github.yaml shape parses (rules and binaries accepted with warnings)", () => {
    const doc = parse(`id: gh-enterprise
display_name: GitHub Enterprise
category: source_control
credentials:
  - name: api_token
    description: GitHub token
    env_vars: [GHE_TOKEN]
    required: true
    auth_style: bearer
    header_name: authorization
discovery:
  credentials: [api_token]
endpoints:
  - host: api.ghe.example.com
    port: 443
    protocol: rest
    access: read-only
    enforcement: enforce
    rules:
      - allow: { method: GET, path: "**" }
binaries: [/usr/bin/gh]
`)
    const r = checkProfile(doc, 'gh.yaml', { imported: true, dataDir: data })
    expect(r.profile?.id).toBe('gh-enterprise')
    expect(r.diagnostics.every(d => d.severity === 'warning')).toBe(true)
    expect(r.diagnostics.map(d => d.field)).toEqual(expect.arrayContaining(['endpoints.0.rules', 'binaries']))
  })

  it('built-in types export as profiles and validate against the same schema', () => {
    const b = builtinProfiles()
    expect(b.map(p => p.id)).toEqual(expect.arrayContaining(['claude', 'openai', 'github', 'gitlab', 'jira']))
    const gh = b.find(p => p.id === 'github')!
    expect(gh.credentials[0]!.env_vars).toEqual(['GITHUB_TOKEN', 'GH_TOKEN'])
    expect(gh.endpoints).toContainEqual({ host: 'api.github.com', port: 443 })
    expect(b.find(p => p.id === 'claude')!.credentials[0]).toMatchObject({ auth_style: 'header', header_name: 'x-api-key' })
    expect(gh).toMatchObject({ display_name: 'GitHub', category: 'source_control' })
    for (const p of b.filter(x => x.endpoints.length > 0)) expect(checkProfile(p, 'builtin', { imported: false }).profile).toBeDefined()
  })

  it("category follows OpenShell's values (case and - normalised); an unknown one is an error", () => {
    expect(checkProfile({ ...GOOD, category: 'Source-Control' }, 'x.yaml', { imported: false }).profile?.category).toBe('source_control')
    const bad = checkProfile({ ...GOOD, category: 'everything' }, 'x.yaml', { imported: false })
    expect(bad.profile).toBeUndefined()
    expect(bad.diagnostics.map(d => d.field)).toContain('category')
  })

  it.each([
    ['a built-in id (cannot re-bind github)', { ...GOOD, id: 'github' }, 'id', /built-in/],
    ['a bare wildcard', { ...GOOD, endpoints: [{ host: '*', port: 443 }] }, 'endpoints.0.host', /too broad|not/],
    ['** over a TLD', { ...GOOD, endpoints: [{ host: '**.io', port: 443 }] }, 'endpoints.0.host', /too broad/],
    ['*.com', { ...GOOD, endpoints: [{ host: '*.com', port: 443 }] }, 'endpoints.0.host', /too broad/],
    ['a regex-looking host', { ...GOOD, endpoints: [{ host: 'api.[a-z].test', port: 443 }] }, 'endpoints.0.host', /./],
    ['a missing port', { ...GOOD, endpoints: [{ host: 'api.acme.test' }] }, 'endpoints.0.port', /./],
    ['a proxy variable as a credential', { ...GOOD, credentials: [{ name: 'x', env_vars: ['HTTPS_PROXY'] }] }, 'credentials.0.env_vars.0', /HTTPS_PROXY cannot be a credential/],
    ['a duplicate variable', { ...GOOD, credentials: [{ name: 'x', env_vars: ['A_TOKEN', 'A_TOKEN'] }] }, 'credentials.0.env_vars.1', /duplicate/],
    ['an unsupported field (token refresh)', { ...GOOD, credentials: [{ name: 'x', env_vars: ['A_TOKEN'], refresh: { strategy: 'oauth2-refresh-token' } }] }, 'credentials.0', /refresh.*not supported by podshell/],
    ['header auth without a header name', { ...GOOD, credentials: [{ name: 'x', env_vars: ['A_TOKEN'], auth_style: 'header' }] }, 'credentials.0.header_name', /header_name/],
    ['no endpoints', { ...GOOD, endpoints: [] }, 'endpoints', /./],
  ])('refuses %s', (_what, raw, field, msg) => {
    const e = errors(raw)
    expect(e.length).toBeGreaterThan(0)
    expect(e.find(d => d.field === field)?.message ?? JSON.stringify(e)).toMatch(msg)
  })

  it('bindingHostProblem: two literal labels after the last wildcard', () => {
    expect(bindingHostProblem('*.acme.test')).toBeUndefined()
    expect(bindingHostProblem('api-*.acme.test')).toBeUndefined()
    expect(bindingHostProblem('api.acme.test')).toBeUndefined()
    expect(bindingHostProblem('*.test')).toMatch(/too broad/)
    expect(bindingHostProblem('acme.*.test')).toMatch(/too broad/)
    expect(bindingHostProblem('localhost')).toMatch(/not a fully qualified/)
  })

  it('import: stored, found by id, re-import of the same id refused (an existing binding is never widened)', () => {
    const r = lintProfiles(data, [{ source: 'a.yaml', raw: GOOD }], true)
    expect(r.diagnostics).toEqual([])
    storeProfiles(data, r.profiles)
    expect(findProfile(data, 'acme')).toMatchObject({ builtin: false, profile: { id: 'acme' } })
    expect(importedProfiles(data).profiles.map(p => p.id)).toEqual(['acme'])
    const again = lintProfiles(data, [{ source: 'b.yaml', raw: { ...GOOD, endpoints: [{ host: 'evil.example.com', port: 443 }] } }], true)
    expect(again.profiles).toEqual([])
    expect(again.diagnostics[0]).toMatchObject({ field: 'id', severity: 'error' })
    expect(bindingLines(r.profiles[0]!)).toEqual(['ACME_TOKEN → api.acme.test:443/v1/**', 'ACME_TOKEN → *.acme.test:8443'])
  })

  it('a tampered stored profile is skipped with a diagnostic, not used', () => {
    storeProfiles(data, [GOOD as never])
    writeFileSync(join(data, 'provider-profiles', 'acme.json'), JSON.stringify({ ...GOOD, endpoints: [{ host: '*', port: 443 }] }))
    const r = importedProfiles(data)
    expect(r.profiles).toEqual([])
    expect(r.diagnostics[0]!.field).toBe('endpoints.0.host')
  })

  it('files: YAML with several documents; aliases refused; duplicate ids in one import refused', () => {
    const f = join(data, 'p.yaml')
    writeFileSync(f, `id: one\ncredentials: [{name: a, env_vars: [ONE_TOKEN]}]\nendpoints: [{host: one.example.com, port: 443}]\n---\nid: one\ncredentials: [{name: a, env_vars: [TWO_TOKEN]}]\nendpoints: [{host: two.example.com, port: 443}]\n`)
    const { items } = loadProfileFiles(f, undefined)
    expect(items).toHaveLength(2)
    const r = lintProfiles(data, items, true)
    expect(r.diagnostics).toContainEqual(expect.objectContaining({ message: 'duplicate provider profile id: one', severity: 'error' }))
    const g = join(data, 'alias.yaml')
    writeFileSync(g, `id: &x a\ncredentials: [{name: *x, env_vars: [ONE_TOKEN]}]\nendpoints: [{host: one.example.com, port: 443}]\n`)
    expect(loadProfileFiles(g, undefined).diagnostics[0]!.message).toMatch(/failed to parse/)
    expect(() => loadProfileFiles(undefined, undefined)).toThrow(/exactly one of/)
  })
})
