import { Command, Option } from 'commander'
import { addSpecOption, createOptionsFromSpecFlag } from '../sandbox/spec.js'
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
