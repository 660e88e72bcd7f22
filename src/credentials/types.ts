/**
 * Provider types: which environment variables each type injects, and which hosts it is known to
 * serve (the gateway names the provider in every decision about one of these hosts, so the audit
 * log shows which credential a request could have carried). Variables as OpenShell's
 * docs/sandboxes/manage-providers.mdx, plus `jira` for DevAIFlow.
 */
export interface ProviderType {
  /** Variables `--from-existing` picks up from the caller's environment, in order. */
  readonly credentials: readonly string[]
  /** Config keys the type understands (not secret; stored in podshell's state). */
  readonly config: readonly string[]
  /** Host patterns (OpenShell host syntax) the type's credentials are meant for. */
  readonly hosts: readonly string[]
}

export const PROVIDER_TYPES = {
  claude: { credentials: ['ANTHROPIC_API_KEY', 'CLAUDE_API_KEY'], config: ['ANTHROPIC_BASE_URL'], hosts: ['api.anthropic.com', 'statsig.anthropic.com', 'platform.claude.com'] },
  anthropic: { credentials: ['ANTHROPIC_API_KEY'], config: ['ANTHROPIC_BASE_URL'], hosts: ['api.anthropic.com'] },
  codex: { credentials: ['OPENAI_API_KEY'], config: ['OPENAI_BASE_URL'], hosts: ['api.openai.com', 'auth.openai.com', 'chatgpt.com'] },
  openai: { credentials: ['OPENAI_API_KEY'], config: ['OPENAI_BASE_URL'], hosts: ['api.openai.com'] },
  opencode: { credentials: ['OPENCODE_API_KEY', 'OPENROUTER_API_KEY', 'OPENAI_API_KEY'], config: [], hosts: ['opencode.ai', 'openrouter.ai', 'api.openai.com'] },
  copilot: { credentials: ['COPILOT_GITHUB_TOKEN', 'GH_TOKEN', 'GITHUB_TOKEN'], config: [], hosts: ['api.githubcopilot.com', '*.githubcopilot.com', 'api.github.com'] },
  github: { credentials: ['GITHUB_TOKEN', 'GH_TOKEN'], config: ['GH_HOST'], hosts: ['github.com', 'api.github.com', '*.githubusercontent.com'] },
  gitlab: { credentials: ['GITLAB_TOKEN'], config: ['GITLAB_HOST'], hosts: ['gitlab.com'] },
  nvidia: { credentials: ['NVIDIA_API_KEY'], config: [], hosts: ['integrate.api.nvidia.com'] },
  jira: { credentials: ['JIRA_API_TOKEN'], config: ['JIRA_URL', 'JIRA_AUTH_TYPE'], hosts: [] },
  generic: { credentials: [], config: [], hosts: [] },
} as const satisfies Record<string, ProviderType>

export type ProviderTypeName = keyof typeof PROVIDER_TYPES
export const PROVIDER_TYPE_NAMES = Object.keys(PROVIDER_TYPES) as ProviderTypeName[]

/**
 * Hosts a configured provider serves: the type's hosts plus hosts named in its config
 * (JIRA_URL or `url` as OpenShell's Jira profile names it, GH_HOST, GITLAB_HOST, *_BASE_URL), so a
 * self-hosted JIRA is attributed (and bound) too.
 */
export function providerHosts(type: string, config: Readonly<Record<string, string>>): string[] {
  const t = (PROVIDER_TYPES as Record<string, ProviderType>)[type]
  const hosts = new Set<string>(t?.hosts ?? [])
  for (const [k, v] of Object.entries(config)) {
    if (/(^|_)URL$/i.test(k)) {
      try {
        hosts.add(new URL(v).hostname.toLowerCase())
      } catch {
        // not a URL: nothing to attribute
      }
    } else if (/_HOST$/.test(k) && /^[A-Za-z0-9.-]+$/.test(v)) hosts.add(v.toLowerCase())
  }
  return [...hosts]
}
