import { randomUUID } from 'node:crypto'
import { existsSync, realpathSync, statSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PodshellError } from '../errors.js'
import type { Podman } from '../podman/podman.js'
import { loadEffectiveConfig, type LoadOptions } from '../config/enterprise.js'
import { sandboxHomeDir, homeDir, type Env } from '../config/paths.js'
import { SANDBOX_IMAGE } from '../images/names.js'
import { check, sandboxName, objectName, hostPath, envKey, envValue, labelKey, labelValue, normalizePath } from '../util/validate.js'
import type { CreateOptions, MountSpec } from './types.js'
import { podName, L } from './naming.js'
import { generateName } from './petname.js'
import { selfCreatorId } from '../util/process.js'
import { stateDirExists, listStateDirs } from './state.js'
import { parseCpu, parseMemory, pidsLimit, sandboxLimits, type SandboxLimits } from './resources.js'
import { fsError } from '../util/fs.js'
import { homeMountpoints } from './spec.js'
import { mapFilesystemPolicy } from './fs-policy.js'
import { pinMounts } from './mount-guard.js'
import { allowedSockets, seccompForSockets, socketMasks } from './sockets.js'
import { parsePolicyText } from '../policy/parse.js'

import type { SandboxInfo } from './sandbox-info.js'

/**
 * Planning a create: CreateOptions (already secured, see spec.ts secureCreateOptions) → a Plan,
 * everything podman will be given, validated before any podman call (names, image reference, env,
 * labels, limits, mounts, seccomp profile, filesystem_policy mounts). No side effects but the
 * home mount points, which prepareHomeMountpoints makes once the state dir is claimed.
 */

export interface Plan {
  name: string
  id: string
  created: string
  image: string
  mounts: MountSpec[]
  workdir: string | null
  tty: boolean
  cpus: number | undefined
  memory: string | undefined
  /** Explicit pids cgroup limit (CreateOptions.pids, else config resources.pids). */
  pids: number | undefined
  limits: SandboxLimits
  seccomp: string
  needImages: ('sandbox' | 'gateway')[]
  masks: string[]
  /** Host sockets hidden under an empty file (audited at create). */
  maskedSockets: string[]
  tmpfsDirs: string[]
  home: string
  uid: number
  gid: number
  command: string[]
}

/** What planning needs from the runtime. */
export interface PlanContext {
  podman: Podman
  dataDir: string
  env: Env
  seccompProfile: string
  configLoad: LoadOptions | undefined
}

/** Environment (both kinds), labels and provider names: valid, and no variable podshell sets. */
function checkStrings(o: CreateOptions): void {
  for (const [k, v] of [...Object.entries(o.env), ...Object.entries(o.passEnv ?? {})]) {
    check(envKey, k, 'environment variable name')
    check(envValue, v, `value of environment variable ${k}`)
    if (RESERVED_ENV.has(k.toUpperCase())) {
      throw new PodshellError(`--env ${k} is set by podshell`, { hint: 'the proxy and sandbox variables cannot be overridden', exitCode: 2, code: 'INVALID_INPUT' })
    }
  }
  for (const [k, v] of Object.entries(o.labels)) {
    check(labelKey, k, 'label key')
    check(labelValue, v, `label ${k}`)
  }
  for (const p of o.providers) check(objectName, p, 'provider name')
}

