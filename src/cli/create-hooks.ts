import { Command, Option } from 'commander'
import { PodshellError } from '../errors.js'
import type { Env } from '../config/paths.js'
import { prepareSpecLaunch, readSpecSource } from '../sandbox/spec.js'
import { SESSION_TYPES, type CreateOptions, type SessionType } from '../sandbox/types.js'
import type { CliContext } from './context.js'
import { createOptionsFromFlags, type CreateFlags, type SandboxCliHooks } from './sandbox.js'

/**
 * `sandbox create` beyond plain flags: the DevAIFlow launch spec (`--spec`), session types and
 * `--allow-sensitive`. Parsing only: the configuration defaults, the mount protections (sensitive
 * paths refused, `.ai-read-deny` masked, git dirs and agent settings read-only inside read-write
 * trees) and the enterprise rules are applied by SandboxRuntime.create itself
 * (src/sandbox/spec.ts secureCreateOptions), for every caller of the library alike.
 */
export const createHooks: SandboxCliHooks = {
  extendCreate(cmd: Command) {
    addSpecOption(cmd)
    cmd.addOption(
      new Option('--session-type <type>', 'DevAIFlow session type: picks the policy template and the workdir mode (investigation/ticket_creation: read-only)').choices([...SESSION_TYPES]),
    )
    cmd.option('--allow-socket <path>', 'let the sandbox reach this host unix socket in a mounted tree (every other socket found there is masked); repeatable', (v: string, acc: string[]) => [...acc, v], [] as string[])
    cmd.option('--allow-sensitive', 'permit mounting sensitive host paths (~/.ssh …) when the enterprise configuration allows it')
  },
  async resolveCreate(flags: CreateFlags, command: string[], ctx: CliContext): Promise<CreateOptions> {
    const note = (m: string) => ctx.out.note(m)
    const fromSpec = await createOptionsFromSpecFlag(flags as CreateFlags & { spec?: unknown }, command, ctx.env, note)
    if (fromSpec) return fromSpec
    const allowSocket = (flags.allowSocket as string[] | undefined) ?? []
    let o = createOptionsFromFlags(flags, command, ctx)
    if (allowSocket.length) o = { ...o, allowSockets: allowSocket }
    const sessionType = flags.sessionType as SessionType | undefined
    if (flags.allowSensitive === true) o = { ...o, allowSensitive: true }
    if (sessionType !== undefined) o = { ...o, sessionType, workdirMode: sessionType === 'development' ? 'rw' : 'ro' }
    return o
  },
}

// ───────────────────────────── CLI glue for `sandbox create --spec` ─────────────────────────────

/** Adds `--spec FILE|-` to `sandbox create` . */
function addSpecOption(cmd: Command): void {
  cmd.option('--spec <file>', 'DevAIFlow launch spec (JSON; "-" reads stdin): the whole sandbox description (`podshell schema spec`)')
}

/** Flags that `--spec` replaces: giving them too is an error rather than a silent override. */
const SPEC_EXCLUSIVE = ['name', 'from', 'workdir', 'policy', 'cpu', 'memory'] as const
const SPEC_EXCLUSIVE_LISTS = ['mount', 'env', 'label', 'provider', 'allowSocket'] as const

/**
 * For SandboxCliHooks.resolveCreate: returns the CreateOptions for `--spec`, or undefined when the
 * command line has no --spec (the caller then uses its flag path). Warnings go to `note`.
 */
async function createOptionsFromSpecFlag(
  flags: { spec?: unknown; keep: boolean; detach: boolean; [k: string]: unknown },
  command: string[],
  env: Env,
  note: (msg: string) => void,
): Promise<CreateOptions | undefined> {
  if (typeof flags.spec !== 'string') return undefined
  for (const f of SPEC_EXCLUSIVE) {
    if (flags[f] !== undefined) throw fail(`--spec and --${f} cannot be combined`, 'the spec carries the whole sandbox description; put the value in the spec')
  }
  for (const f of SPEC_EXCLUSIVE_LISTS) {
    if (Array.isArray(flags[f]) && (flags[f] as unknown[]).length) throw fail(`--spec and --${f.replace(/[A-Z]/g, c => '-' + c.toLowerCase())} cannot be combined`, 'the spec carries the whole sandbox description; put the value in the spec')
  }
  if (command.length) throw fail('--spec and a command cannot be combined', 'the agent command is the spec\'s argv')
  const { text, source } = readSpecSource(flags.spec)
  const launch = await prepareSpecLaunch(text, source, env, { keep: flags.keep, detach: flags.detach })
  for (const w of launch.warnings) note(`warning: ${w}`)
  return launch.options
}

function fail(what: string, hint: string): PodshellError {
  return new PodshellError(what, { hint, code: 'INVALID_SPEC', exitCode: 2 })
}
