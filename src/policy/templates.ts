import { isIP } from 'node:net'
import { PodshellError } from '../errors.js'
import type { SessionType } from '../sandbox/types.js'
import { hostPatternProblem, hostWildcardProblem } from './schema.js'

/**
 * Session-type policies for DevAIFlow, rendered as plain OpenShell v1 YAML.
 *
 * The files in policies/ are exactly `renderTemplate(type, {})` (a unit test keeps them in sync);
 * `podshell policy template <type> --jira-url … --github-host …` renders the same documents for the
 * user's own hosts. Every network entry is a separate key so users can delete what they do not use.
 *
 * Endpoints are L4 (host + port, no `protocol`): what both runtimes enforce identically. (podshell's
 * gateway now checks REST method/path rules on HTTPS too, by terminating TLS: docs/tls.md; adding
 * such rules per session type is a separate change of these templates.)
 */

export interface TemplateParams {
  /** JIRA base URL (https://jira.example.com or https://example.atlassian.net); default: JIRA Cloud (*.atlassian.net). */
  jiraUrl?: string
  /** GitHub hosts (github.com, or GitHub Enterprise Server hosts); default github.com. */
  githubHosts?: string[]
  /** GitLab hosts; default gitlab.com. */
  gitlabHosts?: string[]
  /** Model API hosts; default api.anthropic.com. */
  modelApis?: string[]
  /** Package registries: preset names (npm, pypi, go, crates, maven) and/or hosts; default all presets. */
  registries?: string[]
}

/** A host (DNS name or OpenShell wildcard pattern) and port. */
export interface HostPort {
  host: string
  port: number
}

export const DEFAULT_MODEL_APIS = ['api.anthropic.com'] as const
export const DEFAULT_JIRA_HOST = '*.atlassian.net'
export const DEFAULT_GITHUB_HOSTS = ['github.com'] as const
export const DEFAULT_GITLAB_HOSTS = ['gitlab.com'] as const

/** Package registry presets: the hosts each ecosystem's client downloads from. */
export const REGISTRY_PRESETS = {
  npm: { key: 'npm_registry', name: 'npm-registry', what: 'npm registry (npm, npx, yarn and pnpm with the default registry)', hosts: ['registry.npmjs.org'] },
  pypi: { key: 'pypi', name: 'pypi', what: 'Python Package Index (pip, uv): index and package files', hosts: ['pypi.org', 'files.pythonhosted.org'] },
  go: { key: 'go_modules', name: 'go-modules', what: 'Go module proxy and checksum database (GOPROXY/GOSUMDB defaults)', hosts: ['proxy.golang.org', 'sum.golang.org'] },
  crates: { key: 'crates_io', name: 'crates-io', what: 'crates.io (cargo): API, sparse index and downloads', hosts: ['crates.io', 'index.crates.io', 'static.crates.io'] },
  maven: { key: 'maven_central', name: 'maven-central', what: 'Maven Central (mvn, gradle)', hosts: ['repo.maven.apache.org', 'repo1.maven.org'] },
} as const
export type RegistryPreset = keyof typeof REGISTRY_PRESETS
export const REGISTRY_PRESET_NAMES = Object.keys(REGISTRY_PRESETS) as RegistryPreset[]

/**
 * Executables that use each kind of endpoint in common images (OpenShell's community base image,
 * Debian/Fedora packages, and the podshell sandbox image). OpenShell lets only these reach the
 * endpoints; podshell accepts the list but cannot tell processes apart (its gateway sits outside the
 * sandbox), so there any process in the sandbox may use them. Adjust to your image.
 */
const BIN = {
  agents: ['/usr/local/bin/claude', '/usr/bin/claude', '/**/.local/share/claude/versions/*', '/usr/bin/node', '/usr/local/bin/node', '/usr/local/bin/opencode', '/usr/bin/opencode', '/usr/local/bin/codex', '/usr/bin/codex'],
  python: ['/usr/bin/python3*', '/usr/local/bin/python3*', '/**/uv/python/**/bin/python3*'],
  ghCli: ['/usr/bin/gh', '/usr/local/bin/gh'],
  glabCli: ['/usr/bin/glab', '/usr/local/bin/glab'],
  curl: ['/usr/bin/curl'],
  git: ['/usr/bin/git', '/usr/lib/git-core/*', '/usr/libexec/git-core/*'],
  node: ['/usr/bin/node', '/usr/local/bin/node', '/**/bin/node'],
  uv: ['/usr/local/bin/uv', '/usr/bin/uv', '/**/.local/bin/uv'],
  go: ['/usr/local/go/bin/go', '/usr/lib/go-*/bin/go', '/usr/lib/golang/bin/go', '/usr/bin/go'],
  cargo: ['/usr/bin/cargo', '/**/.cargo/bin/cargo', '/**/.rustup/toolchains/*/bin/cargo'],
  java: ['/usr/lib/jvm/**/bin/java', '/opt/**/bin/java', '/**/.sdkman/candidates/java/**/bin/java'],
} as const

