import { execa } from 'execa'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, constants } from 'node:fs'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { cacheDir, type Env } from '../config/paths.js'
import { isPodshellError } from '../errors.js'
import { findOnPath, Podman, type RuntimeChoice } from '../podman/podman.js'
import { findHelper } from '../podman/network.js'
import { imageStatus, type ImageStatus } from '../images/build.js'
import { packageRoot } from '../images/context.js'

/**
 * Everything `podshell doctor` looks at, gathered in parallel. Facts only: what they mean (ok,
 * warn, fail, and the fix) is decided by checks.ts from this value, so the evaluation is tested
 * against captured facts of real hosts.
 */
export interface SubIdRange {
  start: number
  count: number
}

export interface DoctorFacts {
  /** process.platform: on macOS/Windows podman runs in a VM and host-side checks do not apply. */
  platform: NodeJS.Platform
  uid: number
  user: string
  binaries: { podman?: string; docker?: string; openshell?: string; pasta?: string; slirp4netns?: string; getsubids?: string }
  podman:
    | { ok: true; path: string; version: string; runtime: RuntimeChoice }
    | { ok: false; error: string; code: string }
  /** Subset of `podman info --format json`; undefined when podman is unusable. */
  info?: {
    rootless: boolean
    graphDriver: string
    graphRoot: string
    cgroupVersion: string
    cgroupManager: string
    cgroupControllers: string[]
    seccompEnabled: boolean
    selinuxEnabled: boolean
    networkBackend?: string
    slirp4netns?: string
    pasta?: string
  }
  infoError?: string
  subuid: SubIdRange[]
  subgid: SubIdRange[]
  /** Where the ranges came from: the files, or getsubids (NSS: sssd, LDAP). */
  subidSource: 'files' | 'getsubids' | 'none'
  tun: { exists: boolean; readWrite: boolean; error?: string }
  xdgRuntimeDir: { value?: string; exists: boolean; ownedByUser: boolean; mode?: number }
  cgroup: {
    /** From the filesystem: v2 (unified), hybrid (v1 + unified mount) or v1. */
    layout: 'v2' | 'hybrid' | 'v1'
    /** Controllers delegated to the user's systemd instance (cgroup v2), when readable. */
    delegated?: string[]
    /** What happened when a container was started with --memory/--cpus/--pids-limit. */
    limits?: { outcome: 'applied' | 'ignored' | 'failed'; detail: string }
  }
  seccompProfile: { path: string; ok: boolean; error?: string }
  images?: ImageStatus[]
  imagesError?: string
}

export async function gatherFacts(env: Env, opts: { podmanBin?: string } = {}): Promise<DoctorFacts> {
  const uid = process.getuid?.() ?? -1
  const user = safeUser()
  const bin = (name: string) => findOnPath(name, env)
  const binaries: DoctorFacts['binaries'] = {}
  for (const n of ['podman', 'docker', 'openshell', 'pasta', 'slirp4netns', 'getsubids'] as const) {
    // Network helpers also where podman looks for them (helper_binaries_dir), not only on PATH.
    const p = n === 'pasta' || n === 'slirp4netns' ? findHelper(n, env) : bin(n)
    if (p) binaries[n] = p
  }

  // The runtime probe is the Podman class's own (fresh, so the doctor reports this host as it is
  // now; it also refreshes the cache every other command reads).
  let podman: Podman | undefined
  let podmanFact: DoctorFacts['podman']
  try {
    podman = await Podman.detect({ env, noCache: true, ...(opts.podmanBin ? { bin: opts.podmanBin } : {}) })
    podmanFact = { ok: true, path: podman.bin, version: podman.version, runtime: podman.runtime }
  } catch (e) {
    podmanFact = isPodshellError(e)
      ? { ok: false, error: e.oneLine(), code: e.code }
      : { ok: false, error: e instanceof Error ? e.message : String(e), code: 'ERROR' }
  }

  const [info, subids, limits, images] = await Promise.all([
    podman ? podmanInfo(podman) : Promise.resolve({ error: 'podman is not usable' }),
    subIds(user, uid, binaries.getsubids),
    podman ? limitsTrial(podman, env) : Promise.resolve(undefined),
    podman ? imageStatus(podman, env).then(s => ({ s }), (e: unknown) => ({ error: e instanceof Error ? e.message : String(e) })) : Promise.resolve(undefined),
  ])

  const platform = process.platform
  const infoValue = 'value' in info ? info.value : undefined
  // Off Linux the cgroups are the podman machine's: podman info knows them, the local fs does not.
  const layout = platform === 'linux' ? cgroupLayout() : infoValue?.cgroupVersion === 'v2' ? 'v2' : 'v1'
  const facts: DoctorFacts = {
    platform,
    uid,
    user,
    binaries,
    podman: podmanFact,
    ...('value' in info ? { info: info.value } : { infoError: info.error }),
    subuid: subids.subuid,
    subgid: subids.subgid,
    subidSource: subids.source,
    tun: tunFact(),
    xdgRuntimeDir: xdgFact(env, uid),
    cgroup: { layout, ...(platform === 'linux' ? delegated(uid) : {}), ...(limits ? { limits } : {}) },
    seccompProfile: seccompFact(env),
  }
  if (images && 's' in images) facts.images = images.s
  else if (images && 'error' in images) facts.imagesError = images.error
  return facts
}

