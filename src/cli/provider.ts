import { Command, Option } from 'commander'
import { PodshellError } from '../errors.js'
import { check, objectName } from '../util/validate.js'
import { CliContext, collect } from './context.js'
import { parseOutputFormat, serialize, table } from './output.js'
import { createdProviderLine, providerGetBlock, providerJson } from './openshell-format.js'
import { Redactor } from '../credentials/redact.js'
import { parseCredentialFlags, parseConfigFlags, fromExisting, checkProviderType } from '../credentials/input.js'
import {
  createProvider,
  updateProvider,
  deleteProvider,
  requireProvider,
  readProvider,
  listProviders,
  gcProviderSecrets,
  type ProviderRecord,
} from '../credentials/store.js'
import { providerUsers } from '../credentials/inject.js'
import { listProviderSecrets } from '../credentials/secrets.js'
import { PROVIDER_TYPE_NAMES } from '../credentials/types.js'
import { registerProfiles, resolveProviderType } from './provider-profiles.js'
import { findProfile, profileEndpoints } from '../credentials/profiles.js'

/**
 * `podshell provider …`: OpenShell's provider verbs. Values enter through the environment (a bare
 * `--credential KEY`, `--from-existing`) or a flag, go to Podman on stdin, and never come back:
 * every output here is built from metadata (names, type, config), and every error leaving these
 * commands passes through a Redactor holding the values this process read.
 *
 * Long by design: one flat declaration of the `provider` commander tree (OpenShell's verbs and
 * flags); each action is a few lines calling src/credentials.
 */
