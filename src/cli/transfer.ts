import { Command } from 'commander'
import { lstatSync } from 'node:fs'
import { z } from 'zod'
import { PodshellError } from '../errors.js'
import { check, sandboxName } from '../util/validate.js'
import { planUpload, streamUpload, uploadTarget, DEFAULT_LIMITS, type TransferLimits } from '../transfer/upload.js'
import { download } from '../transfer/download.js'
import type { CliContext } from './context.js'
import { openRuntime } from './runtime.js'
import { OK } from './output.js'

/**
 * `sandbox upload <name> <local> [dest]`, `sandbox download <name> <path> [dest]` and the
 * `--upload LOCAL[:DEST]` of `sandbox create`: parse, check the sandbox runs, call src/transfer/,
 * print OpenShell's lines (`Uploading … -> sandbox:…`, `✓ Upload complete`, on stderr).
 */
export function register(sb: Command, ctx: CliContext): void {
  sb.command('upload')
    .description("copy a local file or tree into a sandbox (honours .gitignore; default destination: the sandbox's home)")
    .argument('<name>', 'sandbox name')
    .argument('<local>', 'local file or directory')
    .argument('[dest]', "destination in the sandbox (default: its home; relative = under its home)")
    .option('--no-git-ignore', 'upload everything, .gitignore\'d files and .git included')
    .option('--max-files <n>', 'refuse a tree with more files and directories than this', String(DEFAULT_LIMITS.maxFiles))
    .option('--max-bytes <n>', 'refuse a tree larger than this many bytes', String(DEFAULT_LIMITS.maxBytes))
    .action(async (name: string, local: string, dest: string | undefined, flags: { gitIgnore: boolean; maxFiles: string; maxBytes: string }) => {
      const n = check(sandboxName, name, 'sandbox name')
      await uploadOne(ctx, n, local, dest, flags.gitIgnore, limits(flags))
    })

  sb.command('download')
    .description('copy a file or directory out of a sandbox; the archive is checked as hostile (no absolute paths, .., symlink tricks, devices, setuid; limits)')
    .argument('<name>', 'sandbox name')
    .argument('<sandbox_path>', 'path in the sandbox (relative = under its home)')
    .argument('[dest]', 'local destination (default: .)')
    .option('--force', 'overwrite existing local files')
    .option('--max-files <n>', 'refuse an archive with more entries than this', String(DEFAULT_LIMITS.maxFiles))
    .option('--max-bytes <n>', 'refuse an archive larger than this many bytes', String(DEFAULT_LIMITS.maxBytes))
    .action(async (name: string, sandboxPath: string, dest: string | undefined, flags: { force?: boolean; maxFiles: string; maxBytes: string }) => {
      const n = check(sandboxName, name, 'sandbox name')
      checkSandboxPath(sandboxPath)
      const rt = await openRuntime(ctx)
      await requireRunning(rt, n)
      const to = dest ?? '.'
      ctx.out.note(`Downloading sandbox:${sandboxPath} -> ${to}`)
      const r = await download(await ctx.podman(), n, sandboxPath, to, { ...limits(flags), force: Boolean(flags.force) })
      ctx.out.note(`${OK} Download complete (${r.files} entries, ${r.bytes} bytes -> ${r.target})`)
    })
}

/** `--upload LOCAL[:DEST]` of create: parsed before anything is made. */
export function parseUploadSpec(spec: string): { local: string; dest?: string } {
  const i = spec.indexOf(':')
  const local = i < 0 ? spec : spec.slice(0, i)
  const dest = i < 0 ? undefined : spec.slice(i + 1)
  if (!local || dest === '') throw new PodshellError(`invalid --upload ${JSON.stringify(spec.slice(0, 80))}`, { hint: 'use LOCAL[:DEST]', exitCode: 2, code: 'INVALID_INPUT' })
  try {
    lstatSync(local)
  } catch {
    throw new PodshellError(`local path does not exist: ${local}`, { hint: 'give an existing file or directory to --upload', exitCode: 2, code: 'INVALID_INPUT' })
  }
  if (dest !== undefined) checkSandboxPath(dest)
  return dest === undefined ? { local } : { local, dest }
}

export async function uploadOne(ctx: CliContext, n: string, local: string, dest: string | undefined, gitIgnore: boolean, lim: TransferLimits = DEFAULT_LIMITS, opts: { checked?: boolean } = {}): Promise<void> {
  if (dest !== undefined) checkSandboxPath(dest)
  let st
  try {
    st = lstatSync(local)
  } catch {
    throw new PodshellError(`local path does not exist: ${local}`, { hint: 'give an existing file or directory', exitCode: 2, code: 'INVALID_INPUT' })
  }
  const target = uploadTarget(local, dest, st.isDirectory())
  // Planned (and limits checked) before the sandbox is touched.
  const plan = planUpload(local, { gitIgnore, tarName: target.tarName, limits: lim })
  if (!opts.checked) await requireRunning(await openRuntime(ctx), n)
  ctx.out.note(`Uploading ${local} -> sandbox:${dest ?? '~'}`)
  if (plan.filteredEmpty) ctx.out.note(`\u26a0 .gitignore filtering excluded all files in ${local}; uploading unfiltered`)
  await streamUpload(await ctx.podman(), n, plan, target.dir)
  ctx.out.note(`${OK} Upload complete (${plan.entries.length} entries, ${plan.bytes} bytes)`)
}

async function requireRunning(rt: Awaited<ReturnType<typeof openRuntime>>, n: string): Promise<void> {
  const info = await rt.get(n)
  if (info.phase !== 'Ready') {
    throw new PodshellError(`sandbox ${n} is ${info.phase}`, { hint: `start it first: podshell sandbox start ${n}`, code: 'SANDBOX_NOT_RUNNING' })
  }
}

function checkSandboxPath(p: string): void {
  if (!p || p.includes('\0') || p.length > 4096 || /[\n\r]/.test(p)) {
    throw new PodshellError(`invalid sandbox path ${JSON.stringify(p.slice(0, 80))}`, { hint: 'give a path without NUL or newlines', exitCode: 2, code: 'INVALID_INPUT' })
  }
}

const count = z.string().regex(/^[1-9]\d{0,14}$/, 'must be a positive whole number').transform(Number)

function limits(flags: { maxFiles: string; maxBytes: string }): TransferLimits {
  return { maxFiles: check(count, flags.maxFiles, '--max-files'), maxBytes: check(count, flags.maxBytes, '--max-bytes') }
}