function safeUser(): string {
  try {
    return userInfo().username
  } catch {
    return String(process.getuid?.() ?? 'unknown')
  }
}

interface InfoJson {
  host?: {
    security?: { rootless?: boolean; seccompEnabled?: boolean; selinuxEnabled?: boolean }
    cgroupVersion?: string
    cgroupManager?: string
    cgroupControllers?: string[] | null
    networkBackend?: string
    slirp4netns?: { executable?: string } | null
    pasta?: { executable?: string } | null
  }
  store?: { graphDriverName?: string; graphRoot?: string }
}

async function podmanInfo(podman: Podman): Promise<{ value: NonNullable<DoctorFacts['info']> } | { error: string }> {
  try {
    const j = await podman.json<InfoJson>(['info', '--format', 'json'], { timeoutMs: 60_000 })
    const h = j.host ?? {}
    return {
      value: {
        rootless: h.security?.rootless ?? false,
        graphDriver: j.store?.graphDriverName ?? 'unknown',
        graphRoot: j.store?.graphRoot ?? '',
        cgroupVersion: h.cgroupVersion ?? 'unknown',
        cgroupManager: h.cgroupManager ?? 'unknown',
        cgroupControllers: h.cgroupControllers ?? [],
        seccompEnabled: h.security?.seccompEnabled ?? false,
        selinuxEnabled: h.security?.selinuxEnabled ?? false,
        ...(h.networkBackend ? { networkBackend: h.networkBackend } : {}),
        ...(h.slirp4netns?.executable ? { slirp4netns: h.slirp4netns.executable } : {}),
        ...(h.pasta?.executable ? { pasta: h.pasta.executable } : {}),
      },
    }
  } catch (e) {
    return { error: isPodshellError(e) ? e.oneLine() : String(e) }
  }
}

/** /etc/subuid lines are `name:start:count` or `uid:start:count`. Pure. */
export function parseSubIds(content: string, user: string, uid: number): SubIdRange[] {
  const out: SubIdRange[] = []
  for (const line of content.split('\n')) {
    const [who, start, count] = line.trim().split(':')
    if (!who || start === undefined || count === undefined) continue
    if (who !== user && who !== String(uid)) continue
    const s = Number(start)
    const c = Number(count)
    if (Number.isInteger(s) && Number.isInteger(c) && c > 0) out.push({ start: s, count: c })
  }
  return out
}

/** `getsubids` prints `0: user start count` per range. Pure. */
export function parseGetSubIds(stdout: string): SubIdRange[] {
  const out: SubIdRange[] = []
  for (const line of stdout.split('\n')) {
    const m = /^\d+:\s+\S+\s+(\d+)\s+(\d+)\s*$/.exec(line.trim())
    if (m) out.push({ start: Number(m[1]), count: Number(m[2]) })
  }
  return out
}

async function subIds(user: string, uid: number, getsubids?: string): Promise<{ subuid: SubIdRange[]; subgid: SubIdRange[]; source: DoctorFacts['subidSource'] }> {
  const read = (p: string) => {
    try {
      return readFileSync(p, 'utf8')
    } catch {
      return ''
    }
  }
  const subuid = parseSubIds(read('/etc/subuid'), user, uid)
  const subgid = parseSubIds(read('/etc/subgid'), user, uid)
  if (subuid.length && subgid.length) return { subuid, subgid, source: 'files' }
  // Ranges may come from NSS (sssd, LDAP, FreeIPA) instead of the files: getsubids asks the same
  // source newuidmap uses.
  if (getsubids) {
    const [u, g] = await Promise.all([
      execa(getsubids, [user], { reject: false, stdin: 'ignore', timeout: 5000 }),
      execa(getsubids, ['-g', user], { reject: false, stdin: 'ignore', timeout: 5000 }),
    ])
    const su = parseGetSubIds(String(u.stdout))
    const sg = parseGetSubIds(String(g.stdout))
    if (su.length || sg.length) return { subuid: su, subgid: sg, source: 'getsubids' }
  }
  return { subuid, subgid, source: subuid.length || subgid.length ? 'files' : 'none' }
}