// ───────────────────────────── input validation ─────────────────────────────

function invalid(what: string, value: string, why: string, hint: string): PodshellError {
  const shown = JSON.stringify(value.length > 80 ? value.slice(0, 80) + '…' : value)
  return new PodshellError(`invalid ${what} ${shown}: ${why}`, { hint, code: 'INVALID_INPUT', exitCode: 2 })
}

const LABEL_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/**
 * A host option value: a DNS name or an OpenShell wildcard pattern (`*.x.com`, `**.x.com`,
 * `*-foo.x.com`, a whole middle `*` label), optionally `:port` (default 443). IP literals, TLD
 * wildcards, a wildcard in the last label, leading dashes and anything that is not a DNS label are
 * refused: a template names the user's services, never "anything".
 */
export function parseHostOption(raw: string, what: string): HostPort {
  const hint = 'give a DNS name like jira.example.com or a pattern like *.example.com, optionally with :PORT'
  if (raw.length > 260) throw invalid(what, raw, 'longer than 253 characters', hint)
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(raw)
  if (!m) throw invalid(what, raw, 'expected HOST or HOST:PORT', hint)
  const host = m[1]!.toLowerCase()
  const port = m[2] === undefined ? 443 : Number(m[2])
  if (!(port >= 1 && port <= 65535)) throw invalid(what, raw, 'port must be 1-65535', hint)
  if (isIP(host)) throw invalid(what, raw, 'IP literals are not accepted; name the host', hint)
  if (host.length > 253) throw invalid(what, raw, 'longer than 253 characters', hint)
  const labels = host.split('.')
  if (labels.length < 2) throw invalid(what, raw, 'must be a fully qualified name with at least two labels', hint)
  labels.forEach((l, i) => {
    const wildcardOk = i === 0 ? /^(\*\*|\*|\*?[a-z0-9-]*\*?[a-z0-9-]*)$/.test(l) && l.includes('*') : l === '*' && i < labels.length - 1
    if ((!LABEL_RE.test(l) && !wildcardOk) || l.startsWith('-') || l.endsWith('-')) {
      throw invalid(what, raw, `label ${JSON.stringify(l)} is not a DNS label (letters, digits and "-", not starting or ending with "-")`, hint)
    }
  })
  if (/^\d+$/.test(labels.at(-1)!)) throw invalid(what, raw, 'the last label must not be numeric', hint)
  const shape = hostWildcardProblem(host) ?? hostPatternProblem(host)
  if (shape) throw invalid(what, raw, shape, hint)
  return { host, port }
}

/** `--jira-url`: http(s) URL; only its host and port are used. */
export function parseJiraUrl(raw: string): HostPort {
  const hint = 'give the JIRA base URL, e.g. https://jira.example.com or https://example.atlassian.net'
  if (raw.length > 2048) throw invalid('--jira-url', raw, 'longer than 2048 characters', hint)
  if (!/^https?:\/\//i.test(raw)) throw invalid('--jira-url', raw, 'must start with https:// or http://', hint)
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    throw invalid('--jira-url', raw, 'not a valid URL', hint)
  }
  if (u.username || u.password) throw invalid('--jira-url', raw, 'must not contain credentials', hint)
  const port = u.port ? Number(u.port) : u.protocol === 'http:' ? 80 : 443
  const hp = parseHostOption(u.hostname, '--jira-url host')
  if (hp.host.includes('*')) throw invalid('--jira-url', raw, 'must name one host, not a pattern', hint)
  return { host: hp.host, port }
}

/** Normalised, validated template inputs. */
export interface ResolvedTemplate {
  modelApis: HostPort[]
  jira: HostPort
  github: HostPort[]
  gitlab: HostPort[]
  presets: RegistryPreset[]
  customRegistries: HostPort[]
}

