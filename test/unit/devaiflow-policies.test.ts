import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Policy } from '../../src/policy/schema.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { renderTemplate, templateHosts, parseHostOption, parseJiraUrl, REGISTRY_PRESETS } from '../../src/policy/templates.js'
import { SESSION_TYPES, type SessionType } from '../../src/sandbox/types.js'
import { errorOf } from '../helpers/errors.js'

const POLICIES = join(import.meta.dirname, '..', '..', 'policies')

function hostsOf(p: Policy): string[] {
  // The set of host:port pairs (gitlab.com serves both the API and git, so it appears twice).
  return [...new Set(Object.values(p.network_policies ?? {}).flatMap(r => (r.endpoints ?? []).map(e => `${e.host}:${e.port}`)))].sort()
}

const MODEL = ['api.anthropic.com:443']
const TRACKERS = ['*.atlassian.net:443', 'api.github.com:443', 'gitlab.com:443']
const GIT = ['github.com:443', 'gitlab.com:443']
const REGISTRIES = Object.values(REGISTRY_PRESETS).flatMap(p => p.hosts.map(h => `${h}:443`))

const EXPECTED: Record<SessionType, string[]> = {
  investigation: MODEL,
  ticket_creation: [...MODEL, ...TRACKERS],
  development: [...MODEL, ...TRACKERS, ...GIT, ...REGISTRIES],
}

describe('session-type policies in policies/', () => {
  for (const type of SESSION_TYPES) {
    it(`${type}.yaml validates as OpenShell v1 and allows exactly the intended hosts`, () => {
      const text = readFileSync(join(POLICIES, `${type}.yaml`), 'utf8')
      const { policy } = parsePolicyText(text, `${type}.yaml`)
      expect(policy.version).toBe(1)
      expect(hostsOf(policy)).toEqual([...new Set(EXPECTED[type])].sort())
    })

    it(`${type}.yaml is exactly what \`policy template ${type}\` renders (one source of truth)`, () => {
      expect(readFileSync(join(POLICIES, `${type}.yaml`), 'utf8')).toBe(renderTemplate(type, {}))
    })
  }

  it('keeps the project read-only for investigation and ticket_creation, read-write for development', () => {
    for (const type of SESSION_TYPES) {
      const { policy } = parsePolicyText(renderTemplate(type), type)
      expect(policy.filesystem_policy?.include_workdir).toBe(type === 'development')
      // OpenShell's workdir is /sandbox: read-only sessions still read it, development writes it.
      expect(policy.filesystem_policy?.read_write?.includes('/sandbox')).toBe(type === 'development')
      expect(policy.filesystem_policy?.read_only?.includes('/sandbox')).toBe(type !== 'development')
    }
  })

  it('gives each package registry its own entry so users can delete the ones they do not use', () => {
    const { policy } = parsePolicyText(renderTemplate('development'), 'dev')
    expect(Object.keys(policy.network_policies!)).toEqual(
      expect.arrayContaining(['model_api', 'git_hosts', 'npm_registry', 'pypi', 'go_modules', 'crates_io', 'maven_central']),
    )
    const trimmed = { ...policy, network_policies: { ...policy.network_policies } }
    delete trimmed.network_policies!.maven_central
    expect(hostsOf(trimmed)).not.toContain('repo1.maven.org:443')
  })

  it('uses L4 endpoints only (no protocol): podshell cannot inspect HTTPS, so L7 rules would deny or check nothing', () => {
    for (const type of SESSION_TYPES) {
      const { policy } = parsePolicyText(renderTemplate(type), type)
      for (const rule of Object.values(policy.network_policies ?? {})) {
        for (const ep of rule.endpoints ?? []) {
          expect(ep.protocol).toBeUndefined()
          expect(ep.access).toBeUndefined()
        }
        // OpenShell denies an entry without binaries: every entry names some.
        expect((rule.binaries ?? []).length).toBeGreaterThan(0)
      }
    }
  })

  it('comments every block (the YAML explains itself)', () => {
    const text = renderTemplate('development')
    for (const key of ['filesystem_policy:', 'landlock:', 'network_policies:', '  model_api:', '  jira:', '  git_hosts:', '  pypi:']) {
      const i = text.split('\n').findIndex(l => l.startsWith(key))
      expect(i, key).toBeGreaterThan(0)
      expect(text.split('\n')[i - 1]!.trimStart().startsWith('#'), `comment above ${key}`).toBe(true)
    }
  })
})

