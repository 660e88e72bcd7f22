import { Command, Option } from 'commander'
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { PodshellError } from '../errors.js'
import { configDir, dataDir, homeDir } from '../config/paths.js'
import { findOnPath } from '../podman/podman.js'
import { ensureSshKeys, readSshdKeys, sshKeyFiles } from '../sandbox/ssh-keys.js'
import { firstLine } from '../transfer/exec-stream.js'
import { agentUserName, runSshd } from '../sandbox/sshd.js'
import { appendLifecycle } from '../gateway/audit.js'
import { check, sandboxName } from '../util/validate.js'
import type { CliContext } from './context.js'
import { OK } from './output.js'
import { openRuntime } from './runtime.js'
import { WORKSPACE } from './openshell-format.js'

/**
 * `sandbox ssh-config [name]`, `sandbox connect --editor vscode|cursor` and the hidden
 * `ssh-proxy --name N` their ProxyCommand runs. As OpenShell (crates/openshell-cli/src/ssh.rs):
 * the Host block's alias and lines are OpenShell's (`Host openshell-NAME.default`, …), the editor
 * gets `--remote ssh-remote+ALIAS PATH`, and `connect --editor` upserts the block into a managed
 * file (podshell's config dir/ssh_config) that ~/.ssh/config Includes. podshell's additions come
 * after OpenShell's lines: the per-sandbox IdentityFile, and no agent/X11 forwarding to a server
 * side the agent controls.
 */

export const EDITORS = { vscode: { binary: 'code', label: 'VS Code' }, cursor: { binary: 'cursor', label: 'Cursor' } } as const
export type EditorName = keyof typeof EDITORS

/** OpenShell's host alias: `openshell-{name}.{workspace}`. */
export function hostAlias(name: string): string {
  return `openshell-${name}.${WORKSPACE}`
}

/** A word for ssh's ProxyCommand (run by /bin/sh; `%` is ssh's token character). */
export function shellWord(s: string): string {
  const w = /^[A-Za-z0-9_./:=,+@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
  return w.replace(/%/g, '%%')
}

export interface SshConfigInput {
  name: string
  user: string
  /** argv of the proxy (the podshell CLI and its arguments). */
  proxy: readonly string[]
  identityFile: string
}

/** The Host block, OpenShell's lines first (ssh.rs render_ssh_config), then podshell's. Pure. */
export function renderSshConfig(i: SshConfigInput): string {
  const quotedIdentity = `"${i.identityFile.replace(/%/g, '%%')}"`
  return [
    `Host ${hostAlias(i.name)}`,
    `    User ${i.user}`,
    '    StrictHostKeyChecking no',
    '    UserKnownHostsFile /dev/null',
    '    GlobalKnownHostsFile /dev/null',
    '    LogLevel ERROR',
    '    ServerAliveInterval 15',
    '    ServerAliveCountMax 3',
    `    ProxyCommand ${i.proxy.map(shellWord).join(' ')}`,
    `    IdentityFile ${quotedIdentity}`,
    '    IdentitiesOnly yes',
    '    ForwardAgent no',
    '    ForwardX11 no',
    '',
  ].join('\n')
}

function isHostLine(line: string, alias?: string): boolean {
  const t = line.trimStart()
  if (!/^Host\s/i.test(t)) return false
  return alias === undefined || t.slice(5).trim().split(/\s+/).includes(alias)
}

/** Replaces the block of `alias` in an ssh config, or appends it (OpenShell's upsert_host_block). Pure. */
export function upsertHostBlock(contents: string, alias: string, block: string): string {
  const lines = contents === '' ? [] : contents.replace(/\n$/, '').split('\n')
  const blockLines = block.replace(/\n$/, '').split('\n')
  const start = lines.findIndex(l => isHostLine(l, alias))
  let out: string[]
  if (start >= 0) {
    let end = lines.findIndex((l, i) => i > start && (isHostLine(l) || /^Match\s/i.test(l.trimStart())))
    if (end < 0) end = lines.length
    const before = lines.slice(0, start)
    const after = lines.slice(end)
    out = [...before]
    if (out.length > 0 && out[out.length - 1] !== '') out.push('')
    out.push(...blockLines)
    if (after.length > 0 && after[0] !== '') out.push('')
    out.push(...after)
  } else {
    out = [...lines]
    if (out.length > 0 && out[out.length - 1] !== '') out.push('')
    out.push(...blockLines)
  }
  return out.length ? `${out.join('\n')}\n` : ''
}

/**
 * ~/.ssh/config with an `Include "MANAGED"` line before its first Host/Match block (where an
 * Include applies to every host), once (OpenShell's ensure_openshell_include). Pure.
 */
export function ensureInclude(contents: string, managed: string): string {
  const include = `Include "${managed}"`
  const lines = (contents === '' ? [] : contents.replace(/\n$/, '').split('\n')).filter(l => {
    const t = l.trim()
    return !(/^Include\s/i.test(t) && t.slice(8).trim().split(/\s+/).some(w => w === `"${managed}"` || w === managed))
  })
  let at = lines.findIndex(l => /^(Host|Match)\s/i.test(l.trimStart()))
  if (at < 0) at = lines.length
  const out = lines.slice(0, at)
  if (out.length > 0 && out[out.length - 1] !== '') out.push('')
  out.push(include)
  if (at < lines.length && lines[at] !== '') out.push('')
  out.push(...lines.slice(at))
  return `${out.join('\n')}\n`
}

/** How ssh runs podshell as the proxy: this node, this CLI, and the data dir when it is not the default. */
function proxyArgv(ctx: CliContext, name: string): string[] {
  const main = realpathSync(process.argv[1]!)
  const data = ctx.dataDir
  const envPrefix = data !== dataDir({ HOME: homeDir(ctx.env) }) ? ['env', `PODSHELL_HOME=${data}`] : []
  return [...envPrefix, process.execPath, main, 'ssh-proxy', '--name', name]
}

/** Checks the sandbox, makes its keys, renders its block. */
async function sshConfigFor(ctx: CliContext, name: string): Promise<{ block: string; running: boolean; workdir: string | null }> {
  const rt = await openRuntime(ctx)
  const info = await rt.get(name)
  const running = info.phase === 'Ready'
  const keys = ensureSshKeys(ctx.dataDir, name)
  const user = await agentUserName(await ctx.podman(), name, running)
  return { block: renderSshConfig({ name, user, proxy: proxyArgv(ctx, name), identityFile: keys.clientKey }), running, workdir: info.workdir }
}

/** Writes the block into the managed file and makes ~/.ssh/config include it; returns the managed path. */
export function installSshConfig(ctx: CliContext, name: string, block: string): string {
  const managed = join(configDir(ctx.env), 'ssh_config')
  const main = join(homeDir(ctx.env), '.ssh', 'config')
  mkdirSync(dirname(main), { recursive: true, mode: 0o700 })
  mkdirSync(dirname(managed), { recursive: true, mode: 0o700 })
  writeFileSync(main, ensureInclude(readOr(main), managed), { mode: 0o600 })
  writeFileSync(managed, upsertHostBlock(readOr(managed), hostAlias(name), block), { mode: 0o600 })
  chmodSync(managed, 0o600)
  return managed
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return ''
  }
}

