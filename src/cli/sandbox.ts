import { Command, Option } from 'commander'
import { z } from 'zod'
import { readFileSync } from 'node:fs'
import { PodshellError } from '../errors.js'
import { check, sandboxName, parseKeyValue, envKey, envValue, labelKey, labelValue } from '../util/validate.js'
import type { CreateOptions, MountSpec } from '../sandbox/types.js'
import type { SandboxInfo } from '../sandbox/runtime.js'
import { readLastUsed } from '../sandbox/state.js'
import { trace } from '../util/trace.js'
import { PolicyStore } from '../policy/store.js'
import { activeGlobalPolicy } from '../policy/global.js'
import { policyToYaml } from '../policy/document.js'
import { sandboxPolicyDir } from '../config/paths.js'
import { CliContext, collect } from './context.js'
import { OK, parseOutputFormat, serialize, table } from './output.js'
import type { Policy } from '../policy/schema.js'
import {
  createdSandboxHeader,
  deletedSandboxLine,
  noSandboxesLine,
  noSandboxesToDeleteLine,
  sandboxDetailJson,
  sandboxGetBlock,
  sandboxJson,
  sandboxListTable,
  startedSandboxLine,
  stoppedSandboxLine,
} from './openshell-format.js'
import { openRuntime } from './runtime.js'
import { parseUploadSpec, register as registerTransfer, uploadOne } from './transfer.js'
import { connectEditor, editorBinary, editorOption, register as registerSsh, type EditorName } from './ssh.js'
import { accessUrl, parseForwardSpec, startBackground, stopSandboxForwards } from './forward.js'

/**
 * `podshell sandbox …` (alias `sb`): OpenShell's verbs and flags. Thin: parse, validate, call the
 * runtime, print. Results go to stdout; notes ("→ Using sandbox 'x' (last used)") to stderr.
 *
 * Long by design: one flat declaration of the commander tree, verb by verb, so the CLI reads as
 * OpenShell's (crates/openshell-cli/src/main.rs) and a diff against a new release is one place;
 * each action is a few lines calling the runtime.
 */
