import { Command, Option } from 'commander'
import { renderTemplate } from '../policy/templates.js'
import { SESSION_TYPES, type SessionType } from '../sandbox/types.js'
import { CliContext, collect } from './context.js'

/**
 * `podshell policy template <type>`: prints a complete OpenShell v1 policy for a DevAIFlow session
 * type, for the user's own hosts. The output is plain YAML (with comments) that both podshell and
 * OpenShell accept; redirect it to a file and trim what you do not use.
 */
export function registerPolicyTemplate(policy: Command, ctx: CliContext): Command {
  return policy
    .command('template')
    .description('print a session-type policy (investigation, ticket_creation, development) for your hosts')
    .addArgument(new Command().createArgument('<type>', 'session type').choices(SESSION_TYPES))
    .option('--jira-url <url>', 'JIRA base URL, e.g. https://jira.example.com (default: any *.atlassian.net site)')
    .option('--github-host <host>', 'GitHub host (github.com or a GitHub Enterprise host); repeatable', collect, [])
    .option('--gitlab-host <host>', 'GitLab host; repeatable', collect, [])
    .option('--model-api <host>', 'model API host[:port] (default api.anthropic.com); repeatable', collect, [])
    .addOption(
      new Option('--registry <name|host>', 'package registry: npm, pypi, go, crates, maven, or a host[:port]; repeatable (default: the five presets)')
        .argParser(collect)
        .default([]),
    )
    .action((type: SessionType, flags: { jiraUrl?: string; githubHost: string[]; gitlabHost: string[]; modelApi: string[]; registry: string[] }) => {
      ctx.out.stdout(
        renderTemplate(type, {
          jiraUrl: flags.jiraUrl,
          githubHosts: flags.githubHost,
          gitlabHosts: flags.gitlabHost,
          modelApis: flags.modelApi,
          registries: flags.registry,
        }),
      )
    })
}
