import { homedir } from 'node:os'
import { join, isAbsolute } from 'node:path'

/**
 * Where podshell keeps its files. Every function takes the environment explicitly so a test (or a
 * second podshell instance in one process) can point elsewhere: there is no process-global state.
 *
 * Layout of the data dir:
 *   sandboxes/<name>/            per-sandbox state (the gateway mounts the data dir)
 *     policy/                    policy revisions (rev-N.yaml + revisions.json)
 *     egress/proxy.sock          the sandbox's gateway socket; ONLY this dir is mounted into the bridge
 *     audit/                     OCSF JSONL + OpenShell shorthand logs written by the gateway
 *     home/                      the agent's writable home
 *   gateway/control.sock         control channel of the gateway (reload, ping)
 *   providers/<name>.json        provider metadata (never values: those live in Podman secrets)
 *   global/policy/               the global policy revisions (`policy set --global`); the LOADED one is in force
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
export const sandboxPolicyDir = (data: string, name: string) => join(sandboxDir(data, name), 'policy')
export const sandboxEgressDir = (data: string, name: string) => join(sandboxDir(data, name), 'egress')
export const sandboxSocket = (data: string, name: string) => join(sandboxEgressDir(data, name), 'proxy.sock')
export const sandboxAuditDir = (data: string, name: string) => join(sandboxDir(data, name), 'audit')
export const sandboxHomeDir = (data: string, name: string) => join(sandboxDir(data, name), 'home')
export const gatewayDir = (data: string) => join(data, 'gateway')
export const gatewayControlSocket = (data: string) => join(data, 'gateway', 'control.sock')
export const providersDir = (data: string) => join(data, 'providers')
export const lastUsedFile = (data: string) => join(data, 'last-used')

/** Where the bridge sees the sandbox's egress dir, and the socket in it. */
export const BRIDGE_EGRESS_MOUNT = '/run/podshell/egress'
export const BRIDGE_SOCKET = '/run/podshell/egress/proxy.sock'
/** Where the gateway sees podshell's data dir. */
export const GATEWAY_DATA_MOUNT = '/var/lib/podshell'
/** The loopback port the bridge listens on inside every sandbox pod. */
export const PROXY_PORT = 3128
/** The user-wide (global) policy layer: a policy store like a sandbox's (`policy set --global`). */
export const globalPolicyDir = (data: string) => join(data, 'global', 'policy')
