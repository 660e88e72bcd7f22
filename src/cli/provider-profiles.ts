import { Command, Option } from 'commander'
import { PodshellError } from '../errors.js'
import type { CliContext } from './context.js'
import { serialize } from './output.js'
import { profilesTable, sortProfileRows } from './openshell-format.js'
import { PROVIDER_TYPE_NAMES } from '../credentials/types.js'
import { listProviders } from '../credentials/store.js'
import {
  builtinProfiles,
  importedProfiles,
  findProfile,
  loadProfileFiles,
  lintProfiles,
  storeProfiles,
  deleteProfile,
  bindingLines,
  PROFILE_ORIGIN,
  type ProfileDiagnostic,
  type ProviderProfile,
} from '../credentials/profiles.js'

/**
 * `podshell provider list-profiles` and `provider profile export|import|lint|delete` (OpenShell's
 * verbs, flags and output lines: run.rs provider_list_profiles / provider_profile_*). Parsing and
 * validation are src/credentials/profiles.ts; this file prints.
 */
export function registerProfiles(pv: Command, ctx: CliContext): void {
  pv.command('list-profiles')
    .description('list provider profiles (built-in types and imported profiles)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'yaml', 'json']).default('table'))
    .action((flags: { output: string }) => {
      const imported = importedProfiles(ctx.dataDir)
      printDiagnostics(ctx, imported.diagnostics)
      const all = [...builtinProfiles().map(p => ({ p, origin: PROFILE_ORIGIN.builtin })), ...imported.profiles.map(p => ({ p, origin: PROFILE_ORIGIN.imported }))]
      if (flags.output !== 'table') return ctx.out.stdout(serialize(sortProfileRows(all.map(a => a.p)), flags.output as 'yaml' | 'json'))
      ctx.out.stdout(
        profilesTable(
          all.map(({ p, origin }) => ({
            id: p.id,
            display_name: p.display_name ?? p.id,
            category: p.category ?? 'other',
            scope: origin.scope,
            source: origin.source,
            endpoints: p.endpoints.length,
            inference_capable: p.inference_capable ?? false,
          })),
        ),
      )
    })

  const prof = pv.command('profile').description('manage provider profiles (OpenShell provider profile YAML)')

  prof
    .command('export')
    .description('print a provider profile')
    .argument('<id>', 'profile id')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['yaml', 'json']).default('yaml'))
    .action((id: string, flags: { output: string }) => {
      const found = findProfile(ctx.dataDir, id)
      if (!found) throw new PodshellError(`provider profile '${id.slice(0, 64)}' not found`, { hint: '`podshell provider list-profiles` lists them', code: 'NOT_FOUND', exitCode: 1 })
      ctx.out.stdout(serialize(found.profile, flags.output as 'yaml' | 'json'))
    })

  prof
    .command('import')
    .description('import provider profiles from a file or a directory; prints where each credential may be sent')
    .option('-f, --file <file>', 'profile file to import')
    .option('--from <dir>', 'directory of profile files to import')
    .action((flags: { file?: string; from?: string }) => {
      const { items, diagnostics } = loadProfileFiles(flags.file, flags.from)
      const r = lintProfiles(ctx.dataDir, items, true)
      const all = [...diagnostics, ...r.diagnostics]
      if (all.some(d => d.severity === 'error')) {
        printDiagnostics(ctx, all)
        throw new PodshellError('provider profile import failed', { hint: 'fix the errors above (`podshell provider profile lint` checks a file without importing it)', code: 'INVALID_INPUT', exitCode: 1 })
      }
      printDiagnostics(ctx, all)
      storeProfiles(ctx.dataDir, r.profiles)
      for (const p of r.profiles) printBindings(ctx, p)
      ctx.out.stdout(`Imported ${r.profiles.length} provider profile${r.profiles.length === 1 ? '' : 's'}.\n`)
    })

  prof
    .command('lint')
    .description('validate provider profile files without importing them')
    .option('-f, --file <file>', 'profile file to lint')
    .option('--from <dir>', 'directory of profile files to lint')
    .action((flags: { file?: string; from?: string }) => {
      const { items, diagnostics } = loadProfileFiles(flags.file, flags.from)
      const r = lintProfiles(ctx.dataDir, items, true)
      const all = [...diagnostics, ...r.diagnostics]
      printDiagnostics(ctx, all)
      if (all.some(d => d.severity === 'error')) throw new PodshellError('provider profile lint failed', { hint: 'fix the errors above', code: 'INVALID_INPUT', exitCode: 1 })
      ctx.out.stdout('Provider profile lint passed.\n')
    })

  prof
    .command('delete')
    .description('delete an imported provider profile (refused while a provider uses it)')
    .argument('<id>', 'profile id')
    .action((id: string) => {
      if ((PROVIDER_TYPE_NAMES as string[]).includes(id)) throw new PodshellError(`${id} is a built-in provider profile`, { hint: 'only imported profiles can be deleted', code: 'INVALID_INPUT', exitCode: 2 })
      const users = listProviders(ctx.dataDir).providers.filter(p => p.type === id)
      if (users.length > 0) {
        throw new PodshellError(`provider profile ${id} is used by provider${users.length > 1 ? 's' : ''} ${users.map(u => u.name).join(', ')}`, { hint: 'delete those providers first', code: 'PROVIDER_IN_USE' })
      }
      ctx.out.stdout(deleteProfile(ctx.dataDir, id) ? `Deleted provider profile '${id}'.\n` : `Provider profile '${id}' was not deleted.\n`)
    })
}

/**
 * What `provider create --type T` means: a built-in type, or an imported profile id (then the
 * variables --from-existing looks for are the profile's env_vars).
 */
export function resolveProviderType(dataDir: string, type: string): { type: string; envVars?: string[] } {
  if ((PROVIDER_TYPE_NAMES as string[]).includes(type)) return { type }
  const found = findProfile(dataDir, type)
  if (!found) {
    throw new PodshellError(`unknown provider type ${JSON.stringify(type.slice(0, 40))}`, {
      hint: `use one of ${PROVIDER_TYPE_NAMES.join(', ')}, or import a profile (\`podshell provider profile import -f FILE\`)`,
      code: 'INVALID_INPUT',
      exitCode: 2,
    })
  }
  const wanted = found.profile.discovery?.credentials
  const creds = found.profile.credentials.filter(c => !wanted?.length || wanted.includes(c.name))
  return { type, envVars: creds.flatMap(c => c.env_vars) }
}

/** OpenShell's diagnostics block (stderr): `  <severity> <source> profile=<id> field=<f> <message>`. */
function printDiagnostics(ctx: CliContext, diagnostics: readonly ProfileDiagnostic[]): void {
  if (diagnostics.length === 0) return
  ctx.out.note('Provider profile diagnostics:')
  for (const d of diagnostics) ctx.out.note(`  ${d.severity} ${d.source || '<input>'} profile=${d.profile_id || '-'} field=${d.field} ${d.message}`)
}

function printBindings(ctx: CliContext, p: ProviderProfile): void {
  ctx.out.stdout(`Profile '${p.id}': providers of this type send their credentials only to:\n`)
  for (const l of bindingLines(p)) ctx.out.stdout(`  ${l}\n`)
}