export function register(program: Command, ctx: CliContext, hooks: SandboxCliHooks = {}): Command {
  const sb = program.command('sandbox').alias('sb').description('create and manage sandboxes')

  const create = sb
    .command('create')
    .description('create a sandbox and run a command in it (no command: an interactive login shell)')
    .option('--name <name>', 'sandbox name (DNS-1123 label, at most 63 characters); generated when absent')
    .option('--from <image>', 'image to run (default: the podshell sandbox image)')
    .option('--workdir <dir>', 'host directory mounted at the same path and used as the working directory')
    .option('--mount <spec>', 'SRC[:DST][:ro|rw] bind mount (DST defaults to SRC); repeatable', collect, [])
    .option('--env <K=V>', 'environment variable for the agent; repeatable', collect, [])
    .option('--label <K=V>', 'label; repeatable', collect, [])
    .option('--provider <name>', 'attach a credential provider; repeatable', collect, [])
    .option('--credential-mode <mode>', 'placeholder (default: the agent holds placeholders, the gateway swaps the real value in on the provider endpoints) or env (real values as env vars)')
    .option('--policy <file>', 'OpenShell v1 policy (env OPENSHELL_SANDBOX_POLICY / PODSHELL_SANDBOX_POLICY); default: deny all egress')
    .option('--detach', 'create and return without attaching', false)
    .option('--no-keep', 'delete the sandbox after the command exits')
    .option('--tty', 'allocate a TTY (default: when stdin is a terminal)')
    .option('--no-tty', 'do not allocate a TTY')
    .option('--cpu <cpu>', 'CPU limit, e.g. 2 or 500m')
    .option('--memory <size>', 'memory limit, e.g. 4Gi')
    .option('--upload <LOCAL[:DEST]>', "copy a local file or tree in before the command runs (honours .gitignore; DEST default: the sandbox's home); repeatable", collect, [])
    .option('--no-git-ignore', 'with --upload: upload everything, .gitignore\'d files included')
    .option('--forward <[bind:]port>', 'forward a host port (loopback by default) to the same port inside, in the background, before the command runs')
    .option('--auto-providers', "create a missing provider that the command needs (e.g. `claude` → claude-code) from this shell's credentials")
    .option('--no-auto-providers', 'never create providers; a provider the command needs and that does not exist is skipped')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'yaml', 'json']))
    .addOption(editorOption('launch a remote editor (VS Code Remote-SSH / Cursor) once the sandbox is ready, instead of a shell; keeps the sandbox and installs the managed SSH config'))
    .argument('[command...]', 'command to run (after --)')
  hooks.extendCreate?.(create)
  create.action(async (command: string[], flags: CreateFlags) => {
    const format = flags.output ? parseOutputFormat(flags.output) : undefined
    const uploads = (flags.upload ?? []).map(parseUploadSpec)
    const forward = flags.forward !== undefined ? parseForwardSpec(flags.forward) : undefined
    if (forward && flags.keep === false) throw new PodshellError('--forward needs a kept sandbox', { hint: 'drop --no-keep', exitCode: 2, code: 'INVALID_INPUT' })
    // As OpenShell: --editor conflicts with --no-keep, --detach, -o and a trailing command; the editor opens once the sandbox is ready.
    if (flags.editor) {
      const clash = command.length ? 'a trailing command' : flags.keep === false ? '--no-keep' : flags.detach ? '--detach' : flags.output ? '-o/--output' : undefined
      if (clash) throw new PodshellError(`--editor cannot be combined with ${clash}`, { hint: command.length ? 'create the sandbox with --editor and no command, or run `podshell sandbox connect NAME --editor ...` once it is ready' : `drop ${clash}`, exitCode: 2, code: 'INVALID_INPUT' })
      editorBinary(ctx, flags.editor)
    }
    if (uploads.length && flags.keep === false) throw new PodshellError('--upload needs a kept sandbox', { hint: 'drop --no-keep (with --no-keep the command starts as the sandbox starts: there is no moment to copy files in)', exitCode: 2, code: 'INVALID_INPUT' })
    let opts = hooks.resolveCreate ? await hooks.resolveCreate(flags, command, ctx) : createOptionsFromFlags(flags, command, ctx)
    trace('options resolved')
    const { resolveAutoProviders } = await import('./auto-providers.js')
    opts = { ...opts, providers: await resolveAutoProviders(ctx, opts.providers, command, flags.autoProviders, { spec: flags.spec !== undefined }) }
    const rt = await openRuntime(ctx)
    await gcQuietly(rt, ctx)
    trace('gc done')
    // OpenShell prints `Created sandbox: NAME` on stdout before the command runs; clients (its e2e
    // harness, NemoClaw) read it from stdout+stderr. A foreground command's stdout is the
    // command's own (DevAIFlow pipes it), so there the header goes to stderr.
    const onReady = async (name: string) => {
      if (!format) {
        if (opts.detach) ctx.out.stdout(createdSandboxHeader(name))
        else ctx.out.note(createdSandboxHeader(name).trim())
      }
      // Uploads land before the command runs; a failure fails the create (which removes the sandbox).
      for (const u of uploads) await uploadOne(ctx, name, u.local, u.dest, flags.gitIgnore !== false, undefined, { checked: true })
      if (forward) {
        await startBackground(ctx, name, forward)
        ctx.out.note(`  ${OK} Forwarding port ${forward.port} to sandbox ${name} in the background\n`)
        ctx.out.note(`  Access at: ${accessUrl(forward)}`)
        ctx.out.note(`  Stop with: podshell forward stop ${forward.port} ${name}`)
      }
    }
    // --upload needs the sandbox running before the command: the command then runs as an exec.
    const res = await rt.create({ ...opts, onReady, ...(uploads.length ? { commandAsExec: true } : {}), ...(flags.editor ? { detach: true } : {}) })
    for (const w of res.warnings) ctx.out.note(`warning: ${w}`)
    if (flags.editor) return connectEditor(ctx, res.info.name, flags.editor)
    if (format) printInfos([res.info], format, ctx, true)
    if (res.exitCode !== undefined) process.exitCode = res.exitCode
  })

  sb.command('list')
    .description('list sandboxes')
    .option('--selector <k=v,..>', 'only sandboxes whose labels match all pairs')
    .option('--ids', 'print only ids')
    .option('--names', 'print only names')
    .option('--limit <n>', 'at most n sandboxes', '100')
    .option('--offset <n>', 'skip n sandboxes', '0')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'yaml', 'json']).default('table'))
    .action(async (flags: { selector?: string; ids?: boolean; names?: boolean; limit: string; offset: string; output: string }) => {
      const selector = parseSelector(flags.selector)
      const limit = check(nonNegInt, flags.limit, '--limit')
      const offset = check(nonNegInt, flags.offset, '--offset')
      const rt = await openRuntime(ctx)
      await gcQuietly(rt, ctx)
      const all = (await rt.list(selector)).slice(offset, offset + limit)
      const format = parseOutputFormat(flags.output)
      if ((flags.ids || flags.names) && format !== 'table') throw new PodshellError('--ids/--names and -o cannot be combined', { hint: 'give one of them', exitCode: 2, code: 'INVALID_INPUT' })
      if (flags.ids) return ctx.out.stdout(all.map(s => s.id + '\n').join(''))
      if (flags.names) return ctx.out.stdout(all.map(s => s.name + '\n').join(''))
      printInfos(all, format, ctx, false)
    })

  sb.command('get')
    .description('show one sandbox')
    .argument('[name]', 'sandbox name (default: last used)')
    .option('--policy-only', 'print only the policy in force (YAML, stdout only)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'yaml', 'json']))
    .action(async (name: string | undefined, flags: { output?: string; policyOnly?: boolean }) => {
      if (flags.policyOnly && flags.output) throw new PodshellError('--policy-only and -o cannot be combined', { hint: 'give one of them', exitCode: 2, code: 'INVALID_INPUT' })
      const n = resolveName(name, ctx)
      const rt = await openRuntime(ctx)
      const info = await rt.get(n)
      if (flags.policyOnly) {
        const got = policyInForce(ctx, n)
        if (!got) throw new PodshellError(`no active policy configured for sandbox ${n}`, { hint: `set one with \`podshell policy set ${n} --policy FILE\``, code: 'NOT_FOUND' })
        return ctx.out.stdout(got.yaml.endsWith('\n') ? got.yaml : got.yaml + '\n')
      }
      printInfos([info], parseOutputFormat(flags.output), ctx, true)
    })

  sb.command('delete')
    .description('delete sandboxes')
    .argument('[names...]', 'sandbox names')
    .option('--all', 'delete every sandbox')
    .action(async (names: string[], flags: { all?: boolean }) => {
      if (!flags.all && names.length === 0) throw new PodshellError('no sandbox named', { hint: 'give NAME... or --all', exitCode: 2, code: 'INVALID_INPUT' })
      if (flags.all && names.length) throw new PodshellError('give names or --all, not both', { exitCode: 2, code: 'INVALID_INPUT' })
      for (const n of names) check(sandboxName, n, 'sandbox name')
      const rt = await openRuntime(ctx)
      await gcQuietly(rt, ctx)
      const targets = flags.all ? (await rt.list()).map(s => s.name) : names
      if (flags.all && targets.length === 0) return ctx.out.stdout(noSandboxesToDeleteLine)
      // A sandbox's forwards end with it (OpenShell stops them first, and says so).
      for (const n of targets) for (const port of await stopSandboxForwards(ctx.dataDir, n)) ctx.out.note(`${OK} Stopped forward of port ${port} for sandbox ${n}`)
      for (const n of await rt.delete(targets)) ctx.out.stdout(deletedSandboxLine(n))
    })

  for (const verb of ['stop', 'start'] as const) {
    sb.command(verb)
      .description(verb === 'stop' ? 'stop a sandbox (waits for Stopped)' : 'start a stopped sandbox (waits for Ready)')
      .argument('[name]', 'sandbox name (default: last used)')
      .action(async (name: string | undefined) => {
        const n = resolveName(name, ctx)
        const rt = await openRuntime(ctx)
        if (verb === 'stop') for (const port of await stopSandboxForwards(ctx.dataDir, n)) ctx.out.note(`${OK} Stopped forward of port ${port} for sandbox ${n}`)
        const info = verb === 'stop' ? await rt.stop(n) : await rt.start(n)
        ctx.out.stdout(verb === 'stop' ? stoppedSandboxLine(info.name) : startedSandboxLine(info.name))
      })
  }
  sb.command('restart')
    .description('stop and start a sandbox (applies provider attach/detach)')
    .argument('[name]', 'sandbox name (default: last used)')
    .action(async (name: string | undefined) => {
      const n = resolveName(name, ctx)
      const rt = await openRuntime(ctx)
      const info = await rt.restart(n)
      ctx.out.stdout(stoppedSandboxLine(info.name) + startedSandboxLine(info.name))
    })

  sb.command('exec')
    .description('run a command in a sandbox; exits with its exit code')
    .option('-n, --name <name>', 'sandbox name (default: last used)')
    .option('--workdir <dir>', 'working directory inside')
    .option('--timeout <seconds>', 'kill the command after this many seconds (0 = none); exit 124', '0')
    .option('--tty', 'allocate a TTY (default: when stdin is a terminal)')
    .option('--no-tty', 'do not allocate a TTY')
    .option('--env <K=V>', 'environment variable; repeatable', collect, [])
    .option('--no-login-shell', "run the command directly, not through a login shell (podshell's exec always does)")
    .argument('<command...>', 'command (after --)')
    .action(async (command: string[], flags: { name?: string; workdir?: string; timeout: string; tty?: boolean; env: string[] }) => {
      const n = resolveName(flags.name, ctx)
      const env = Object.fromEntries(flags.env.map(e => parseKeyValue(e, '--env', envKey, envValue)))
      const timeoutSeconds = check(nonNegInt, flags.timeout, '--timeout')
      const rt = await openRuntime(ctx)
      process.exitCode = await rt.exec(n, command, { tty: flags.tty, workdir: flags.workdir, env, timeoutSeconds })
    })

  sb.command('connect')
    .description("attach to the sandbox's main process (a create command; without a terminal: its output, followed), else open a login shell")
    .argument('[name]', 'sandbox name (default: last used)')
    .addOption(editorOption())
    .action(async (name: string | undefined, flags: { editor?: EditorName }) => {
      const n = resolveName(name, ctx)
      if (flags.editor) return connectEditor(ctx, n, flags.editor)
      const rt = await openRuntime(ctx)
      process.exitCode = await rt.connect(n, { tty: Boolean(process.stdin.isTTY) })
    })

  const prov = sb.command('provider').description("a sandbox's credential providers")
  prov
    .command('list')
    .argument('[name]', 'sandbox name (default: last used)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'yaml', 'json']).default('table'))
    .action(async (name: string | undefined, flags: { output: string }) => {
      const n = resolveName(name, ctx)
      const rt = await openRuntime(ctx)
      await rt.get(n)
      const { current, desired } = rt.desiredProviders(n)
      const all = [...new Set([...current, ...desired])]
      const rows = all.map(p => ({
        name: p,
        state: current.includes(p) && desired.includes(p) ? 'attached' : current.includes(p) ? 'detached at restart' : 'attached at restart',
      }))
      const format = parseOutputFormat(flags.output)
      if (format !== 'table') return ctx.out.stdout(serialize(rows, format))
      ctx.out.stdout(table(['PROVIDER', 'STATE'], rows.map(r => [r.name, r.state])))
    })
  for (const verb of ['attach', 'detach'] as const) {
    prov
      .command(verb)
      .argument('<name>', 'sandbox name')
      .argument('<provider>', 'provider name')
      .action(async (name: string, provider: string) => {
        const n = check(sandboxName, name, 'sandbox name')
        const rt = await openRuntime(ctx)
        const { desired } = rt.desiredProviders(n)
        if (verb === 'attach') {
          const { requireProvider } = await import('../credentials/store.js')
          requireProvider(ctx.dataDir, provider)
          await rt.setDesiredProviders(n, [...desired, provider])
        } else {
          if (!desired.includes(provider)) throw new PodshellError(`provider ${provider} is not attached to ${n}`, { hint: `\`podshell sandbox provider list ${n}\` shows them`, code: 'NOT_FOUND' })
          await rt.setDesiredProviders(n, desired.filter(p => p !== provider))
        }
        ctx.out.stdout(`Provider '${provider}' ${verb}ed; takes effect when the sandbox restarts (\`podshell sandbox restart ${n}\`)\n`)
      })
  }

  registerTransfer(sb, ctx)
  registerSsh(program, sb, ctx, resolveName)
  hooks.extendGroup?.(sb)
  return sb
}

export interface CreateFlags {
  name?: string
  from?: string
  workdir?: string
  mount: string[]
  env: string[]
  label: string[]
  provider: string[]
  credentialMode?: string
  policy?: string
  detach: boolean
  keep: boolean
  tty?: boolean
  cpu?: string
  memory?: string
  output?: string
  autoProviders?: boolean
  upload?: string[]
  gitIgnore?: boolean
  forward?: string
  editor?: EditorName
  [more: string]: unknown
}

/** Extension points for areas that add flags (DevAIFlow spec, session types, providers). */
export interface SandboxCliHooks {
  extendCreate?: (cmd: Command) => void
  resolveCreate?: (flags: CreateFlags, command: string[], ctx: CliContext) => Promise<CreateOptions>
  extendGroup?: (sb: Command) => void
}

/** `podshell gc`: removes what interrupted commands left behind. */
export function registerGc(program: Command, ctx: CliContext): void {
  program
    .command('gc')
    .description('remove half-made sandboxes, orphaned state and secrets left by interrupted commands')
    .action(async () => {
      const rt = await openRuntime(ctx)
      const removed = await rt.gc({ full: true })
      ctx.out.stdout(removed.length ? removed.map(r => `removed ${r}\n`).join('') : 'nothing to remove\n')
    })
}

/** Plain flags → CreateOptions (no session type, no spec). */
export function createOptionsFromFlags(flags: CreateFlags, command: string[], ctx: CliContext): CreateOptions {
  const policyFile = flags.policy ?? ctx.env.PODSHELL_SANDBOX_POLICY ?? ctx.env.OPENSHELL_SANDBOX_POLICY
  const policyText = policyFile !== undefined ? readPolicyFile(policyFile) : undefined
  return {
    name: flags.name,
    image: flags.from,
    workdir: flags.workdir,
    mounts: flags.mount.map(parseMount),
    env: Object.fromEntries(flags.env.map(e => parseKeyValue(e, '--env', envKey, envValue))),
    labels: Object.fromEntries(flags.label.map(l => parseKeyValue(l, '--label', labelKey, labelValue))),
    detach: flags.detach,
    keep: flags.keep,
    tty: flags.tty,
    cpu: flags.cpu,
    memory: flags.memory,
    command,
    policyFile,
    policyText,
    providers: flags.provider,
    ...(credentialMode(flags.credentialMode) === 'env' ? { credentialMode: 'env' as const } : {}),
  }
}

function credentialMode(v: unknown): 'placeholder' | 'env' {
  if (v === undefined || v === 'placeholder') return 'placeholder'
  if (v === 'env') return 'env'
  throw new PodshellError(`--credential-mode ${typeof v === 'string' ? v : '?'} is not a mode`, { hint: 'use --credential-mode placeholder or --credential-mode env', exitCode: 2, code: 'INVALID_INPUT' })
}

/** Reads a policy file for create. Fails closed: a policy that cannot be read never means "no policy". */
export function readPolicyFile(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    throw new PodshellError(`policy file not found: ${file}`, { hint: 'pass an existing file with --policy', exitCode: 2, code: 'INVALID_INPUT' })
  }
}