export function register(program: Command, sb: Command, ctx: CliContext, resolveName: (name: string | undefined, ctx: CliContext) => string): void {
  sb.command('ssh-config')
    .description("print an ssh config Host block for a sandbox (VS Code / Cursor Remote-SSH; ProxyCommand is podshell: no port, no network)")
    .argument('[name]', 'sandbox name (default: last used)')
    .action(async (name: string | undefined) => {
      const n = resolveName(name, ctx)
      const { block } = await sshConfigFor(ctx, n)
      ctx.out.stdout(block)
    })

  // The ProxyCommand of the Host block: one `sshd -i` in the sandbox per connection, over stdio.
  program
    .command('ssh-proxy', { hidden: true })
    .description('internal: the ProxyCommand of `sandbox ssh-config` (sshd -i in the sandbox over stdin/stdout)')
    .requiredOption('--name <name>', 'sandbox name')
    .action(async (flags: { name: string }) => {
      const n = check(sandboxName, flags.name, 'sandbox name')
      if (!existsSync(sshKeyFiles(ctx.dataDir, n).hostKey)) {
        await (await openRuntime(ctx)).get(n) // unknown sandbox: its one line
        readSshdKeys(ctx.dataDir, n) // known, no keys yet: that one line
      }
      appendLifecycle(ctx.dataDir, n, { event: 'ssh_session' })
      const r = await runSshd(await ctx.podman(), ctx.dataDir, n, s => process.stderr.write(s))
      if (r.podmanFailed) {
        await (await openRuntime(ctx)).explainExecFailure(n) // not running: `sandbox N is Stopped: start it …`
        throw new PodshellError(`cannot start sshd in sandbox ${n}: ${firstLine(r.stderr)}`, { hint: 'run `podshell doctor` to check the host', code: 'PODMAN_FAILED' })
      }
      process.exitCode = r.code
    })
}

/** `sandbox connect NAME --editor vscode|cursor`: managed ssh config, then `EDITOR --remote ssh-remote+ALIAS PATH`. */
export async function connectEditor(ctx: CliContext, name: string, editor: EditorName): Promise<void> {
  const e = EDITORS[editor]
  const bin = editorBinary(ctx, editor, name)
  const { block, running, workdir } = await sshConfigFor(ctx, name)
  if (!running) throw new PodshellError(`sandbox ${name} is not running`, { hint: `start it first: podshell sandbox start ${name}`, code: 'SANDBOX_NOT_RUNNING' })
  installSshConfig(ctx, name, block)
  const path = workdir ?? homeDir(ctx.env)
  const child = spawn(bin, ['--remote', `ssh-remote+${hostAlias(name)}`, path], { stdio: 'ignore', detached: true })
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve())
    child.once('error', err => reject(new PodshellError(`failed to launch ${e.label}: ${err.message}`, { code: 'EDITOR_FAILED' })))
  })
  child.unref()
  ctx.out.note(`${OK} Opened ${e.label} for sandbox ${name}`)
}

/** The editor's binary on PATH, or the one-line error saying how to get it (checked before a create makes anything). */
export function editorBinary(ctx: CliContext, editor: EditorName, name?: string): string {
  const e = EDITORS[editor]
  const bin = findOnPath(e.binary, ctx.env)
  if (!bin) throw new PodshellError(`${e.binary} is not installed or not on PATH`, { hint: `install ${e.label} (its \`${e.binary}\` command), or use \`podshell sandbox ssh-config ${name ?? 'NAME'}\` with another SSH client`, code: 'NOT_FOUND' })
  return bin
}

export function editorOption(description = 'launch a remote editor (VS Code Remote-SSH / Cursor) instead of a shell; installs the managed SSH config'): Option {
  return new Option('--editor <editor>', description).choices(Object.keys(EDITORS))
}
