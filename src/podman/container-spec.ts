import { existsSync } from 'node:fs'
import { envArgs } from './env-args.js'

/**
 * The typed description of every container and pod podshell makes (agent, bridge, gateway, pod),
 * and the ONLY place that turns it into podman arguments. Modules outside src/podman/ build these
 * values; they never write podman flags themselves.
 *
 * Hardening is not a field: every podshell container gets the same baseline (HARDENING below) and
 * a caller cannot switch it off. A newer release that adds a flag there changes every container it
 * creates, including an agent container re-created by `sandbox restart` from its stored
 * description (src/sandbox/agent-store.ts), because no argv is ever stored.
 */

export interface BindMount {
  type: 'bind'
  source: string
  target: string
  readOnly?: boolean
}

export interface TmpfsMount {
  type: 'tmpfs'
  target: string
  readOnly?: boolean
  /** Octal permission bits of the tmpfs root, e.g. '1777'. */
  mode?: string
  /** Upper bound in bytes: writes past it fail with ENOSPC inside (tmpfs is RAM-backed). */
  sizeBytes?: number
  /** Owned by the container's user (podman `U=true`). */
  chownToUser?: boolean
  /**
   * Do not copy what the image (or an outer bind mount) has at the target into the tmpfs. Always
   * wanted for masks: podman would otherwise COPY the hidden content in (measured: it does).
   */
  noCopyUp?: boolean
}

export type Mount = BindMount | TmpfsMount

/** Environment of a container: names, and where each value comes from. */
export interface EnvEntry {
  name: string
  /**
   * - `config`: a non-secret value that is part of the sandbox's description (stored);
   * - `caller`: copied from the creating process's environment at create (env_pass); the value is
   *   handed to podman through its own environment and never stored anywhere by podshell.
   */
  from: 'config' | 'caller'
}

export interface Resources {
  /** CPU cores (podman --cpus). Only where the host enforces it (cgroup v2). */
  cpus?: number
  /** Bytes (podman --memory). Only where the host enforces it (cgroup v2). */
  memoryBytes?: string
  /** Process count in the container's pids cgroup (podman --pids-limit). cgroup v2 only. */
  pids?: number
  /**
   * RLIMIT_NPROC for the container's processes (`--ulimit nproc=N:N`). Works without cgroups: on
   * Linux >= 5.14 it is counted per (user namespace, uid), and every sandbox pod has its own user
   * namespace (keep-id), so it bounds this sandbox's processes of the user's uid (measured: see
   * docs/architecture.md "Limits").
   */
  nproc?: number
}

export interface ContainerSpec {
  name: string
  image: string
  command: readonly string[]
  pod?: string
  /**
   * A standalone container's network arguments (`--network …`), from src/podman/network.ts: the
   * gateway's user-mode helper. Sandbox containers join their pod's network instead.
   */
  networkArgs?: readonly string[]
  labels: Record<string, string>
  /** uid:gid the processes run as. */
  user?: { uid: number; gid: number }
  /** A tiny init as PID 1 (reaps zombies, forwards signals). */
  init?: boolean
  workdir?: string
  /** Seccomp profile path; absent: podman's default profile. */
  seccompProfile?: string
  /**
   * The writable scratch dirs of a read-only root (/tmp, /run, /var/tmp), each a tmpfs with its
   * own size bound. podman's `--read-only-tmpfs` would mount them unbounded (half the host's RAM
   * each: 12 GiB measured), so podshell mounts them itself.
   */
  scratch?: { tmp: number; run: number; varTmp: number }
  mounts: Mount[]
  env: EnvEntry[]
  /**
   * Podman secret references (`--secret` arguments) made by src/credentials/inject.ts. Opaque here:
   * the names of podman secrets, never values.
   */
  secretArgs?: readonly string[]
  resources?: Resources
  /** Largest container log (k8s-file driver; rotated by conmon). */
  logMaxBytes?: number
  restart?: 'always'
  stopTimeoutSeconds?: number
  /** Podman copies the caller's proxy variables in unless told not to (--http-proxy defaults to true). */
  inheritProxyEnv?: boolean
}

