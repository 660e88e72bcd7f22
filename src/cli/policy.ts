import { Option, type Command } from 'commander'
import { PodshellError } from '../errors.js'
import { PolicyError } from '../policy/schema.js'
import { loadPolicyFile } from '../policy/parse.js'
import { policyJsonSchema, unenforcedWarnings } from '../policy/document.js'
import type { CliContext } from './context.js'
import { parseOutputFormat } from './output.js'

/**
 * `policy validate FILE [-o table|json]`: checks a policy offline (no podman, no gateway).
 * Table: "valid" and the warnings, or one problem per line with its key path. JSON:
 * { valid, errors, warnings }. Exit 0 when valid, 1 when not.
 */
export function registerPolicyValidate(policy: Command, ctx: CliContext): void {
  policy
    .command('validate')
    .description('check an OpenShell v1 policy file offline; lists every problem with its key path')
    .argument('<file>', 'policy YAML file')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .action((file: string, flags: { output: string }) => {
      const format = parseOutputFormat(flags.output, ['table', 'json'])
      let errors: string[] = []
      let warnings: string[] = []
      try {
        const r = loadPolicyFile(file)
        // OpenShell's own warnings first, then what podshell accepts but does not enforce.
        warnings = [...r.warnings, ...unenforcedWarnings(r.policy)]
      } catch (e) {
        if (!(e instanceof PolicyError)) throw e
        errors = e.issues
      }
      const valid = errors.length === 0
      if (format === 'json') {
        ctx.out.stdout(JSON.stringify({ valid, errors, warnings }, null, 2) + '\n')
      } else if (valid) {
        ctx.out.stdout(['valid', ...warnings.map(w => `warning: ${w}`)].join('\n') + '\n')
      } else {
        ctx.out.stdout(errors.join('\n') + '\n')
      }
      if (!valid) {
        throw new PodshellError(`policy ${file} is invalid (${errors.length} problem${errors.length === 1 ? '' : 's'})`, {
          hint: 'fix the lines listed above',
          code: 'POLICY_INVALID',
          exitCode: 1,
        })
      }
    })
}

/** `schema policy`: prints the JSON Schema of the policy document (for editors). */
export function registerSchemaPolicy(schema: Command, ctx: CliContext): void {
  schema
    .command('policy')
    .description('print the JSON Schema of the OpenShell v1 policy document')
    .action(() => {
      ctx.out.stdout(JSON.stringify(policyJsonSchema(), null, 2) + '\n')
    })
}
