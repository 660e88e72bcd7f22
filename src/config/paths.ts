import { homedir } from 'node:os'
import { join, isAbsolute } from 'node:path'

/**
 * Where podshell keeps its files. Every function takes the environment explicitly so a test (or a
 * second podshell instance in one process) can point elsewhere: there is no process-global state.
 *
 * Layout of the data dir:
 *   sandboxes/<name>/            per-sandbox state the gateway never sees
 *     home/                      the agent's writable home
 *     agent.json, watch/, …      the sandbox's description, the watcher's baseline
 *   gateway/                     the gateway's view: the ONLY part of the data dir its container
 *                                mounts (it parses untrusted traffic from every sandbox, so it must
 *                                not reach homes, baselines, quarantine or provider metadata)
 *     control.sock               control channel of the gateway (reload, ping)
 *     sandboxes/<name>/
 *       policy/                  policy revisions (rev-N.yaml + revisions.json)
 *       egress/proxy.sock        the sandbox's gateway socket; ONLY this dir is mounted into the bridge
 *       audit/                   OCSF JSONL + OpenShell shorthand logs written by the gateway
 *       providers.json           attached providers (names, types, hosts; never values)
 *       tls/                     the sandbox's trust bundle (mounted read-only into the agent)
 *     global/policy/             the global policy revisions (`policy set --global`); the LOADED
 *                                one is in force for every sandbox
 *   providers/<name>.json        provider metadata (never values: those live in Podman secrets)
 *   quarantine/<name>/           what the watcher moved aside
 *   last-used                    name of the last-used sandbox
 */
export interface Env {
  readonly [key: string]: string | undefined
}

export function dataDir(env: Env = process.env): string {
  if (env.PODSHELL_HOME && isAbsolute(env.PODSHELL_HOME)) return env.PODSHELL_HOME
  const xdg = env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : join(homeDir(env), '.local', 'share')
  return join(xdg, 'podshell')
}

export function cacheDir(env: Env = process.env): string {
  const xdg = env.XDG_CACHE_HOME && isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : join(homeDir(env), '.cache')
  return join(xdg, 'podshell')
}

export function configDir(env: Env = process.env): string {
  const xdg = env.XDG_CONFIG_HOME && isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : join(homeDir(env), '.config')
  return join(xdg, 'podshell')
}

export function homeDir(env: Env = process.env): string {
  return env.HOME && isAbsolute(env.HOME) ? env.HOME : homedir()
}

export const sandboxesDir = (data: string) => join(data, 'sandboxes')
export const sandboxDir = (data: string, name: string) => join(data, 'sandboxes', name)
export const gatewayDir = (data: string) => join(data, 'gateway')
/** The gateway's per-sandbox view (policy, egress socket, audit, providers.json). */
export const gatewaySandboxesDir = (data: string) => join(gatewayDir(data), 'sandboxes')
export const gatewaySandboxDir = (data: string, name: string) => join(gatewaySandboxesDir(data), name)
export const sandboxPolicyDir = (data: string, name: string) => join(gatewaySandboxDir(data, name), 'policy')
export const sandboxEgressDir = (data: string, name: string) => join(gatewaySandboxDir(data, name), 'egress')
export const sandboxSocket = (data: string, name: string) => join(sandboxEgressDir(data, name), 'proxy.sock')
export const sandboxAuditDir = (data: string, name: string) => join(gatewaySandboxDir(data, name), 'audit')
export const sandboxProvidersFile = (data: string, name: string) => join(gatewaySandboxDir(data, name), 'providers.json')
export const sandboxHomeDir = (data: string, name: string) => join(sandboxDir(data, name), 'home')
/** What moved into the gateway's view (layout 2); an older data dir is migrated (src/gateway/layout.ts). */
export const GATEWAY_VIEW_ENTRIES = ['policy', 'egress', 'audit', 'providers.json', 'tls'] as const
export const gatewayControlSocket = (data: string) => join(data, 'gateway', 'control.sock')
export const providersDir = (data: string) => join(data, 'providers')
/** One line per `--no-keep` teardown that gave up (src/cli/teardown.ts); gc finishes those sandboxes. */
export const teardownLogFile = (data: string) => join(data, 'teardown.log')
export const lastUsedFile = (data: string) => join(data, 'last-used')

/** Where the bridge sees the sandbox's egress dir, and the socket in it. */
export const BRIDGE_EGRESS_MOUNT = '/run/podshell/egress'
export const BRIDGE_SOCKET = '/run/podshell/egress/proxy.sock'
/**
 * The data-dir path the gateway process computes its paths from. Only `<data>/gateway` is mounted
 * (at `${GATEWAY_DATA_MOUNT}/gateway`): every path of the gateway's view resolves inside it.
 */
export const GATEWAY_DATA_MOUNT = '/var/lib/podshell'
/** The loopback port the bridge listens on inside every sandbox pod. */
export const PROXY_PORT = 3128
/** The user-wide (global) policy layer: a policy store like a sandbox's (`policy set --global`). */
export const globalPolicyDir = (data: string) => join(gatewayDir(data), 'global', 'policy')