export interface PodSpec {
  name: string
  infraName: string
  /**
   * The pod's hostname would default to its name, "podshell.NAME": over the kernel's 64-byte
   * hostname limit for a 63-character sandbox name (sethostname fails). The sandbox name is a DNS
   * label of at most 63 characters, a valid hostname on its own.
   */
  hostname: string
  labels: Record<string, string>
  /** Only loopback: a process that ignores the proxy variables has no route anywhere. */
  network: 'none'
  /** The agent runs as the user's uid, so files it writes in mounted repos stay the user's. */
  userns: 'keep-id'
}

/** Rendered `podman run|create` arguments and the environment podman itself must get. */
export interface Rendered {
  args: string[]
  /** Values for `--env NAME` entries: podman's own environment, never argv (see env-args.ts). */
  podmanEnv: Record<string, string>
}

/**
 * The hardening every podshell container gets, written once:
 *  - no capabilities at all (the agent is the user's uid; the bridge and gateway need none);
 *  - no privilege gain through setuid binaries or file capabilities;
 *  - a read-only root filesystem (writes go to bounded tmpfs scratch dirs and explicit mounts);
 *  - no core dumps: a crashing agent must not write its memory (credentials) to disk.
 */
export const HARDENING: readonly string[] = [
  '--cap-drop', 'ALL',
  '--security-opt', 'no-new-privileges',
  '--read-only',
  '--ulimit', 'core=0:0',
]

let selinuxEnabled: boolean | undefined
/**
 * SELinux hosts (Fedora/RHEL) deny containers access to unlabelled bind mounts. Every podshell bind
 * mount gets the SHARED label (`relabel=shared`, i.e. `:z`), never the private one (`:Z`):
 *  - a repo mounted into two sandboxes of one multi-repo session stays usable by both, and host
 *    processes keep access;
 *  - the data dir is not the gateway's alone: each bridge mounts its `sandboxes/<name>/egress` and
 *    each agent its `sandboxes/<name>/home`. A private MCS label applied recursively by the gateway
 *    would lock every bridge and agent out of those dirs, and theirs would lock the gateway out.
 * Sandboxes stay separated by what they mount (only their own subdirectories), not by MCS
 * categories. Off SELinux (Debian, Ubuntu) no relabel option is passed.
 */
function relabel(): string {
  selinuxEnabled ??= existsSync('/sys/fs/selinux/enforce')
  return selinuxEnabled ? ',relabel=shared' : ''
}

export function mountArg(m: Mount): string {
  if (m.type === 'bind') return `type=bind,source=${m.source},destination=${m.target}${m.readOnly ? ',ro=true' : ''}${relabel()}`
  const opts = [`type=tmpfs`, `destination=${m.target}`]
  if (m.readOnly) opts.push('ro=true')
  if (m.mode) opts.push(`tmpfs-mode=${m.mode}`)
  if (m.sizeBytes !== undefined) opts.push(`tmpfs-size=${m.sizeBytes}`)
  if (m.chownToUser) opts.push('U=true')
  if (m.noCopyUp) opts.push('notmpcopyup')
  return opts.join(',')
}

