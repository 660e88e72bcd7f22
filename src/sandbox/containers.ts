import type { SandboxTrustArgs } from './runtime.js'
import { sandboxEgressDir, sandboxHomeDir, BRIDGE_EGRESS_MOUNT, BRIDGE_SOCKET, PROXY_PORT } from '../config/paths.js'
import { GATEWAY_IMAGE } from '../images/names.js'
import type { ContainerSpec, EnvEntry, Mount, PodSpec } from '../podman/container-spec.js'
import { EXECD_BIN, EXECD_MOUNT } from './exec-server.js'
import { isIdleMain, type AgentDescription } from './description.js'
import { agentContainer, bridgeContainer, infraContainer, L, podName } from './naming.js'
import type { SandboxLimits } from './resources.js'

/**
 * A sandbox's pod and containers as typed specs (src/podman/container-spec.ts renders them). What
 * is decided here is the sandbox's shape (mounts, environment, user, limits); how podman spells it,
 * and the hardening every container gets, is decided there.
 */

export const PROXY_URL = `http://127.0.0.1:${PROXY_PORT}`

/** The proxy variables (both cases) and the sandbox's own; set by the runtime, never by a user. */
export function runtimeEnv(name: string, home: string): Record<string, string> {
  return {
    HOME: home,
    PODSHELL_SANDBOX: name,
    HTTP_PROXY: PROXY_URL,
    HTTPS_PROXY: PROXY_URL,
    ALL_PROXY: PROXY_URL,
    http_proxy: PROXY_URL,
    https_proxy: PROXY_URL,
    all_proxy: PROXY_URL,
    NO_PROXY: 'localhost,127.0.0.1,::1',
    no_proxy: 'localhost,127.0.0.1,::1',
    NODE_USE_ENV_PROXY: '1',
  }
}

export function podSpec(name: string, labels: Record<string, string>): PodSpec {
  return { name: podName(name), infraName: infraContainer(name), hostname: name, labels, network: 'none', userns: 'keep-id' }
}

export interface AgentRenderInput {
  dataDir: string
  limits: SandboxLimits
  /** The pids cgroup limit where the host enforces it (src/sandbox/resources.ts pidsLimit). */
  pids: number | undefined
  /** Podman `--secret` arguments for the attached providers (src/credentials/inject.ts). */
  secretArgs: readonly string[]
  /** The sandbox's CA bundle: read-only mounts over the image's bundle paths, and CA variables. */
  trust?: SandboxTrustArgs
  /** The exec server (src/sandbox/exec-server.ts): its host dir and the static binary, when built. */
  execServer?: { dir: string; binary: string } | undefined
}

/**
 * The agent container of a sandbox. Values: configuration values from the description plus the
 * runtime's own; caller (env_pass) values are supplied at render time by the caller (never stored).
 */
export function agentSpec(d: AgentDescription, r: AgentRenderInput): { spec: ContainerSpec; values: Record<string, string> } {
  // CA bundle variables first: a --env of the same name (the user's own bundle) wins.
  const values: Record<string, string> = { ...(r.trust?.env ?? {}), ...d.env, ...runtimeEnv(d.name, d.home) }
  if (d.term) values.TERM = d.term
  const env: EnvEntry[] = [
    ...Object.keys(values).map(name => ({ name, from: 'config' as const })),
    ...d.callerEnv.filter(n => !(n in values)).map(name => ({ name, from: 'caller' as const })),
  ]
  const mounts: Mount[] = [
    { type: 'bind', source: sandboxHomeDir(r.dataDir, d.name), target: d.home },
    ...d.mounts.map(m => ({ type: 'bind' as const, source: m.source, target: m.target, readOnly: m.mode === 'ro' })),
    // Writable scratch parents (e.g. a CLAUDE_CONFIG_DIR outside $HOME), owned by the agent's uid.
    ...d.tmpfsDirs.map(t => ({ type: 'tmpfs' as const, target: t, mode: '0700', chownToUser: true, noCopyUp: true, sizeBytes: r.limits.tmpBytes })),
    // Masks: an empty read-only tmpfs on top of each hidden path (`.ai-read-deny` trees). Podman
    // orders mounts parent-first, so a mask inside a bind mount lands on top of it.
    ...d.masks.map(t => ({ type: 'tmpfs' as const, target: t, readOnly: true, mode: '000', noCopyUp: true, sizeBytes: 4096 })),
    // The trust bundle, read-only over the image's system bundle paths (never the CA key).
    ...(r.trust?.mounts ?? []).map(m => ({ type: 'bind' as const, source: m.source, target: m.target, readOnly: true })),
    // The exec server: its FIFO dir (read-write: the server makes its FIFOs there) and its binary
    // (read-only, from the host: nothing needed in the image).
    ...(r.execServer
      ? [
          { type: 'bind' as const, source: r.execServer.dir, target: EXECD_MOUNT },
          { type: 'bind' as const, source: r.execServer.binary, target: EXECD_BIN, readOnly: true },
        ]
      : []),
  ]
  const spec: ContainerSpec = {
    name: agentContainer(d.name),
    image: d.image,
    command: d.main,
    pod: podName(d.name),
    labels: { [L.sandbox]: d.name, [L.role]: 'agent', [L.main]: isIdleMain(d.main) ? 'idle' : 'command' },
    // Podman would copy the caller's proxy variables in: the sandbox environment is an allowlist,
    // and its proxy is the bridge.
    inheritProxyEnv: false,
    // The user's own uid:gid, whatever USER the image names (keep-id alone keeps the image's USER).
    user: { uid: d.uid, gid: d.gid },
    init: true,
    seccompProfile: d.seccomp,
    scratch: { tmp: r.limits.tmpBytes, varTmp: r.limits.varTmpBytes, run: r.limits.runBytes },
    mounts,
    env,
    secretArgs: r.secretArgs,
    resources: { nproc: r.limits.nproc, pids: r.pids, cpus: d.resources.cpus, memoryBytes: d.resources.memory },
    logMaxBytes: r.limits.logMaxBytes,
    workdir: d.workdir ?? d.home,
  }
  return { spec, values }
}

/**
 * The bridge: relays 127.0.0.1:3128 to the sandbox's gateway socket. Only the bridge sees the
 * socket dir; the agent cannot reach the gateway but through the bridge's TCP port, and so only
 * with this sandbox's policy.
 */
export function bridgeSpec(name: string, dataDir: string, uid: number, gid: number, limits: SandboxLimits, cgroupPids: boolean): ContainerSpec {
  return {
    name: bridgeContainer(name),
    image: GATEWAY_IMAGE,
    command: ['socat', '-b', '262144', `TCP-LISTEN:${PROXY_PORT},bind=127.0.0.1,fork,reuseaddr`, `UNIX-CONNECT:${BRIDGE_SOCKET}`],
    pod: podName(name),
    labels: { [L.sandbox]: name, [L.role]: 'bridge' },
    user: { uid, gid },
    mounts: [{ type: 'bind', source: sandboxEgressDir(dataDir, name), target: BRIDGE_EGRESS_MOUNT }],
    env: [],
    resources: { pids: cgroupPids ? 256 : undefined },
    logMaxBytes: limits.logMaxBytes,
  }
}