/** SRC[:DST][:ro|rw] — paths cannot contain ':' (validated), so the split is unambiguous. */
export function parseMount(spec: string): MountSpec {
  const parts = spec.split(':')
  let mode: 'ro' | 'rw' = 'rw'
  if (parts.length > 1 && (parts[parts.length - 1] === 'ro' || parts[parts.length - 1] === 'rw')) mode = parts.pop() as 'ro' | 'rw'
  if (parts.length < 1 || parts.length > 2 || !parts[0]) {
    throw new PodshellError(`invalid --mount ${JSON.stringify(spec.slice(0, 80))}`, { hint: 'use SRC[:DST][:ro|rw] with absolute paths', exitCode: 2, code: 'INVALID_INPUT' })
  }
  return { source: parts[0], target: parts[1] ?? parts[0], mode }
}

function parseSelector(sel: string | undefined): Record<string, string> {
  if (!sel) return {}
  return Object.fromEntries(sel.split(',').filter(Boolean).map(p => parseKeyValue(p, '--selector', labelKey, labelValue)))
}

/** A name-taking command with no name uses the last-used sandbox and says so on stderr. */
export function resolveName(name: string | undefined, ctx: CliContext): string {
  if (name !== undefined) return check(sandboxName, name, 'sandbox name')
  const last = readLastUsed(ctx.dataDir)
  if (!last) throw new PodshellError('no sandbox named and none used before', { hint: 'give a sandbox name', exitCode: 2, code: 'INVALID_INPUT' })
  ctx.out.note(`→ Using sandbox '${last}' (last used)`)
  return last
}