export function resolveTemplateParams(p: TemplateParams): ResolvedTemplate {
  const list = (values: readonly string[] | undefined, defaults: readonly string[], what: string) =>
    dedupe((values && values.length ? values : defaults).map(v => parseHostOption(v, what)))
  const presets: RegistryPreset[] = []
  const custom: HostPort[] = []
  if (p.registries && p.registries.length) {
    for (const r of p.registries) {
      if ((REGISTRY_PRESET_NAMES as string[]).includes(r)) {
        if (!presets.includes(r as RegistryPreset)) presets.push(r as RegistryPreset)
      } else custom.push(parseHostOption(r, '--registry'))
    }
  } else presets.push(...REGISTRY_PRESET_NAMES)
  return {
    modelApis: list(p.modelApis, DEFAULT_MODEL_APIS, '--model-api'),
    jira: p.jiraUrl !== undefined ? parseJiraUrl(p.jiraUrl) : { host: DEFAULT_JIRA_HOST, port: 443 },
    github: list(p.githubHosts, DEFAULT_GITHUB_HOSTS, '--github-host'),
    gitlab: list(p.gitlabHosts, DEFAULT_GITLAB_HOSTS, '--gitlab-host'),
    presets,
    customRegistries: dedupe(custom),
  }
}

function dedupe(hs: HostPort[]): HostPort[] {
  const seen = new Set<string>()
  return hs.filter(h => {
    const k = `${h.host}:${h.port}`
    if (seen.has(k)) return false
    seen.add(k)
    return true
  })
}

/** github.com's REST/GraphQL API lives on api.github.com; GitHub Enterprise Server serves it on the host itself. */
function githubApiHosts(gh: HostPort[]): HostPort[] {
  return dedupe(gh.map(h => (h.host === 'github.com' ? { host: 'api.github.com', port: h.port } : h)))
}

// ───────────────────────────── rendering ─────────────────────────────

interface Entry {
  key: string
  name: string
  comment: string[]
  endpoints: HostPort[]
  binaries: readonly string[]
}

/** The network entries of a session type, in document order. */
export function templateEntries(type: SessionType, r: ResolvedTemplate): Entry[] {
  const out: Entry[] = [
    {
      key: 'model_api',
      name: 'model-api',
      comment: ['The model API the agent talks to. Add the hosts of other providers (Vertex AI, Bedrock,', 'an internal gateway) with --model-api HOST.'],
      endpoints: r.modelApis,
      binaries: BIN.agents,
    },
  ]
  if (type === 'investigation') return out
  out.push(
    {
      key: 'jira',
      name: 'jira',
      comment: [
        'JIRA REST API, used by `daf jira view/create/update/add-comment` inside the session.',
        r.jira.host === DEFAULT_JIRA_HOST ? 'Default: every JIRA Cloud site; narrow it to yours with --jira-url https://SITE.atlassian.net.' : `From --jira-url (${r.jira.host}).`,
      ],
      endpoints: [r.jira],
      binaries: [...BIN.python, ...BIN.curl],
    },
    {
      key: 'github_api',
      name: 'github-api',
      comment: ['GitHub REST/GraphQL API for issues and pull requests (gh, daf git). github.com serves it', 'on api.github.com; GitHub Enterprise Server on its own host (/api/v3).'],
      endpoints: githubApiHosts(r.github),
      binaries: [...BIN.ghCli, ...BIN.python, ...BIN.curl],
    },
    {
      key: 'gitlab_api',
      name: 'gitlab-api',
      comment: ['GitLab REST API for issues and merge requests (glab, daf git), served at /api/v4 on the host.'],
      endpoints: r.gitlab,
      binaries: [...BIN.glabCli, ...BIN.python, ...BIN.curl],
    },
  )
  if (type === 'ticket_creation') return out
  out.push({
    key: 'git_hosts',
    name: 'git-hosts',
    comment: ['git over HTTPS (fetch, pull, submodules). SSH (port 22) is not allowed: no keys are mounted.', 'Pushing and opening pull requests happen on the host (`daf complete`).'],
    endpoints: dedupe([...r.github, ...r.gitlab]),
    binaries: BIN.git,
  })
  const presetBins: Record<RegistryPreset, readonly string[]> = {
    npm: BIN.node,
    pypi: [...BIN.python, ...BIN.uv],
    go: BIN.go,
    crates: BIN.cargo,
    maven: BIN.java,
  }
  for (const p of r.presets) {
    const preset = REGISTRY_PRESETS[p]
    out.push({
      key: preset.key,
      name: preset.name,
      comment: [`Package registry: ${preset.what}.`],
      endpoints: preset.hosts.map(host => ({ host, port: 443 })),
      binaries: presetBins[p],
    })
  }
  if (r.customRegistries.length) {
    out.push({
      key: 'custom_registries',
      name: 'custom-registries',
      comment: ['Package registries named with --registry HOST.'],
      endpoints: r.customRegistries,
      binaries: [...BIN.node, ...BIN.python, ...BIN.uv, ...BIN.go, ...BIN.cargo, ...BIN.java],
    })
  }
  return out
}