export function register(program: Command, ctx: CliContext): Command {
  const pv = program.command('provider').description('manage credential providers (values live only in Podman secrets)')

  pv.command('create')
    .description('create a provider from --credential values or the variables its type knows (--from-existing)')
    .requiredOption('--name <name>', 'provider name')
    .requiredOption('--type <type>', `provider type: ${PROVIDER_TYPE_NAMES.join(', ')}, or an imported profile id (provider list-profiles)`)
    .option('--credential <KEY[=VALUE]>', 'credential variable; a bare KEY reads the value from the environment; repeatable', collect, [])
    .option('--from-existing', 'take the variables the type knows from the environment')
    .option('--config <K=V>', 'non-secret setting, injected as a plain variable; repeatable', collect, [])
    .action(async (flags: { name: string; type: string; credential: string[]; fromExisting?: boolean; config: string[] }) => {
      const redactor = new Redactor()
      await redacted(redactor, async () => {
        const name = check(objectName, flags.name, 'provider name', 'e.g. --name my-github')
        const { type, envVars } = resolveProviderType(ctx.dataDir, flags.type)
        if (Boolean(flags.fromExisting) === flags.credential.length > 0) {
          throw new PodshellError('give exactly one of --credential and --from-existing', {
            hint: '--credential KEY[=VALUE] names the variables; --from-existing takes those the type knows from the environment',
            code: 'INVALID_INPUT',
            exitCode: 2,
          })
        }
        const config = parseConfigFlags(flags.config)
        let credentials: Map<string, string>
        if (flags.fromExisting) {
          const found = envVars ? fromExisting(envVars, ctx.env, type) : fromExisting(checkProviderType(type), ctx.env)
          credentials = found.credentials
          for (const [k, v] of found.config) if (!config.has(k)) config.set(k, v)
        } else {
          const parsed = parseCredentialFlags(flags.credential, ctx.env)
          credentials = parsed.values
          warnArgv(ctx, parsed.inArgv)
        }
        for (const v of credentials.values()) redactor.add(v)
        warnShort(ctx, redactor)
        const podman = await ctx.podman()
        await gcProviderSecrets(podman, ctx.dataDir)
        let rec: ProviderRecord
        try {
          rec = await createProvider(podman, ctx.dataDir, { name, type, credentials, config })
        } catch (e) {
          // OpenShell's clients (NemoClaw) recognise a duplicate by the gRPC status name in the error.
          if (e instanceof PodshellError && e.code === 'PROVIDER_EXISTS') {
            throw new PodshellError(`status: AlreadyExists, message: provider ${name} already exists`, { hint: e.hint, code: e.code, exitCode: e.exitCode })
          }
          throw e
        }
        ctx.out.stdout(createdProviderLine(rec.name))
        ctx.out.note(`(${rec.type}: ${rec.credentials.join(', ')})`)
      })
    })

  pv.command('get')
    .description('show one provider (credential names only, never values)')
    .argument('<name>', 'provider name')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'yaml', 'json']).default('table'))
    .action(async (name: string, flags: { output: string }) => {
      const format = parseOutputFormat(flags.output)
      const rec = requireProvider(ctx.dataDir, name)
      if (format !== 'table') return ctx.out.stdout(serialize(toJson(rec, ctx.dataDir), format))
      ctx.out.stdout(providerGetBlock(rec))
    })

  pv.command('list')
    .description('list providers')
    .option('--names', 'print only names')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'yaml', 'json']).default('table'))
    .action(async (flags: { names?: boolean; output: string }) => {
      const format = parseOutputFormat(flags.output)
      const { providers, broken } = listProviders(ctx.dataDir)
      for (const b of broken) ctx.out.note(`warning: ${b.error}`)
      if (flags.names) return ctx.out.stdout(providers.map(p => p.name + '\n').join(''))
      if (format !== 'table') return ctx.out.stdout(serialize(providers.map(p => toJson(p, ctx.dataDir)), format))
      ctx.out.stdout(
        table(
          ['NAME', 'TYPE', 'CREDENTIALS', 'CONFIG'],
          providers.map(p => [p.name, p.type, p.credentials.join(','), configText(p)]),
        ),
      )
    })

  pv.command('update')
    .description("replace credentials' values (adding new variables) and merge config")
    .argument('<name>', 'provider name')
    .option('--credential <KEY[=VALUE]>', 'credential variable; a bare KEY reads the value from the environment; repeatable', collect, [])
    .option('--from-existing', 'take the variables the type knows from the environment')
    .option('--config <K=V>', 'non-secret setting; repeatable', collect, [])
    .action(async (name: string, flags: { credential: string[]; fromExisting?: boolean; config: string[] }) => {
      const redactor = new Redactor()
      await redacted(redactor, async () => {
        const cur = requireProvider(ctx.dataDir, name)
        const config = parseConfigFlags(flags.config)
        const parsed = parseCredentialFlags(flags.credential, ctx.env)
        warnArgv(ctx, parsed.inArgv)
        const credentials = new Map(parsed.values)
        if (flags.fromExisting) {
          const { type, envVars } = resolveProviderType(ctx.dataDir, cur.type)
          const found = envVars ? fromExisting(envVars, ctx.env, type) : fromExisting(checkProviderType(type), ctx.env)
          for (const [k, v] of found.credentials) if (!credentials.has(k)) credentials.set(k, v)
          for (const [k, v] of found.config) if (!config.has(k)) config.set(k, v)
        }
        for (const v of credentials.values()) redactor.add(v)
        warnShort(ctx, redactor)
        const podman = await ctx.podman()
        await gcProviderSecrets(podman, ctx.dataDir)
        const rec = await updateProvider(podman, ctx.dataDir, name, { credentials, config })
        ctx.out.stdout(`Updated provider '${rec.name}'\n`)
        if (credentials.size > 0) ctx.out.note('Running sandboxes that use it resolve their placeholders to the new values now (env-mode sandboxes: in new exec sessions and when they next start).')
      })
    })

  pv.command('delete')
    .description('delete providers (refused while a sandbox uses one, unless --force)')
    .argument('<names...>', 'provider names')
    .option('--force', 'delete even if sandboxes use it (exec into them and starting them fail until it exists again)')
    .action(async (names: string[], flags: { force?: boolean }) => {
      for (const n of names) check(objectName, n, 'provider name')
      const podman = await ctx.podman()
      const users = await providerUsers(podman)
      const secrets = await listProviderSecrets(podman)
      for (const n of names) {
        let exists = secrets.some(s => s.provider === n)
        try {
          exists ||= readProvider(ctx.dataDir, n) !== undefined
        } catch {
          exists = true // corrupt metadata: deletable
        }
        if (!exists) {
          throw new PodshellError(`provider ${n} not found`, { hint: '`podshell provider list` shows the providers', code: 'PROVIDER_NOT_FOUND' })
        }
        const by = users.get(n) ?? []
        if (by.length > 0 && !flags.force) {
          const it = by.length > 1 ? 'them' : 'it'
          throw new PodshellError(`provider ${n} is used by sandbox${by.length > 1 ? 'es' : ''} ${by.join(', ')}`, {
            hint: `delete ${it} first, or pass --force (exec into ${it} and starting ${it} then fail until provider ${n} exists again)`,
            code: 'PROVIDER_IN_USE',
          })
        }
      }
      for (const n of names) {
        await deleteProvider(podman, ctx.dataDir, n)
        ctx.out.stdout(`Deleted provider '${n}'\n`)
      }
      await gcProviderSecrets(podman, ctx.dataDir)
    })

  registerProfiles(pv, ctx)
  return pv
}

/** What -o json|yaml print for a provider: metadata only (there is no value to print). */
export function toJson(p: ProviderRecord, dataDir: string): Record<string, unknown> {
  const prof = findProfile(dataDir, p.type)
  return providerJson(p, prof && !prof.builtin ? profileEndpoints(prof.profile).map(e => `${e.host}:${e.port}${e.path ?? ''}`) : [])
}

function configText(p: ProviderRecord): string {
  return Object.entries(p.config)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
}

/** Runs fn; any error leaving it has this process's credential values replaced by ***. */
async function redacted(redactor: Redactor, fn: () => Promise<void>): Promise<void> {
  try {
    await fn()
  } catch (e) {
    throw redactor.redactError(e)
  }
}

function warnArgv(ctx: CliContext, vars: readonly string[]): void {
  if (vars.length === 0) return
  ctx.out.note(
    `warning: the value of ${vars.join(', ')} was given on the command line, where other processes (ps) and your shell history can see it; ` +
      `prefer exporting it and passing a bare --credential ${vars[0]}`,
  )
}

function warnShort(ctx: CliContext, r: Redactor): void {
  if (r.shortValues > 0) {
    ctx.out.note('warning: a credential value shorter than 4 characters cannot be redacted from podshell output; check it is the real value')
  }
}
