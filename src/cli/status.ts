import { Command, Option } from 'commander'
import { ensureGateway, gatewayStatus, podshellVersion } from '../gateway/lifecycle.js'
import { gatewayControlSocket } from '../config/paths.js'
import { CliContext } from './context.js'
import { parseOutputFormat, serialize } from './output.js'
import { statusBlock, type StatusFacts } from './openshell-format.js'
import { openRuntime } from './runtime.js'

/**
 * `podshell status`: OpenShell's gateway status (`Server Status` … `Status: Connected`), which
 * clients poll before anything else, plus podshell's own facts (Podman, gateway container,
 * sandboxes). podshell's gateway is started on demand by every sandbox command; `status` starts it
 * too (a client waiting for `Connected` would otherwise wait forever on a fresh host), unless
 * `--no-start`. Exit 0 when connected, 1 when not.
 */
export function register(program: Command, ctx: CliContext): Command {
  return program
    .command('status')
    .description('show whether the gateway answers (Connected), with Podman and gateway facts')
    .option('--no-start', 'only look: do not start the gateway when it is not running')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'yaml', 'json']).default('table'))
    .action(async (flags: { start: boolean; output: string }) => {
      const format = parseOutputFormat(flags.output)
      const facts: StatusFacts = {
        gateway: 'podshell',
        server: `unix://${gatewayControlSocket(ctx.dataDir)}`,
        connected: false,
        podman: { error: 'not checked' },
        container: 'absent',
        data_dir: ctx.dataDir,
      }
      try {
        const podman = await ctx.podman()
        facts.podman = { version: podman.version, runtime: podman.runtime.runtime, rootless_limits: podman.rootlessLimits }
        if (flags.start) {
          try {
            await ensureGateway(podman, ctx.dataDir, { env: ctx.env, say: m => ctx.out.note(m) })
          } catch (e) {
            facts.error = e instanceof Error ? e.message.split('\n')[0] : String(e)
          }
        }
        const st = await gatewayStatus(podman, ctx.dataDir, ctx.env)
        facts.gateway = st.name
        facts.container = st.state + (st.containerId ? ` (${st.containerId.slice(0, 12)})` : '')
        facts.connected = st.answering
        if (st.answering) {
          facts.version = st.ping?.version ?? podshellVersion()
          delete facts.error
          facts.sandboxes = (await (await openRuntime(ctx)).list()).length
        } else facts.error ??= st.state === 'absent' ? 'gateway not running (`podshell gateway start`)' : `gateway container ${st.state}, control socket not answering`
      } catch (e) {
        facts.error = e instanceof Error ? e.message.split('\n')[0] : String(e)
        if ('error' in facts.podman) facts.podman = { error: facts.error }
      }
      const out = statusBlock(facts, format)
      ctx.out.stdout(typeof out === 'string' ? out : serialize(out, format as 'json' | 'yaml'))
      if (!facts.connected) process.exitCode = 1
    })
}