/** Labels as flags. */
function labelArgs(labels: Record<string, string>): string[] {
  return Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`])
}

export interface RenderContext {
  /** Values for the spec's env names (config and caller values alike); a missing name is skipped. */
  values: Readonly<Record<string, string>>
  /** Whether this host enforces cgroup limits for rootless containers (cgroup v2). */
  cgroupLimits: boolean
  /**
   * Mounts that hide the host's network interfaces in a pod container's /sys (Podman 5 hands the
   * pod's containers the host's /sys: src/podman/sysfs.ts). A host fact, never stored in a spec.
   */
  podSysfsMasks?: readonly string[]
}

/**
 * The flags of `podman run`/`podman create` for a container, without the verb, image and command
 * (see runArgs). cgroup limits are passed only where they are enforced; where not, the caller
 * (src/sandbox/resources.ts) has already refused an explicit request and left the default out.
 */
export function containerFlags(c: ContainerSpec, ctx: RenderContext): Rendered {
  const env: Record<string, string> = {}
  for (const e of c.env) {
    const v = ctx.values[e.name]
    if (v !== undefined) env[e.name] = v
  }
  const byName = envArgs(env)
  const r = c.resources ?? {}
  const scratch = c.scratch
  const args = [
    ...(c.pod ? ['--pod', c.pod] : []),
    ...(c.networkArgs ?? []),
    '--name', c.name,
    ...labelArgs(c.labels),
    ...(c.inheritProxyEnv === false ? ['--http-proxy=false'] : []),
    ...(c.user ? ['--user', `${c.user.uid}:${c.user.gid}`] : []),
    ...(c.init ? ['--init'] : []),
    ...(c.restart ? ['--restart', c.restart] : []),
    ...(c.stopTimeoutSeconds !== undefined ? ['--stop-timeout', String(c.stopTimeoutSeconds)] : []),
    ...HARDENING,
    ...(c.seccompProfile ? ['--security-opt', `seccomp=${c.seccompProfile}`] : []),
    ...(scratch
      ? [
          // The scratch dirs of the read-only root, each bounded (see ContainerSpec.scratch).
          // exec stays allowed on /tmp (tools unpack and run helpers there), like podman's own.
          '--read-only-tmpfs=false',
          '--tmpfs', `/tmp:rw,nosuid,nodev,exec,mode=1777,size=${scratch.tmp}`,
          '--tmpfs', `/var/tmp:rw,nosuid,nodev,exec,mode=1777,size=${scratch.varTmp}`,
          '--tmpfs', `/run:rw,nosuid,nodev,mode=0755,size=${scratch.run}`,
        ]
      : []),
    ...(r.nproc !== undefined ? ['--ulimit', `nproc=${r.nproc}:${r.nproc}`] : []),
    ...(ctx.cgroupLimits && r.pids !== undefined ? ['--pids-limit', String(r.pids)] : []),
    ...(ctx.cgroupLimits && r.cpus !== undefined ? ['--cpus', String(r.cpus)] : []),
    ...(ctx.cgroupLimits && r.memoryBytes !== undefined ? ['--memory', r.memoryBytes] : []),
    ...(c.logMaxBytes !== undefined ? ['--log-driver', 'k8s-file', '--log-opt', `max-size=${c.logMaxBytes}`] : []),
    ...c.mounts.flatMap(m => ['--mount', mountArg(m)]),
    ...(c.pod ? ctx.podSysfsMasks ?? [] : []),
    ...(c.workdir ? ['--workdir', c.workdir] : []),
    // Values by name through podman's environment, not argv (see env-args.ts).
    ...byName.args,
    ...(c.secretArgs ?? []),
  ]
  return { args, podmanEnv: byName.podmanEnv }
}

/**
 * `podman run -d …` / `podman create …` / foreground `podman run --rm -i …` for a container;
 * `create-main`: `podman create -i [-t]`, a main process started attached later (startAttachedArgs).
 */
export function runArgs(
  c: ContainerSpec,
  ctx: RenderContext,
  mode: { verb: 'run-detached' } | { verb: 'create' } | { verb: 'create-main'; tty: boolean } | { verb: 'run-foreground'; tty: boolean; command?: readonly string[] },
): Rendered {
  const f = containerFlags(c, ctx)
  const head =
    mode.verb === 'run-detached' ? ['run', '-d']
    : mode.verb === 'create' ? ['create']
    : mode.verb === 'create-main' ? ['create', '-i', ...(mode.tty ? ['-t'] : [])]
    : ['run', '--rm', '-i', ...(mode.tty ? ['-t'] : []), '--sig-proxy=true']
  const command = mode.verb === 'run-foreground' && mode.command ? mode.command : c.command
  return { args: [...head, ...f.args, c.image, ...command], podmanEnv: f.podmanEnv }
}

/** Starts a created container in the foreground: stdin, stdout and signals are its; exits with its code. */
export function startAttachedArgs(container: string): string[] {
  return ['start', '--attach', '--interactive', '--sig-proxy=true', container]
}

/**
 * `sandbox connect` to a sandbox whose main process is a command: a terminal attaches to it
 * (detach with ctrl-p ctrl-q leaves it running); otherwise its output so far and from now on
 * (`logs --follow`, ended by the process exiting or by the caller, never killing it).
 */
export function attachMainArgs(container: string, tty: boolean): string[] {
  return tty ? ['attach', '--sig-proxy=false', container] : ['logs', '--follow', container]
}

/** `podman pod create …` */
export function podCreateArgs(p: PodSpec): string[] {
  return ['pod', 'create', '--name', p.name, '--infra-name', p.infraName, '--hostname', p.hostname, '--network', p.network, '--userns', p.userns, ...labelArgs(p.labels)]
}