/**
 * The policy in force: the global policy when one is set (it replaces the sandbox's own, as in
 * OpenShell: src/policy/global.ts), else the sandbox's latest loaded revision, else its latest stored.
 */
function policyInForce(ctx: CliContext, name: string): { version: number; policy: Policy; yaml: string; source: 'global' | 'sandbox' } | undefined {
  const g = activeGlobalPolicy(ctx.dataDir)
  if (g) return { version: g.version, policy: g.policy, yaml: policyToYaml(g.policy), source: 'global' }
  const store = new PolicyStore(sandboxPolicyDir(ctx.dataDir, name))
  const rev = store.current() ?? store.latest()
  const got = rev && store.get(rev.version)
  return got ? { version: got.revision.version, policy: got.policy, yaml: got.yaml, source: 'sandbox' } : undefined
}

function policyVersionInForce(ctx: CliContext, name: string): number | null {
  try {
    const store = new PolicyStore(sandboxPolicyDir(ctx.dataDir, name))
    return (store.current() ?? store.latest())?.version ?? null
  } catch {
    return null
  }
}

function printInfos(infos: SandboxInfo[], format: 'table' | 'yaml' | 'json', ctx: CliContext, single: boolean): void {
  if (single && infos[0]) {
    const i = infos[0]
    let rev: ReturnType<typeof policyInForce>
    try {
      rev = policyInForce(ctx, i.name)
    } catch {
      rev = undefined // a damaged policy store does not hide the sandbox; `policy get` names the problem
    }
    if (format === 'table') return ctx.out.stdout(sandboxGetBlock(i, rev))
    return ctx.out.stdout(serialize(sandboxDetailJson(i, rev), format))
  }
  if (format === 'table') return ctx.out.stdout(infos.length ? sandboxListTable(infos) : noSandboxesLine)
  ctx.out.stdout(serialize(infos.map(i => sandboxJson(i, policyVersionInForce(ctx, i.name))), format))
}

const nonNegInt = z.string().regex(/^\d{1,9}$/, 'must be a non-negative integer').transform(Number)

/**
 * gc before state-changing commands; its failure must not block the command the user asked for
 * (it says what it could not clean, once, on stderr).
 */
async function gcQuietly(rt: { gc(): Promise<string[]> }, ctx: CliContext): Promise<void> {
  try {
    await rt.gc()
  } catch (e) {
    ctx.out.note(`warning: cleanup of interrupted sandboxes failed: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`)
  }
}
