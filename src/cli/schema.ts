import { Command, Option } from 'commander'
import { z } from 'zod'
import { EnterpriseConfigSchema, ENTERPRISE_DEFAULT_PATH, UserConfigSchema } from '../config/index.js'
import { specJsonSchema } from '../sandbox/spec.js'
import { CliContext } from './context.js'
import { registerSchemaPolicy } from './policy.js'

/**
 * `podshell schema …`: JSON Schemas (draft 2020-12) of podshell's input documents, for editors and
 * for tools such as DevAIFlow that generate them.
 *   schema spec     the launch spec (`sandbox create --spec`)
 *   schema config   ~/.config/podshell/config.yaml and /etc/podshell/enterprise.yaml
 *   schema policy   the OpenShell v1 policy (registered by src/cli/policy.ts)
 */
export function register(program: Command, ctx: CliContext): Command {
  const schema = program.command('schema').description('JSON Schemas for editors and tools')
  registerSchemaSubcommands(schema, ctx)
  registerSchemaPolicy(schema, ctx)
  return schema
}

/** `schema spec` and `schema config`, for a `schema` group created elsewhere. */
export function registerSchemaSubcommands(schema: Command, ctx: CliContext): void {
  schema
    .command('spec')
    .description('print the JSON Schema of the DevAIFlow launch spec (sandbox create --spec)')
    .action(() => ctx.out.stdout(JSON.stringify(specJsonSchema(), null, 2) + '\n'))

  schema
    .command('config')
    .description(`print the JSON Schemas of config.yaml and ${ENTERPRISE_DEFAULT_PATH}`)
    .addOption(new Option('--file <which>', 'only one of them').choices(['user', 'enterprise']))
    .action((flags: { file?: 'user' | 'enterprise' }) => {
      const user = configSchema(UserConfigSchema, 'user', 'podshell user configuration (~/.config/podshell/config.yaml)')
      const enterprise = configSchema(EnterpriseConfigSchema, 'enterprise', `podshell enterprise configuration (${ENTERPRISE_DEFAULT_PATH})`)
      const out = flags.file === 'user' ? user : flags.file === 'enterprise' ? enterprise : { user, enterprise }
      ctx.out.stdout(JSON.stringify(out, null, 2) + '\n')
    })
}

function configSchema(s: z.ZodType, id: string, title: string): Record<string, unknown> {
  return {
    ...(z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>),
    $id: `https://podshell.dev/schemas/${id}-config-v1.json`,
    title,
  }
}