/** Validates and resolves CreateOptions into everything podman will be given. No side effects. */
export async function planCreate(o: CreateOptions, rc: PlanContext): Promise<Plan> {
  const name = o.name !== undefined ? check(sandboxName, o.name, 'sandbox name', 'e.g. --name my-box') : undefined
  const image = o.image ?? SANDBOX_IMAGE
  checkImageRef(image)
  checkStrings(o)
  const cpus = o.cpu !== undefined ? parseCpu(o.cpu) : undefined
  const memory = o.memory !== undefined ? parseMemory(o.memory) : undefined
  // Limits: the configured bounds (validated here, before any podman call) and the pids cgroup,
  // which an explicit request needs the host to enforce (refused otherwise, like cpu/memory).
  const eff = loadEffectiveConfig(rc.env, rc.configLoad).effective
  const limits = sandboxLimits(eff.resources)
  const pids = o.pids ?? eff.resources.pids
  pidsLimit(pids, rc.podman.rootlessLimits)
  if ((cpus !== undefined || memory !== undefined) && !rc.podman.rootlessLimits) {
    throw new PodshellError('--cpu/--memory need cgroup v2: rootless Podman ignores limits on this cgroup v1/hybrid host', {
      hint: 'boot with systemd.unified_cgroup_hierarchy=1, or omit the limits (`podshell doctor` shows the cgroup check)',
      exitCode: 2,
      code: 'LIMITS_UNSUPPORTED',
    })
  }
  const workdir = o.workdir !== undefined ? normalizePath(check(hostPath, o.workdir, '--workdir')) : null
  // filesystem_policy → mounts (see fs-policy.ts). The policy is validated again when stored.
  const fsPolicy = o.policyText !== undefined ? parsePolicyText(o.policyText, o.policyFile ?? 'policy').policy.filesystem_policy : undefined
  const pre = mapFilesystemPolicy(fsPolicy, { workdir, workdirMode: o.workdirMode, mounts: [], home: homeDir(rc.env), writable: WRITABLE_IN_IMAGE })
  const mounts = resolveMounts({ ...o, workdirMode: pre.workdirMode })
  const fsMap = mapFilesystemPolicy(fsPolicy, { workdir, workdirMode: pre.workdirMode, mounts, home: homeDir(rc.env), writable: WRITABLE_IN_IMAGE })
  for (const m of fsMap.mounts) mounts.push(m)
  const tty = o.tty ?? Boolean(process.stdin.isTTY && process.stdout.isTTY)
  for (const a of o.command) {
    if (a.includes('\0')) throw new PodshellError('command arguments must not contain NUL', { exitCode: 2, code: 'INVALID_INPUT' })
  }
  const allow = allowedSockets((o.allowSockets ?? []).map(p => check(hostPath, p, '--allow-socket')))
  // AF_UNIX is denied by the default profile (host sockets that appear after start); allowed
  // sockets need it (sockets.ts).
  const seccomp = seccompForSockets(o.seccompProfile ?? rc.seccompProfile, allow)
  if (!existsSync(seccomp)) {
    // Fails closed: a missing profile must stop the create, never run the agent unfiltered.
    throw new PodshellError(`seccomp profile not found: ${seccomp}`, { hint: 'reinstall podshell or pass an existing profile', code: 'SECCOMP_MISSING' })
  }
  const finalName = name ?? generateName(new Set(listStateDirs(rc.dataDir)))
  // Every sandbox has its state dir from the first step of create to the last of delete, so
  // the dir answers "is the name taken" without a podman call (claimStateDir makes it atomic).
  if (stateDirExists(rc.dataDir, finalName)) throw alreadyExists(finalName)
  const allMasks = (o.masks ?? []).map(m => normalizePath(check(hostPath, m, 'mask path')))
  // Host unix sockets found in the mounted trees: an empty read-only file on top (sockets.ts).
  const sockets = socketMasks(allMasks, allow, rc.dataDir)
  const masks = sockets.dirMasks
  mounts.push(...sockets.socketMounts)
  // Ancestors of protected mounts and masks bound onto themselves: they cannot be renamed away (mount-guard.ts).
  mounts.push(...pinMounts(mounts, masks))
  const tmpfsDirs = [...(o.tmpfsDirs ?? []), ...fsMap.tmpfsDirs].map(m => normalizePath(check(hostPath, m, 'tmpfs dir')))
  const needImages: ('sandbox' | 'gateway')[] = image === SANDBOX_IMAGE ? ['sandbox', 'gateway'] : ['gateway']
  return {
    name: finalName,
    image,
    mounts,
    workdir,
    tty,
    cpus,
    memory,
    pids,
    limits,
    seccomp,
    needImages,
    masks,
    maskedSockets: sockets.masked,
    tmpfsDirs,
    home: homeDir(rc.env),
    uid: process.getuid?.() ?? 1000,
    gid: process.getgid?.() ?? 1000,
    command: o.command.length ? o.command : LOGIN_SHELL,
    id: randomUUID(),
    created: new Date().toISOString(),
  }
}

/**
 * Workdir and --mount entries, each at the same absolute path inside (DevAIFlow finds Claude's
 * conversation files by the encoded cwd). Sources must exist; symlinks are resolved on the host
 * so a mount cannot be redirected after validation, and the target keeps the path the user gave.
 */