/** Every host:port a rendered template allows (for tests and `--dry-run` style listings). */
export function templateHosts(type: SessionType, params: TemplateParams = {}): string[] {
  return templateEntries(type, resolveTemplateParams(params)).flatMap(e => e.endpoints.map(h => `${h.host}:${h.port}`))
}

const PLAIN = /^[A-Za-z0-9._/-]+$/
const q = (s: string) => (PLAIN.test(s) && !/^[-.]/.test(s) ? s : JSON.stringify(s))

const TITLES: Record<SessionType, string> = {
  investigation: 'investigation sessions (`daf investigate`): read the code, talk to the model, change nothing',
  ticket_creation: 'ticket-creation sessions (`daf jira new`, `daf git new`): read the code, write tickets',
  development: 'development sessions (`daf new`, `daf open`): edit the code, build and test it',
}

/**
 * A complete OpenShell v1 policy for a DevAIFlow session type, with comments explaining each
 * block. Inputs are validated first (PodshellError, exit code 2, on a bad host or URL).
 */
export function renderTemplate(type: SessionType, params: TemplateParams = {}): string {
  const r = resolveTemplateParams(params)
  const rw = type === 'development'
  const L: string[] = []
  L.push(`# OpenShell v1 sandbox policy for DevAIFlow ${TITLES[type]}.`)
  L.push(`# Rendered by \`podshell policy template ${type}\`; valid for both podshell and OpenShell.`)
  L.push('# Delete any network_policies entry you do not need: whatever is not listed is denied.')
  L.push('version: 1')
  L.push('')
  L.push('# Filesystem (static: fixed for the life of the sandbox).')
  if (rw) {
    L.push('# include_workdir: true makes the working directory (the project) read-write. /sandbox is')
    L.push("# OpenShell's workdir; podshell mounts the project at its own host path instead.")
  } else {
    L.push('# include_workdir: false keeps the working directory (the project) READ-ONLY: podshell mounts it')
    L.push("# read-only; OpenShell reads it through /sandbox in read_only (its workdir). The agent can")
    L.push('# analyse the code but not change it, whatever it is told and even with --auto-approve.')
  }
  L.push('filesystem_policy:')
  L.push(`  include_workdir: ${rw}`)
  L.push('  read_only:')
  for (const p of ['/usr', '/lib', '/proc', '/dev/urandom', '/app', '/etc', '/var/log', ...(rw ? [] : ['/sandbox'])]) L.push(`    - ${p}`)
  L.push('  read_write:')
  for (const p of [...(rw ? ['/sandbox'] : []), '/tmp', '/dev/null']) L.push(`    - ${p}`)
  L.push('')
  L.push('# Landlock (OpenShell only; podshell enforces the filesystem with mounts): use it where the')
  L.push('# kernel has it, run without it where it does not.')
  L.push('landlock:')
  L.push('  compatibility: best_effort')
  L.push('')
  L.push('# Network (dynamic: `podshell policy set` replaces it on a running sandbox). Each entry lists')
  L.push('# host:port endpoints (TLS passes through uninspected) and, for OpenShell, the executables')
  L.push('# allowed to use them. Private and loopback addresses stay blocked whatever the host resolves to.')
  L.push('network_policies:')
  const entries = templateEntries(type, r)
  entries.forEach((e, i) => {
    if (i > 0) L.push('')
    for (const c of e.comment) L.push(`  # ${c}`)
    L.push(`  ${e.key}:`)
    L.push(`    name: ${e.name}`)
    L.push('    endpoints:')
    for (const ep of e.endpoints) L.push(`      - { host: ${q(ep.host)}, port: ${ep.port} }`)
    L.push('    binaries:')
    for (const b of e.binaries) L.push(`      - { path: ${q(b)} }`)
  })
  return L.join('\n') + '\n'
}
