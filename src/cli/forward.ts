import { Command } from 'commander'
import { spawn } from 'node:child_process'
import { isIP } from 'node:net'
import { openSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { PodshellError } from '../errors.js'
import { sandboxDir } from '../config/paths.js'
import { startForward } from '../forward/server.js'
import { findOnPath } from '../podman/podman.js'
import { forwardAlive, forwardRecords, listening, readForward, removeForward, type ForwardRecord } from '../forward/state.js'
import { check, sandboxName } from '../util/validate.js'
import type { CliContext } from './context.js'
import { OK } from './output.js'
import { openRuntime } from './runtime.js'
import { resolveName } from './sandbox.js'

/**
 * `forward start <[bind:]port> [name] [-d]`, `forward stop <port> [name]`, `forward list`
 * (alias `fwd`), with OpenShell's lines. Design in src/forward/server.ts; a background forward is
 * this CLI re-run detached as `forward serve` (hidden), its log in the sandbox's state dir.
 */
export interface ForwardSpec {
  bind: string
  port: number
}

/** `[bind:]port`, split on the last ':' (IPv6 binds); loopback unless an address is given. */
export function parseForwardSpec(s: string): ForwardSpec {
  const i = s.lastIndexOf(':')
  const bind = i < 0 ? '127.0.0.1' : s.slice(0, i).replace(/^\[(.*)\]$/, '$1')
  const portS = i < 0 ? s : s.slice(i + 1)
  const port = /^\d{1,5}$/.test(portS) ? Number(portS) : NaN
  if (!(port >= 1 && port <= 65535)) throw new PodshellError(`invalid port in ${JSON.stringify(s.slice(0, 60))}`, { hint: 'use [bind_address:]port with a port between 1 and 65535, e.g. 8080 or 0.0.0.0:8080', exitCode: 2, code: 'INVALID_INPUT' })
  if (bind !== 'localhost' && !isIP(bind)) throw new PodshellError(`invalid bind address ${JSON.stringify(bind.slice(0, 60))}`, { hint: 'use an IP address (127.0.0.1, 0.0.0.0, ::1)', exitCode: 2, code: 'INVALID_INPUT' })
  return { bind: bind === 'localhost' ? '127.0.0.1' : bind, port }
}

export const accessUrl = (f: ForwardSpec) => `http://${f.bind === '0.0.0.0' || f.bind === '::' ? 'localhost' : f.bind.includes(':') ? `[${f.bind}]` : f.bind}:${f.port}/`

export function register(program: Command, ctx: CliContext): Command {
  const fwd = program.command('forward').alias('fwd').description('forward a host port to a port inside a sandbox (the sandbox gains no egress)')

  fwd.command('start')
    .description('forward [bind:]port on the host (default 127.0.0.1) to the same port inside the sandbox')
    .argument('<port>', '[bind_address:]port, e.g. 8080 or 0.0.0.0:8080')
    .argument('[name]', 'sandbox name (default: last used)')
    .option('-d, --background', 'run in the background and return (survives this command)')
    .action(async (portSpec: string, name: string | undefined, flags: { background?: boolean }) => {
      const spec = parseForwardSpec(portSpec)
      const n = resolveName(name, ctx)
      if (flags.background) {
        await startBackground(ctx, n, spec)
        ctx.out.note(`${OK} Forwarding port ${spec.port} to sandbox ${n} in the background`)
        ctx.out.note(`  Access at: ${accessUrl(spec)}`)
        ctx.out.note(`  Stop with: podshell forward stop ${spec.port} ${n}`)
        return
      }
      await requireReady(ctx, n)
      const f = await listen(ctx, n, spec, false)
      ctx.out.note(`${OK} Forwarding port ${spec.port} to sandbox ${n}\n  Access at: ${accessUrl(spec)}\n  Press Ctrl+C to stop`)
      const stop = () => void f.close()
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
      await f.stopped
    })

  fwd.command('stop')
    .description('stop a background forward')
    .argument('<port>', 'port that was forwarded')
    .argument('[name]', 'sandbox name (found from the active forwards when omitted)')
    .action(async (portS: string, name: string | undefined) => {
      const port = parseForwardSpec(portS).port
      let n = name !== undefined ? check(sandboxName, name, 'sandbox name') : undefined
      if (n === undefined) {
        n = forwardRecords(ctx.dataDir).find(r => r.port === port)?.sandbox
        if (!n) return ctx.out.note(`! No active forward found for port ${port}`)
        ctx.out.note(`→ Found forward on sandbox '${n}'`)
      }
      if (await stopForward(ctx.dataDir, n, port)) ctx.out.note(`${OK} Stopped forward of port ${port} for sandbox ${n}`)
      else ctx.out.note(`! No active forward found for port ${port} on sandbox ${n}`)
    })

  fwd.command('list')
    .description('list background forwards that are really listening (checked, not remembered)')
    .action(async () => {
      const all = await Promise.all(forwardRecords(ctx.dataDir).map(async r => ({ r, up: await listening(r.bind, r.port) })))
      // Only what really listens is listed; a live process that does not listen is named on stderr.
      for (const x of all) if (!x.up) ctx.out.note(`! forward of port ${x.r.port} for sandbox ${x.r.sandbox}: process ${x.r.pid} is not listening`)
      const rows = all.filter(x => x.up)
      if (rows.length === 0) return ctx.out.note('No active forwards.')
      const nw = Math.max(7, ...rows.map(x => x.r.sandbox.length))
      const bw = Math.max(4, ...rows.map(x => x.r.bind.length))
      const line = (a: string, b: string, c: string, d: string, e: string) => `${a.padEnd(nw)} ${b.padEnd(bw)} ${c.padEnd(8)} ${d.padEnd(10)} ${e}\n`
      ctx.out.stdout(line('SANDBOX', 'BIND', 'PORT', 'PID', 'STATUS') + rows.map(({ r }) => line(r.sandbox, r.bind, String(r.port), String(r.pid), 'running')).join(''))
    })

  // The background forward's process (started by `forward start -d` and `create --forward`).
  fwd.command('serve', { hidden: true })
    .requiredOption('--name <name>')
    .requiredOption('--spec <spec>')
    .action(async (flags: { name: string; spec: string }) => {
      const n = check(sandboxName, flags.name, 'sandbox name')
      const spec = parseForwardSpec(flags.spec)
      let f
      try {
        f = await listen(ctx, n, spec, true)
      } catch (e) {
        process.stdout.write(`error: ${e instanceof PodshellError ? e.oneLine() : e instanceof Error ? e.message : String(e)}\n`)
        process.exitCode = 1
        return
      }
      process.stdout.write('ready\n')
      const stop = () => void f.close()
      process.once('SIGTERM', stop)
      process.once('SIGINT', stop)
      process.once('SIGHUP', () => undefined) // the terminal that started it may go; the forward stays
      await f.stopped
    })
  return fwd
}

async function requireReady(ctx: CliContext, n: string): Promise<void> {
  const info = await (await openRuntime(ctx)).get(n)
  if (info.phase !== 'Ready') throw new PodshellError(`sandbox ${n} is ${info.phase}`, { hint: `start it first: podshell sandbox start ${n}`, code: 'SANDBOX_NOT_RUNNING' })
}

async function listen(ctx: CliContext, n: string, spec: ForwardSpec, record: boolean) {
  // The relay runs the host's socat and nsenter (src/forward/server.ts): say so now, not per connection.
  for (const tool of ['socat', 'nsenter']) {
    if (!findOnPath(tool, ctx.env)) throw new PodshellError(`${tool} not found on this host; forwards need it`, { hint: `install it (Debian/Ubuntu: apt-get install ${tool === 'socat' ? 'socat' : 'util-linux'}; Fedora: dnf install ${tool === 'socat' ? 'socat' : 'util-linux'})`, code: 'FORWARD_TOOL_MISSING' })
  }
  const existing = readForward(ctx.dataDir, n, spec.port)
  if (existing && forwardAlive(existing)) throw new PodshellError(`port ${spec.port} is already forwarded to sandbox ${n}`, { hint: `stop it first: podshell forward stop ${spec.port} ${n}`, code: 'FORWARD_EXISTS' })
  try {
    return await startForward({ podman: await ctx.podman(), dataDir: ctx.dataDir, sandbox: n, bind: spec.bind, port: spec.port, record, log: l => ctx.out.note(`${new Date().toISOString()} ${l}`) })
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'EADDRINUSE') throw new PodshellError(`port ${spec.port} on ${spec.bind} is in use`, { hint: 'stop what listens there, or forward another port', code: 'PORT_IN_USE' })
    if (code === 'EACCES') throw new PodshellError(`port ${spec.port} on ${spec.bind} needs privileges`, { hint: 'use a port above 1023', code: 'PORT_PRIVILEGED' })
    if (code === 'EADDRNOTAVAIL') throw new PodshellError(`${spec.bind} is not an address of this host`, { hint: 'bind to 127.0.0.1 (default) or an address this host has', exitCode: 2, code: 'INVALID_INPUT' })
    throw e
  }
}

