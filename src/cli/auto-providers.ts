import { basename } from 'node:path'
import { PodshellError } from '../errors.js'
import { listProviders, createProvider } from '../credentials/store.js'
import { fromExisting } from '../credentials/input.js'
import type { ProviderTypeName } from '../credentials/types.js'
import type { CliContext } from './context.js'

/**
 * OpenShell's provider inference for `sandbox create -- CMD` (`ensure_required_providers`): the
 * command's basename names a provider type (`claude`, `codex`, `gh` …). A provider of that type
 * that exists is attached; a missing one is created from this shell's credentials with
 * `--auto-providers`, skipped with `--no-auto-providers`. Without either flag OpenShell prompts
 * (and fails when not interactive); podshell never prompts: it skips and says which flag creates it.
 *
 * Not applied to a DevAIFlow `--spec` launch, which is fully resolved: no credential is injected
 * that the spec did not name.
 */
const COMMAND_TYPES: Readonly<Record<string, ProviderTypeName>> = {
  claude: 'claude',
  'claude-code': 'claude',
  codex: 'codex',
  opencode: 'opencode',
  copilot: 'copilot',
  gh: 'github',
  github: 'github',
  glab: 'gitlab',
  gitlab: 'gitlab',
}

export function inferProviderType(command: readonly string[]): ProviderTypeName | undefined {
  const first = command[0]
  if (!first) return undefined
  return COMMAND_TYPES[basename(first).toLowerCase()]
}

export async function resolveAutoProviders(
  ctx: CliContext,
  explicit: readonly string[],
  command: readonly string[],
  auto: boolean | undefined,
  o: { spec?: boolean } = {},
): Promise<string[]> {
  const out = [...explicit]
  const type = o.spec ? undefined : inferProviderType(command)
  if (!type) return out
  const { providers } = listProviders(ctx.dataDir)
  if (providers.some(p => out.includes(p.name) && p.type === type)) return out
  const existing = providers.find(p => p.type === type)
  if (existing) {
    ctx.out.note(`→ Attaching provider '${existing.name}' (type ${type}, needed by \`${command[0]}\`)`)
    return [...out, existing.name]
  }
  ctx.out.note(`Missing provider: ${type}`)
  if (auto !== true) {
    ctx.out.note(
      auto === false
        ? `! Skipping provider '${type}' (--no-auto-providers)`
        : `! Skipping provider '${type}': pass --auto-providers to create it from this shell's credentials, or \`podshell provider create --type ${type} --from-existing --name ${type}\``,
    )
    return out
  }
  let found: ReturnType<typeof fromExisting>
  try {
    found = fromExisting(type, ctx.env)
  } catch (e) {
    if (e instanceof PodshellError) {
      throw new PodshellError(`--auto-providers: cannot create provider ${type}: ${e.message}`, { hint: e.hint, code: 'PROVIDER_CREDENTIALS_MISSING', exitCode: 2 })
    }
    throw e
  }
  const names = new Set(providers.map(p => p.name))
  let name: string = type
  for (let i = 2; names.has(name); i++) name = `${type}-${i}`
  const rec = await createProvider(await ctx.podman(), ctx.dataDir, { name, type, credentials: found.credentials, config: found.config })
  ctx.out.note(`\u2713 Created provider ${rec.name}`)
  return [...out, rec.name]
}
