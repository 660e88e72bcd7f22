/**
 * The host side of TLS inspection (runs in the CLI, as the user, where the host's trust store and
 * the config are visible): the CA exists with the user's name, the upstream roots file is current,
 * and a sandbox gets its bundle.
 *
 * Called before the gateway container starts (src/gateway/lifecycle.ts) and by `sandbox create`
 * (src/sandbox/deps.ts). Loaded with a dynamic import by those callers: the X.509 library costs
 * module-loading time that other commands should not pay.
 */
import { hostname, userInfo } from 'node:os'
import type { Env } from '../config/paths.js'
import { loadEffectiveConfig } from '../config/enterprise.js'
import { ensureCa, type Ca } from './ca.js'
import { prepareSandboxTrust, trustSources, writeUpstreamRoots, type SandboxTrust } from './trust.js'

export function caIdentity(): { user: string; host: string } {
  let user: string
  try {
    user = userInfo().username
  } catch {
    user = String(process.getuid?.() ?? 'user')
  }
  return { user, host: hostname() }
}

/** CA (created on first use, named after the user) + upstream roots file. Returns both. */
export async function prepareHostTrust(data: string, env: Env): Promise<{ ca: Ca; roots: string }> {
  const extra = loadEffectiveConfig(env).effective.tlsExtraCaFiles
  const roots = writeUpstreamRoots(data, trustSources(env, extra))
  const ca = await ensureCa(data, caIdentity())
  return { ca, roots }
}

/** Everything a new sandbox needs for TLS: its bundle files written, and its mounts and variables. */
export async function prepareSandboxTls(data: string, name: string, env: Env): Promise<SandboxTrust> {
  const { ca, roots } = await prepareHostTrust(data, env)
  return prepareSandboxTrust(data, name, ca, roots)
}