function tunFact(): DoctorFacts['tun'] {
  const p = '/dev/net/tun'
  if (!existsSync(p)) return { exists: false, readWrite: false }
  try {
    // Opening is all slirp4netns/pasta need; no device is created without TUNSETIFF.
    closeSync(openSync(p, constants.O_RDWR))
    return { exists: true, readWrite: true }
  } catch (e) {
    return { exists: true, readWrite: false, error: (e as NodeJS.ErrnoException).code ?? String(e) }
  }
}

function xdgFact(env: Env, uid: number): DoctorFacts['xdgRuntimeDir'] {
  const value = env.XDG_RUNTIME_DIR
  if (!value) return { exists: false, ownedByUser: false }
  try {
    const st = statSync(value)
    return { value, exists: st.isDirectory(), ownedByUser: st.uid === uid, mode: st.mode & 0o777 }
  } catch {
    return { value, exists: false, ownedByUser: false }
  }
}

function cgroupLayout(): DoctorFacts['cgroup']['layout'] {
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'v2'
  if (existsSync('/sys/fs/cgroup/unified/cgroup.controllers')) return 'hybrid'
  return 'v1'
}

/** Controllers systemd delegates to the user's manager (where rootless containers' cgroups live). */
function delegated(uid: number): { delegated?: string[] } {
  const p = `/sys/fs/cgroup/user.slice/user-${uid}.slice/user@${uid}.service/cgroup.controllers`
  try {
    return { delegated: readFileSync(p, 'utf8').trim().split(/\s+/).filter(Boolean) }
  } catch {
    return {}
  }
}

/**
 * Starts a container with resource limits and sees what podman does with them: on cgroup v1 or
 * hybrid hosts rootless podman prints "Resource limits are not supported and ignored"; on v2
 * without delegated controllers the runtime fails. The container has an empty rootfs and a command
 * that does not exist (exit 127 means it got as far as exec), like the runtime probe.
 */
async function limitsTrial(podman: Podman, env: Env): Promise<NonNullable<DoctorFacts['cgroup']['limits']>> {
  const rootfs = join(cacheDir(env), 'doctor-rootfs')
  try {
    mkdirSync(rootfs, { recursive: true, mode: 0o700 })
  } catch (e) {
    return { outcome: 'failed', detail: `cannot create ${rootfs}: ${(e as Error).message}` }
  }
  try {
    const r = await podman.run(
      ['run', '--rm', '--network', 'none', '--memory', '64m', '--cpus', '0.5', '--pids-limit', '64', '--rootfs', rootfs, '/podshell-limits-probe'],
      { reject: false, timeoutMs: 30_000 },
    )
    const lines = r.stderr.split('\n').map(l => l.trim()).filter(Boolean)
    const ignored = lines.find(l => /limits are not supported and ignored|ignored on cgroups? v1/i.test(l))
    if (ignored) return { outcome: 'ignored', detail: ignored.replace(/^time=\S+ level=\w+ msg=/, '').replace(/^"|"$/g, '') }
    if (r.exitCode === 127 || r.exitCode === 0) return { outcome: 'applied', detail: 'a container started with --memory 64m --cpus 0.5 --pids-limit 64' }
    const err = lines.filter(l => !/level=warning/.test(l)).pop() ?? `exit ${r.exitCode}`
    return { outcome: 'failed', detail: err.replace(/^Error:\s*/, '') }
  } catch (e) {
    return { outcome: 'failed', detail: isPodshellError(e) ? e.message : String(e) }
  }
}

function seccompFact(env: Env): DoctorFacts['seccompProfile'] {
  let path = env.PODSHELL_SECCOMP_PROFILE ?? ''
  try {
    path ||= join(packageRoot(), 'seccomp', 'default.json')
    const j = JSON.parse(readFileSync(path, 'utf8')) as { defaultAction?: string; syscalls?: unknown[] }
    if (typeof j.defaultAction !== 'string' || !Array.isArray(j.syscalls)) return { path, ok: false, error: 'not a seccomp profile' }
    return { path, ok: true }
  } catch (e) {
    return { path, ok: false, error: (e as Error).message }
  }
}
