import { Command, Option } from 'commander'
import { PodshellError } from '../errors.js'
import { envKey, envValue, parseKeyValue } from '../util/validate.js'
import { ALL_KINDS, buildImages, type ImageKind } from '../images/build.js'
import { CliContext, collect } from './context.js'
import { retireStaleGateways } from '../gateway/lifecycle.js'
import { parseOutputFormat, serialize, table } from './output.js'

/**
 * `podshell image build [sandbox|gateway|all]`: builds podshell's images, online (base pulled from a
 * registry) or offline (base bootstrapped with mmdebstrap). Progress goes to stderr, the result
 * (one row per image) to stdout.
 */
export function register(program: Command, ctx: CliContext): Command {
  const image = program.command('image').description("build podshell's container images")

  image
    .command('build')
    .description('build the sandbox and/or gateway image (skipped when its inputs did not change)')
    .argument('[which]', 'sandbox, gateway or all', 'all')
    .option('--offline', 'bootstrap the Debian base with mmdebstrap instead of pulling it from a registry', false)
    .option('--force', 'rebuild even when up to date, and refresh the base', false)
    .option('--base <image>', 'base image (default: docker.io/library/debian:bookworm-slim, or the offline base when no registry answers)')
    .option('--build-arg <KEY=VALUE>', 'agent CLI version for the sandbox image: CLAUDE_CODE_VERSION, OPENCODE_VERSION or CODEX_VERSION; repeatable', collect, [])
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (which: string, flags: { offline: boolean; force: boolean; base?: string; buildArg: string[]; output: string }) => {
      const format = parseOutputFormat(flags.output, ['table', 'json'])
      const kinds = parseWhich(which)
      const buildArgs: Record<string, string> = {}
      for (const kv of flags.buildArg) {
        const [k, v] = parseKeyValue(kv, '--build-arg', envKey, envValue)
        buildArgs[k] = v
      }
      const podman = await ctx.podman()
      const results = await buildImages(podman, ctx, kinds, {
        offline: flags.offline,
        force: flags.force,
        ...(flags.base !== undefined ? { base: flags.base } : {}),
        buildArgs,
        say: line => ctx.out.note(line),
      })
      const gw = results.find(r => r.kind === 'gateway')
      if (gw) {
        const retired = await retireStaleGateways(podman, gw.id)
        if (retired.length) ctx.out.note(`removed gateway containers on an older image (re-created on next use): ${retired.join(', ')}`)
      }
      if (format === 'json') {
        ctx.out.stdout(serialize(results, 'json'))
        return
      }
      ctx.out.stdout(
        table(
          ['IMAGE', 'ID', 'STATUS', 'SIZE', 'SECONDS'],
          results.map(r => [r.ref, r.id.slice(0, 12), r.status, `${Math.round(r.size / 1e6)} MB`, r.seconds.toFixed(1)]),
        ),
      )
    })
  return image
}

export function parseWhich(which: string): ImageKind[] {
  if (which === 'all') return [...ALL_KINDS]
  if ((ALL_KINDS as readonly string[]).includes(which)) return [which as ImageKind]
  throw new PodshellError(`unknown image ${JSON.stringify(which)}`, { hint: 'use sandbox, gateway or all', exitCode: 2, code: 'INVALID_INPUT' })
}
