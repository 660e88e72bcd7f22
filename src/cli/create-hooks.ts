import { Command, Option } from 'commander'
import { loadEffectiveConfig } from '../config/enterprise.js'
import { addSpecOption, createOptionsFromSpecFlag, secureCreateOptions, sessionTypePolicy } from '../sandbox/spec.js'
import { SESSION_TYPES, type CreateOptions, type SessionType } from '../sandbox/types.js'
import type { CliContext } from './context.js'
import { createOptionsFromFlags, readPolicyFile, type CreateFlags, type SandboxCliHooks } from './sandbox.js'

/**
 * `sandbox create` beyond plain flags: the DevAIFlow launch spec (`--spec`), session types, the
 * user/enterprise configuration and the mount protections (sensitive paths refused, `.ai-read-deny`
 * masked, git hooks and agent settings read-only inside read-write trees). Every path to a sandbox
 * goes through secureCreateOptions or prepareSpecLaunch, which apply the same rules.
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
    const allowSocket = (flags.allowSocket as string[] | undefined) ?? []
    if (fromSpec) return allowSocket.length ? { ...fromSpec, allowSockets: [...(fromSpec.allowSockets ?? []), ...allowSocket] } : fromSpec
    let o = createOptionsFromFlags(flags, command, ctx)
    if (allowSocket.length) o = { ...o, allowSockets: allowSocket }
    const sessionType = flags.sessionType as SessionType | undefined
    if (flags.allowSensitive === true) o = { ...o, allowSensitive: true }
    const eff = loadEffectiveConfig(ctx.env).effective
    const type = sessionType ?? eff.defaultSessionType
    if (type !== undefined) {
      o = { ...o, sessionType: type, workdirMode: type === 'development' ? 'rw' : 'ro' }
      if (o.policyText === undefined) o = { ...o, ...sessionTypePolicy(type, eff) }
    } else if (o.policyText === undefined && eff.defaultPolicy) {
      o = { ...o, policyFile: eff.defaultPolicy, policyText: readPolicyFile(eff.defaultPolicy) }
    }
    const { options, warnings } = await secureCreateOptions(o, ctx.env)
    for (const w of warnings) note(`warning: ${w}`)
    return options
  },
}