/**
 * Starts `forward serve` detached (its own session, stdout a pipe for "ready", stderr its log
 * file) and waits for it to listen. The sandbox must be Ready.
 */
export async function startBackground(ctx: CliContext, n: string, spec: ForwardSpec): Promise<ForwardRecord> {
  await requireReady(ctx, n)
  const existing = readForward(ctx.dataDir, n, spec.port)
  if (existing && forwardAlive(existing)) throw new PodshellError(`port ${spec.port} is already forwarded to sandbox ${n}`, { hint: `stop it first: podshell forward stop ${spec.port} ${n}`, code: 'FORWARD_EXISTS' })
  const log = openSync(join(sandboxDir(ctx.dataDir, n), `forward-${spec.port}.log`), 'a', 0o600)
  const main = process.argv[1]!
  const child = spawn(process.execPath, [main, 'forward', 'serve', '--name', n, '--spec', `${spec.bind.includes(':') ? `[${spec.bind}]` : spec.bind}:${spec.port}`], {
    detached: true,
    stdio: ['ignore', 'pipe', log],
    env: ctx.env as NodeJS.ProcessEnv,
  })
  closeSync(log)
  const first = await new Promise<string>(resolve => {
    let buf = ''
    const t = setTimeout(() => resolve('error: the forward did not start within 30 s'), 30_000)
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString('utf8')
      if (buf.includes('\n')) {
        clearTimeout(t)
        resolve(buf.split('\n')[0]!)
      }
    })
    child.on('exit', c => {
      clearTimeout(t)
      resolve(buf.split('\n')[0] || `error: the forward exited with code ${c}`)
    })
  })
  child.stdout!.destroy()
  child.unref()
  if (first !== 'ready') {
    if (child.exitCode === null) child.kill('SIGTERM')
    throw new PodshellError(first.replace(/^error: (podshell: )?/, ''), { code: 'FORWARD_FAILED' })
  }
  return readForward(ctx.dataDir, n, spec.port)!
}

/** Stops a background forward (its process ends when its record goes; SIGTERM makes it prompt). */
export async function stopForward(data: string, n: string, port: number): Promise<boolean> {
  const r = readForward(data, n, port)
  if (!r) return false
  const alive = forwardAlive(r)
  removeForward(data, n, port)
  if (!alive) return false
  try {
    process.kill(r.pid, 'SIGTERM')
  } catch {
    // already gone
  }
  for (let i = 0; i < 50 && forwardAlive(r); i++) await new Promise(res => setTimeout(res, 50))
  return true
}

/** Stops every forward of a sandbox (before it is stopped or deleted); returns the ports. */
export async function stopSandboxForwards(data: string, n: string): Promise<number[]> {
  const ports: number[] = []
  for (const r of forwardRecords(data, n)) if (await stopForward(data, n, r.port)) ports.push(r.port)
  return ports
}
