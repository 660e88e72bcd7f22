import { describe, it, expect } from 'vitest'
import { PROVIDER_TYPES, PROVIDER_TYPE_NAMES, providerHosts } from '../../src/credentials/types.js'
import { providerSecretName, SECRET_PREFIX } from '../../src/credentials/secrets.js'
import { reservedReason } from '../../src/credentials/input.js'
import { ProviderRecordSchema } from '../../src/credentials/store.js'
import { injectionAuditEvents, missingSecretHint } from '../../src/credentials/inject.js'
import { envKey } from '../../src/util/validate.js'

describe('provider type table', () => {
  it('has the OpenShell types plus jira, and jira injects JIRA_API_TOKEN with URL and auth type as config', () => {
    expect(PROVIDER_TYPE_NAMES.sort()).toEqual(
      ['anthropic', 'claude', 'codex', 'copilot', 'generic', 'github', 'gitlab', 'jira', 'nvidia', 'openai', 'opencode'].sort(),
    )
    expect(PROVIDER_TYPES.jira.credentials).toEqual(['JIRA_API_TOKEN'])
    expect(PROVIDER_TYPES.jira.config).toEqual(['JIRA_URL', 'JIRA_AUTH_TYPE'])
    expect(PROVIDER_TYPES.generic.credentials).toEqual([])
  })

  it('names only valid, non-reserved variables', () => {
    for (const [type, t] of Object.entries(PROVIDER_TYPES)) {
      for (const v of [...t.credentials, ...t.config]) {
        expect(envKey.safeParse(v).success, `${type} ${v}`).toBe(true)
        expect(reservedReason(v), `${type} ${v}`).toBeUndefined()
      }
    }
  })

  it('attributes self-hosted hosts named in config', () => {
    expect(providerHosts('jira', { JIRA_URL: 'https://Jira.Corp.example:8443/x', JIRA_AUTH_TYPE: 'bearer' })).toEqual(['jira.corp.example'])
    expect(providerHosts('github', { GH_HOST: 'ghe.corp.example' })).toContain('ghe.corp.example')
    expect(providerHosts('generic', { SOME_URL: 'not a url' })).toEqual([])
    expect(providerHosts('jira', { url: 'https://acme.atlassian.net' })).toEqual(['acme.atlassian.net'])
  })
})

describe('secret names', () => {
  const PODMAN_RULE = /^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,62}[a-zA-Z0-9])?$/

  it('is readable when it fits Podman 4.3 (64 chars, alphanumeric ends)', () => {
    expect(providerSecretName('my-github', 'GITHUB_TOKEN')).toBe('podshell.provider.my-github.GITHUB_TOKEN')
  })

  it('falls back to a hashed name for long names and names ending in "_", always valid for Podman', () => {
    const long = providerSecretName('a'.repeat(63), 'B'.repeat(200))
    const underscore = providerSecretName('p', 'TOKEN_')
    for (const n of [long, underscore]) {
      expect(n.startsWith(SECRET_PREFIX)).toBe(true)
      expect(n).toMatch(PODMAN_RULE)
      expect(n.slice(SECRET_PREFIX.length)).toMatch(/^[0-9a-f]{24}$/)
    }
    expect(underscore).not.toBe(providerSecretName('p', 'TOKEN'))
  })

  it('never maps two (provider, variable) pairs to one name', () => {
    const pairs: [string, string][] = [
      ['a.b', 'C'],
      ['a', 'B_C'],
      ['a', 'b'],
      ['a.b', 'c'],
      ['ab', 'C'],
      ['a', 'BC'],
      ['p', 'TOKEN_'],
      ['p', '_TOKEN'],
      ['x'.repeat(63), 'Y'],
      ['x'.repeat(62), 'Y'],
    ]
    const names = pairs.map(([p, v]) => providerSecretName(p, v))
    expect(new Set(names).size).toBe(pairs.length)
    for (const n of names) expect(n).toMatch(PODMAN_RULE)
  })
})

describe('provider metadata schema', () => {
  const ok = { name: 'gh', type: 'github', credentials: ['GITHUB_TOKEN'], config: { GH_HOST: 'github.com' }, created_at: 'x', updated_at: 'x' }

  it('accepts metadata and has no field that can carry a value', () => {
    expect(ProviderRecordSchema.parse(ok)).toEqual(ok)
    for (const extra of ['values', 'value', 'secrets', 'token']) {
      expect(ProviderRecordSchema.safeParse({ ...ok, [extra]: { GITHUB_TOKEN: 'v' } }).success, extra).toBe(false)
    }
  })

  it('accepts only variable NAMES in credentials', () => {
    expect(ProviderRecordSchema.safeParse({ ...ok, credentials: ['GITHUB_TOKEN=ghp_value'] }).success).toBe(false)
  })

  it('rejects malformed types and multi-line config (a well-formed id may name an imported profile)', () => {
    expect(ProviderRecordSchema.safeParse({ ...ok, type: '../aws' }).success).toBe(false)
    expect(ProviderRecordSchema.safeParse({ ...ok, type: 'AWS' }).success).toBe(false)
    expect(ProviderRecordSchema.safeParse({ ...ok, type: 'acme-profile' }).success).toBe(true)
    expect(ProviderRecordSchema.safeParse({ ...ok, config: { A: 'x\ny' } }).success).toBe(false)
  })
})

describe('audit events', () => {
  it('name provider and variable, never a value', () => {
    expect(injectionAuditEvents([{ provider: 'gh', name: 'GITHUB_TOKEN' }])).toEqual([
      { event: 'credential_injected', detail: { provider: 'gh', variable: 'GITHUB_TOKEN' } },
    ])
  })
})

describe('missing provider secret hint', () => {
  it("names provider and variable from podman's error", () => {
    expect(missingSecretHint('Error: no secret with name or id "podshell.provider.my.gh.GITHUB_TOKEN": no such secret')).toBe(
      'provider my.gh (GITHUB_TOKEN) was deleted; create it again with `podshell provider create`, or delete the sandbox',
    )
  })

  it('falls back for hashed names and ignores other secrets and errors', () => {
    expect(missingSecretHint(`no secret with name or id "${providerSecretName('p', 'TOKEN_')}": no such secret`)).toMatch(/^a provider this sandbox uses was deleted/)
    expect(missingSecretHint('no secret with name or id "mine": no such secret')).toBeUndefined()
    expect(missingSecretHint('no such container')).toBeUndefined()
  })
})