function resolveMounts(o: CreateOptions): MountSpec[] {
  const out: MountSpec[] = []
  const add = (m: MountSpec, what: string) => {
    const source = normalizePath(check(hostPath, m.source, `${what} source`))
    const target = normalizePath(check(hostPath, m.target, `${what} target`))
    if (!existsSync(source)) {
      throw new PodshellError(`${what} ${source} does not exist`, { hint: 'create it or fix the path', exitCode: 2, code: 'INVALID_INPUT' })
    }
    if (target === '/' || RESERVED_TARGETS.some(r => target === r || target.startsWith(r + '/'))) {
      throw new PodshellError(`${what} target ${target} is reserved`, { hint: 'mount somewhere else (podshell keeps /proc, /sys, /dev, /run/podshell for itself)', exitCode: 2, code: 'INVALID_INPUT' })
    }
    const real = realpathSync(source)
    const existing = out.find(x => x.target === target)
    if (existing) {
      if (existing.source !== real || existing.mode !== m.mode) {
        throw new PodshellError(`${target} is mounted twice with different sources or modes`, { hint: 'give each mount target once', exitCode: 2, code: 'INVALID_INPUT' })
      }
      return
    }
    out.push({ source: real, target, mode: m.mode })
  }
  if (o.workdir !== undefined) {
    const wd = check(hostPath, o.workdir, '--workdir')
    if (existsSync(wd) && !statSync(wd).isDirectory()) throw new PodshellError(`--workdir ${wd} is not a directory`, { exitCode: 2, code: 'INVALID_INPUT' })
    add({ source: wd, target: normalizePath(wd), mode: o.workdirMode ?? 'rw' }, '--workdir')
  }
  for (const m of o.mounts) add(m, '--mount')
  return out
}

export const LOGIN_SHELL = ['/bin/sh', '-c', 'if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi']
/** Variables podshell sets; a user cannot point the agent at another proxy or fake its identity. */
const RESERVED_ENV = new Set(['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'NODE_USE_ENV_PROXY', 'PODSHELL_SANDBOX', 'PODSHELL_EXEC_ID', 'HOME'])
/** Writable without a mount: podman's --read-only-tmpfs dirs and the /tmp tmpfs. */
const WRITABLE_IN_IMAGE = ['/tmp', '/var/tmp', '/run']
const RESERVED_TARGETS = ['/proc', '/sys', '/dev', '/run/podshell', '/etc/hosts', '/etc/resolv.conf', '/etc/hostname']

export function alreadyExists(name: string): PodshellError {
  return new PodshellError(`sandbox ${name} already exists`, { hint: `choose another --name or run \`podshell sandbox delete ${name}\``, code: 'ALREADY_EXISTS' })
}

/** Image references: registry/name[:tag][@digest]; never something podman could read as a flag. */
export function checkImageRef(ref: string): void {
  if (!/^[a-z0-9][a-z0-9._\-/:@]{0,254}$/i.test(ref) || ref.includes('..') || ref.includes('//')) {
    throw new PodshellError(`invalid image reference ${JSON.stringify(ref.slice(0, 80))}`, {
      hint: 'use a reference like localhost/name:tag or registry.example.com/name@sha256:…',
      exitCode: 2,
      code: 'INVALID_INPUT',
    })
  }
}

/**
 * Mount points below the agent's home must exist, owned by the user, before podman runs: a mount
 * point that the OCI runtime creates inside a bind mount is owned by a subordinate uid on the host
 * (measured), which the agent cannot write beside and the user cannot delete without
 * `podman unshare`.
 */
export function prepareHomeMountpoints(dataDir: string, p: Plan): void {
  const home = sandboxHomeDir(dataDir, p.name)
  const mp = homeMountpoints(p.home, { workdir: p.workdir ?? undefined, mounts: p.mounts, masks: p.masks, tmpfsDirs: p.tmpfsDirs })
  try {
    for (const d of mp.dirs) mkdirSync(join(home, d), { recursive: true, mode: 0o755 })
    for (const f of mp.files) if (!existsSync(join(home, f))) writeFileSync(join(home, f), '', { mode: 0o644 })
  } catch (e) {
    throw fsError(`cannot prepare the home of sandbox ${p.name}`, e)
  }
}

/** The pod's labels: podshell's own (the source of truth for list/get) and the user's. */
export function podLabels(p: Plan, o: CreateOptions): Record<string, string> {
  const labels: Record<string, string> = {
    [L.sandbox]: p.name,
    [L.id]: p.id,
    [L.created]: p.created,
    [L.image]: p.image,
    [L.workdir]: p.workdir ?? '',
    [L.mounts]: JSON.stringify(p.mounts),
    [L.providers]: o.providers.join(','),
    [L.sessionType]: o.sessionType ?? '',
    [L.creator]: selfCreatorId(),
    [L.keep]: String(o.keep),
  }
  for (const [k, v] of Object.entries(o.labels)) labels[L.userPrefix + k] = v
  return labels
}

/** What create reports for a sandbox that is already gone (--no-keep). */
export function planInfo(p: Plan, o: CreateOptions): SandboxInfo {
  return {
    id: p.id,
    name: p.name,
    labels: { ...o.labels },
    created_at: p.created,
    phase: 'Provisioning',
    image: p.image,
    workdir: p.workdir,
    mounts: p.mounts,
    providers: o.providers,
    session_type: o.sessionType ?? null,
    egress: 'unknown',
    exit_code: null,
    main: o.command.length ? 'command' : 'idle',
    pod: podName(p.name),
  }
}
