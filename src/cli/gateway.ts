import { Command, Option } from 'commander'
import { isAbsolute } from 'node:path'
import { PodshellError } from '../errors.js'
import { ensureGateway, gatewayStatus, stopGateway, podshellVersion, type GatewayStatus } from '../gateway/lifecycle.js'
import { CliContext } from './context.js'
import { parseOutputFormat, serialize, table } from './output.js'

/**
 * `podshell gateway …` (alias `gw`): the per-user egress gateway.
 *
 *   serve --data DIR   run the gateway in the foreground (what the gateway container runs)
 *   start              start it if it is not answering (any sandbox command does this too)
 *   stop               stop and remove the gateway container (sandboxes lose egress until start)
 *   status [-o]        container state, control-socket answer, per-sandbox connections
 *   ca [--rotate]      the sandbox CA the gateway signs inspected TLS with (docs/tls.md)
 */
export function register(program: Command, ctx: CliContext): Command {
  const gw = program.command('gateway').alias('gw').description('manage the per-user egress gateway')

  gw.command('serve')
    .description('run the gateway in the foreground (inside the gateway container)')
    .requiredOption('--data <dir>', 'podshell data dir as mounted in the container')
    .action(async (flags: { data: string }) => {
      await serveGateway(flags.data, ctx)
    })

  gw.command('start')
    .description('start the gateway (no-op when it answers)')
    .action(async () => {
      await ensureGateway(await ctx.podman(), ctx.dataDir, { env: ctx.env, say: m => ctx.out.note(m) })
      const st = await gatewayStatus(await ctx.podman(), ctx.dataDir, ctx.env)
      ctx.out.stdout(`Gateway ${st.name} running${st.containerId ? ` (${st.containerId})` : ''}\n`)
    })

  gw.command('stop')
    .description('stop and remove the gateway container; sandboxes have no egress until it starts again')
    .action(async () => {
      const removed = await stopGateway(await ctx.podman(), ctx.dataDir, ctx.env)
      ctx.out.stdout(removed ? 'Gateway stopped\n' : 'Gateway was not running\n')
    })

  gw.command('ca')
    .description("print the podshell sandbox CA (PEM) and its SHA-256 fingerprint; --rotate replaces it")
    .option('--rotate', 'generate a new CA; running sandboxes keep the old one until they are recreated')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['pem', 'yaml', 'json']).default('pem'))
    .action(async (flags: { rotate?: boolean; output: string }) => {
      const { caSummary, rotateSandboxCa, currentSandboxCa } = await import('../tls/admin.js')
      const r = flags.rotate ? await rotateSandboxCa(ctx.dataDir, ctx.env) : { ca: await currentSandboxCa(ctx.dataDir, ctx.env), previous: undefined }
      const sum = caSummary(r.ca)
      if (flags.output === 'pem') ctx.out.stdout(`${r.ca.certPem}SHA-256 Fingerprint=${sum.fingerprint_sha256}\n`)
      else ctx.out.stdout(serialize(sum, flags.output === 'json' ? 'json' : 'yaml'))
      if (flags.rotate) {
        ctx.out.note(
          `new sandbox CA ${sum.fingerprint_sha256.slice(0, 23)}…: sandboxes created from now on trust it; running sandboxes keep working with the previous CA until they are recreated (delete and create)`,
        )
      }
    })

  gw.command('status')
    .description('show the gateway container, whether it answers, and per-sandbox connections')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'yaml', 'json']).default('table'))
    .action(async (flags: { output: string }) => {
      const format = parseOutputFormat(flags.output)
      const st = await gatewayStatus(await ctx.podman(), ctx.dataDir, ctx.env)
      ctx.out.stdout(format === 'table' ? renderStatus(st) : serialize(st, format))
      if (!st.answering) process.exitCode = 1
    })
  return gw
}

function renderStatus(st: GatewayStatus): string {
  const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`
  let out = `Gateway:   ${st.name}\nContainer: ${st.state}${st.containerId ? ` (${st.containerId})` : ''}\nAnswering: ${st.answering ? 'yes' : 'no'}\n`
  if (st.ping) out += `Version:   ${st.ping.version}\nUptime:    ${Math.round(st.ping.uptimeMs / 1000)}s\n`
  if (st.stats) {
    out += `Memory:    ${mib(st.stats.memory.rss)} rss\nConnections: ${st.stats.connections}\n\n`
    out += table(
      ['SANDBOX', 'POLICY', 'CONNECTIONS', 'ALLOWED', 'DENIED'],
      st.stats.sandboxes.map(s => [s.name, s.policyVersion === null ? 'none (deny all)' : String(s.policyVersion), String(s.connections), String(s.allowed), String(s.denied)]),
    )
  }
  return out
}

/**
 * Foreground gateway. Stops cleanly on SIGTERM/SIGINT (the container's stop). An uncaught exception
 * ends the process (the container's restart policy starts a fresh one; running sandboxes reconnect
 * through their bridges because the sockets are re-created in the same directories).
 */
export async function serveGateway(dataDir: string, ctx: CliContext): Promise<void> {
  if (!isAbsolute(dataDir)) throw new PodshellError('--data must be an absolute path', { exitCode: 2, code: 'INVALID_INPUT' })
  // Everything the gateway creates (sockets, audit files) is for the user alone.
  process.umask(0o077)
  const log = (line: string) => ctx.out.stdout(line + '\n')
  // Loaded here, not at the top: node:http (which the proxy needs) pulls in undici through its
  // ESM facade, ~15 ms that every other command, `sandbox create` first, would pay for nothing.
  const { Gateway } = await import('../gateway/server.js')
  // fairness: a sandbox that floods while another is active is served by its own low-priority
  // worker thread until it calms down (src/gateway/fairness.ts; figures in docs/security.md).
  const gateway = new Gateway({ dataDir, version: podshellVersion(), log, tls: true, fairness: { workers: true } })
  process.on('unhandledRejection', e => log(`unhandled rejection: ${e instanceof Error ? e.message : String(e)}`))
  process.on('uncaughtException', e => {
    log(`fatal: ${e.message}`)
    process.exit(1)
  })
  await gateway.start()
  await new Promise<void>(resolve => {
    const stop = () => {
      void gateway.stop().finally(resolve)
    }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  })
}
