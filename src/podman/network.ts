import { accessSync, constants, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Env } from '../config/paths.js'
import { compareVersion, findOnPath } from './podman.js'

/**
 * The gateway container's network: the one rule for which user-mode network helper it gets, used by
 * the gateway's `podman run` and reported by `podshell doctor`. (Sandboxes themselves always run
 * with `--network none`; only the gateway dials out.)
 *
 * - Podman 4 (Debian 12, RHEL 8/9 up to 9.3): its rootless default, slirp4netns. No flag is passed,
 *   so the argv is what it always was.
 * - Podman 5 (Fedora, RHEL 9.4+, Ubuntu 24.10+, Debian 13): its default is pasta, which by default
 *   gives the container a COPY of the host's address. The host's own addresses then name the
 *   container itself: a service on this machine (a LAN-address mirror, a local model server, the
 *   test host) answers "connection refused" to the gateway, where it worked with slirp4netns.
 *   So the gateway gets pasta with an address of its own, slirp4netns's layout (10.0.2.100/24 via
 *   10.0.2.2): every destination, the host's addresses included, is then reached through pasta's
 *   sockets on the host, as with slirp4netns. Podman still adds `--no-map-gw`, so 10.0.2.2 is NOT
 *   the host's loopback (slirp4netns's allow_host_loopback=false): a policy cannot reach services
 *   bound to the host's 127.0.0.1 through it. Which destinations are allowed at all is the
 *   gateway's decision (policy and always-blocked addresses), not the helper's.
 * - Podman 5 without pasta but with slirp4netns: slirp4netns, asked for by name.
 */
export type GatewayHelper = 'pasta' | 'slirp4netns'

export interface GatewayNetwork {
  /** The helper the gateway container runs with; undefined when neither is installed. */
  helper?: GatewayHelper
  /** `podman run` arguments (before the image); empty means podman's default. */
  args: string[]
  /**
   * Environment of the podman process that starts the gateway (`run` and `start`): podman starts
   * the helper with its own environment, and conmon (which restarts a container) keeps it too.
   */
  env: Record<string, string>
  /** One line for doctor. */
  reason: string
}

/**
 * slirp4netns (libslirp) allocates two socket buffers per TCP connection and keeps a connection for
 * ~10 s after it closed when the upstream closed first (TIME_WAIT, every `Connection: close`
 * response): ~1,000 connections at 100/s. With glibc's default malloc those buffers come from the
 * heap once the first one is freed (the dynamic mmap threshold rises), so the heap pages they
 * touched stay resident: ~320 KiB per lingering connection, 322 MB at 100 connections/s
 * (bench/slirp-memory.mjs, 2026-12-04). A fixed mmap threshold keeps them in their own mappings,
 * returned to the system when the connection goes: ~20 KiB per lingering connection, 23 MB at the
 * same rate. pasta (Podman 5) keeps no per-connection buffers in user space: nothing to set.
 */
export const SLIRP4NETNS_ENV: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '65536' }

/** pasta's address options: slirp4netns's layout, so the host's own addresses are not the container's. */
export const PASTA_GATEWAY_OPTIONS = ['-a', '10.0.2.100', '-n', '24', '-g', '10.0.2.2'] as const

/** Which helpers are installed, as podman would find them. */
export interface HelperPresence {
  pasta: boolean
  slirp4netns: boolean
}

/** The rule (pure): podman's version and the installed helpers decide. */
export function pickGatewayNetwork(podmanVersion: string, have: HelperPresence): GatewayNetwork {
  const v5 = compareVersion(podmanVersion, [5, 0]) >= 0
  if (v5 && have.pasta) {
    return {
      helper: 'pasta',
      args: ['--network', `pasta:${PASTA_GATEWAY_OPTIONS.join(',')}`],
      env: {},
      reason: 'pasta (podman 5 default) with an address of its own, 10.0.2.100/24, so the host is reachable as with slirp4netns',
    }
  }
  if (have.slirp4netns) {
    return v5
      ? { helper: 'slirp4netns', args: ['--network', 'slirp4netns'], env: { ...SLIRP4NETNS_ENV }, reason: 'slirp4netns (pasta, podman 5\'s default, is not installed)' }
      : { helper: 'slirp4netns', args: [], env: { ...SLIRP4NETNS_ENV }, reason: 'slirp4netns (podman 4 default)' }
  }
  if (have.pasta) {
    // Podman 4.4+ knows pasta; 4.3 (Debian 12) does not ("network not found"): only ask by name on 5.
    return { args: [], env: {}, reason: `podman ${podmanVersion} defaults to slirp4netns, which is not installed` }
  }
  return { args: [], env: {}, reason: 'neither pasta nor slirp4netns is installed' }
}

/**
 * Where podman looks for its helpers: `helper_binaries_dir` (containers.conf defaults) and then PATH.
 * A distribution may put pasta only in /usr/libexec/podman.
 */
const HELPER_DIRS = ['/usr/local/libexec/podman', '/usr/local/lib/podman', '/usr/libexec/podman', '/usr/lib/podman']

export function findHelper(name: GatewayHelper, env: Env): string | undefined {
  for (const dir of HELPER_DIRS) {
    const p = join(dir, name)
    try {
      accessSync(p, constants.X_OK)
      if (statSync(p).isFile()) return p
    } catch {
      // not here
    }
  }
  return findOnPath(name, env)
}

/** The gateway's network on this host (podman's version from Podman.detect, helpers from disk). */
export function gatewayNetwork(podmanVersion: string, env: Env): GatewayNetwork {
  return pickGatewayNetwork(podmanVersion, { pasta: !!findHelper('pasta', env), slirp4netns: !!findHelper('slirp4netns', env) })
}