describe('policy templates for the user\'s hosts', () => {
  it('narrows JIRA to the --jira-url host and port', () => {
    const text = renderTemplate('ticket_creation', { jiraUrl: 'https://jira.acme.example:8443/jira' })
    const { policy } = parsePolicyText(text, 't')
    expect(policy.network_policies!.jira!.endpoints).toEqual([{ host: 'jira.acme.example', port: 8443 }])
    expect(hostsOf(policy)).not.toContain('*.atlassian.net:443')
  })

  it('maps github.com to api.github.com for the API and keeps a GitHub Enterprise host as is', () => {
    const { policy } = parsePolicyText(renderTemplate('development', { githubHosts: ['github.com', 'ghe.acme.example'] }), 't')
    expect(policy.network_policies!.github_api!.endpoints!.map(e => e.host)).toEqual(['api.github.com', 'ghe.acme.example'])
    expect(policy.network_policies!.git_hosts!.endpoints!.map(e => e.host)).toEqual(['github.com', 'ghe.acme.example', 'gitlab.com'])
  })

  it('renders exactly the hosts asked for, for every session type and option mix', () => {
    const cases: { type: SessionType; params: Parameters<typeof renderTemplate>[1]; hosts: string[] }[] = [
      { type: 'investigation', params: { modelApis: ['us-east5-aiplatform.googleapis.com'] }, hosts: ['us-east5-aiplatform.googleapis.com:443'] },
      { type: 'investigation', params: { modelApis: ['llm.acme.example:8443', 'api.anthropic.com'] }, hosts: ['llm.acme.example:8443', 'api.anthropic.com:443'] },
      {
        type: 'ticket_creation',
        params: { jiraUrl: 'https://acme.atlassian.net', gitlabHosts: ['gitlab.acme.example'] },
        hosts: ['api.anthropic.com:443', 'acme.atlassian.net:443', 'api.github.com:443', 'gitlab.acme.example:443'],
      },
      {
        type: 'development',
        params: { registries: ['npm', 'artifactory.acme.example'], githubHosts: ['github.com'], gitlabHosts: ['gitlab.com'] },
        hosts: ['api.anthropic.com:443', '*.atlassian.net:443', 'api.github.com:443', 'gitlab.com:443', 'github.com:443', 'registry.npmjs.org:443', 'artifactory.acme.example:443'],
      },
      {
        type: 'development',
        params: { registries: ['pypi', 'go', 'crates', 'maven'], jiraUrl: 'http://jira.internal.example' },
        hosts: [
          'api.anthropic.com:443', 'jira.internal.example:80', 'api.github.com:443', 'gitlab.com:443', 'github.com:443',
          'pypi.org:443', 'files.pythonhosted.org:443', 'proxy.golang.org:443', 'sum.golang.org:443',
          'crates.io:443', 'index.crates.io:443', 'static.crates.io:443', 'repo.maven.apache.org:443', 'repo1.maven.org:443',
        ],
      },
    ]
    for (const c of cases) {
      const { policy } = parsePolicyText(renderTemplate(c.type, c.params), c.type)
      expect(hostsOf(policy), JSON.stringify(c)).toEqual([...new Set(c.hosts)].sort())
      expect([...new Set(templateHosts(c.type, c.params))].sort()).toEqual([...new Set(c.hosts)].sort())
    }
  })

  it('accepts OpenShell wildcard shapes that OpenShell accepts', () => {
    for (const h of ['*.acme.example', '**.acme.example', '*-api.acme.example', 'api.*.acme.example']) {
      const { policy } = parsePolicyText(renderTemplate('investigation', { modelApis: [h] }), h)
      expect(hostsOf(policy)).toEqual([`${h}:443`])
    }
  })

  it('refuses hosts that are not DNS names or allowed patterns, naming the option', () => {
    const bad: [string, RegExp][] = [
      ['*.com', /TLD wildcard/],
      ['*', /at least two labels/],
      ['**', /at least two labels/],
      ['example.*', /not a DNS label/],
      ['10.0.0.1', /IP literals/],
      ['-rf.example.com', /not a DNS label/],
      ['a..b', /not a DNS label/],
      ['evil.example.com/path', /not a DNS label/],
      ['host.example.com:0', /port must be 1-65535/],
      ['host.example.com:70000', /port must be 1-65535/],
      ['host.example.com\nx', /not a DNS label|expected HOST/],
      ['a'.repeat(10_000) + '.com', /longer than 253/],
      ['foo.**.example.com', /not a DNS label|recursive/],
      ['localhost', /at least two labels/],
    ]
    for (const [h, re] of bad) {
      const e = errorOf(() => renderTemplate('investigation', { modelApis: [h] }))
      expect(e.oneLine(), h).toMatch(re)
      expect(e.oneLine()).toContain('--model-api')
      expect(e.exitCode).toBe(2)
    }
    expect(errorOf(() => renderTemplate('development', { registries: ['*.org'] })).oneLine()).toContain('--registry')
    expect(errorOf(() => renderTemplate('development', { githubHosts: ['gh com'] })).oneLine()).toContain('--github-host')
  })

  it('refuses JIRA URLs that are not http(s) or carry credentials or patterns', () => {
    for (const [u, re] of [
      ['jira.acme.example', /must start with https:\/\//],
      ['ftp://jira.acme.example', /must start with https:\/\//],
      ['javascript:alert(1)', /must start with https:\/\//],
      ['https://user:pw@jira.acme.example', /credentials/],
      ['https://*.acme.example', /not a valid URL|one host|not a DNS label/],
      ['https://10.1.2.3', /IP literals/],
    ] as const) {
      expect(errorOf(() => parseJiraUrl(u)).oneLine(), u).toMatch(re)
    }
    expect(parseJiraUrl('https://Acme.Atlassian.NET/')).toEqual({ host: 'acme.atlassian.net', port: 443 })
    expect(parseHostOption('Api.Example.COM:8443', 'x')).toEqual({ host: 'api.example.com', port: 8443 })
  })

  it('quotes wildcard hosts and binary globs so YAML does not read "*" as an alias', () => {
    const text = renderTemplate('investigation', { modelApis: ['*.acme.example'] })
    expect(text).toContain('host: "*.acme.example"')
    expect(text).toContain('path: "/**/.local/share/claude/versions/*"')
  })
})
