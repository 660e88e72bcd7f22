/**
 * Starting, inspecting and stopping the per-user gateway container.
 *
 * `ensureGateway` is on the path of most podshell commands, so its fast path is one connect to the
 * control socket (~1 ms) and no podman call. Only when the gateway does not answer does it look at
 * the container and (re)create it.
 *
 * Failure model: the gateway down means every sandbox simply has no egress (the bridges connect to
 * a socket nobody serves; fail closed). The next podshell command brings it back. The proxy sockets
 * live in each sandbox's egress dir and the bridge mounts the DIRECTORY, not the socket file, so a
 * re-created socket is seen by running sandboxes without recreating them.
 *
 * Restart policy: `--restart=always`. Rootless Podman implements it in conmon for a container that
 * exits on its own (crash, OOM kill), which needs no systemd; after a reboot nothing starts the
 * container until the next podshell command calls ensureGateway (podman-restart.service would, but
 * podshell does not install units).
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { GATEWAY_IMAGE } from '../images/names.js'
import { dataDir as defaultDataDir, gatewayDir, gatewaySandboxesDir, sandboxesDir, GATEWAY_DATA_MOUNT, type Env } from '../config/paths.js'
import { GATEWAY_LAYOUT, migrateGatewayView } from './layout.js'
import { PodshellError } from '../errors.js'
import { mkdirp } from '../util/fs.js'
import { withLock } from '../util/lockfile.js'
import { hostPath, check } from '../util/validate.js'
import type { Podman } from '../podman/podman.js'
import { runArgs, type ContainerSpec } from '../podman/container-spec.js'
import { gatewayNetwork } from '../podman/network.js'
import { GatewayClient, type PingResult, type StatsResult } from './client.js'
import { restoreCredentials } from '../credentials/inject.js'

export const GATEWAY_CONTAINER = 'podshell-gateway'
export const GATEWAY_ROLE_LABEL = 'io.podshell.role'
export const GATEWAY_DATA_LABEL = 'io.podshell.data'

/** The command the gateway container runs (also the image's CMD). */
export const GATEWAY_COMMAND = ['node', '/opt/podshell/dist/cli/main.js', 'gateway', 'serve', '--data', GATEWAY_DATA_MOUNT] as const

export interface EnsureOptions {
  env?: Env
  /** Progress notes for the user (stderr). */
  say?: (msg: string) => void
  image?: string
  /** How long to wait for a (re)started gateway to answer, ms (default 20000). */
  startTimeoutMs?: number
}

/**
 * The gateway container's name: `podshell-gateway` for the user's default data dir, and
 * `podshell-gateway-<hash>` for any other (PODSHELL_HOME, tests), so two data dirs never share or
 * fight over one gateway.
 */
export function gatewayContainerName(data: string, env: Env = process.env): string {
  const natural = defaultDataDir({ ...env, PODSHELL_HOME: undefined })
  if (data === natural) return GATEWAY_CONTAINER
  return `${GATEWAY_CONTAINER}-${createHash('sha256').update(data).digest('hex').slice(0, 10)}`
}

/** A gateway of this podshell version serving this data-dir layout: otherwise it is replaced. */
function current(p: PingResult, want: string): boolean {
  return p.version === want && p.layout === GATEWAY_LAYOUT
}

/** podshell's version (package.json): a gateway answering with another version is replaced. */
export function podshellVersion(): string {
  try {
    return String(
      (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0',
    )
  } catch {
    return '0.0.0'
  }
}

/**
 * The gateway container (rendered by src/podman/container-spec.ts, which adds the hardening every
 * podshell container gets: no capabilities — it listens on unix sockets and dials out — no
 * privilege gain, read-only root; it writes only below the data dir). The data-dir mount gets the
 * shared SELinux label there (why shared, never private: see container-spec.ts relabel()).
 */
export function gatewayContainerSpec(data: string, env: Env = process.env, image = GATEWAY_IMAGE): ContainerSpec {
  check(hostPath, data, 'data dir', 'set PODSHELL_HOME to an absolute path without ":" or ","')
  return {
    name: gatewayContainerName(data, env),
    image,
    command: GATEWAY_COMMAND,
    labels: { [GATEWAY_ROLE_LABEL]: 'gateway', [GATEWAY_DATA_LABEL]: data },
    restart: 'always',
    stopTimeoutSeconds: 5,
    // Only the gateway's view of the data dir (control socket, CA, and per sandbox its policy,
    // egress socket, audit log and providers.json): never the agents' homes, the watcher's
    // baselines, the quarantine or provider metadata. The gateway parses untrusted traffic from
    // every sandbox; what it cannot see, a flaw in it cannot read or rewrite.
    mounts: [{ type: 'bind', source: gatewayDir(data), target: gatewayDir(GATEWAY_DATA_MOUNT) }],
    env: [],
    logMaxBytes: 10 * 1024 * 1024,
  }
}

/** `podman run` arguments for the gateway container; `network` from src/podman/network.ts. */
export function gatewayRunArgs(data: string, env: Env = process.env, image = GATEWAY_IMAGE, network: readonly string[] = []): string[] {
  const spec = { ...gatewayContainerSpec(data, env, image), networkArgs: network }
  return runArgs(spec, { values: {}, cgroupLimits: false }, { verb: 'run-detached' }).args
}

interface ContainerInfo {
  Id: string
  State: { Status: string; Running: boolean; ExitCode?: number; StartedAt?: string }
  Image: string
  ImageName?: string
  Config?: { Labels?: Record<string, string> }
}

async function inspect(podman: Podman, name: string): Promise<ContainerInfo | undefined> {
  const r = await podman.run(['container', 'inspect', name], { reject: false, timeoutMs: 30_000 })
  if (r.exitCode !== 0) return undefined
  try {
    const arr = JSON.parse(r.stdout) as ContainerInfo[]
    return arr[0]
  } catch {
    return undefined
  }
}

async function waitForPing(client: GatewayClient, podman: Podman, name: string, timeoutMs: number): Promise<PingResult> {
  const deadline = Date.now() + timeoutMs
  let checks = 0
  for (;;) {
    try {
      return await client.ping(1000)
    } catch {
      // not yet
    }
    if (Date.now() > deadline) break
    // Every ~1 s, see whether the container died instead of waiting for the full timeout.
    if (++checks % 20 === 0) {
      const info = await inspect(podman, name)
      if (!info || !info.State.Running) break
    }
    await new Promise(r => setTimeout(r, 50))
  }
  const logs = await podman.run(['logs', '--tail', '5', name], { reject: false, timeoutMs: 10_000 })
  const last = (logs.stderr || logs.stdout)
    .split('\n')
    .map(l => l.trim())
    .filter(Boolean)
    .pop()
  throw new PodshellError(`the podshell gateway did not start${last ? `: ${last}` : ''}`, {
    hint: `see \`podman logs ${name}\`; \`podshell image build\` rebuilds the gateway image`,
    code: 'GATEWAY_START',
  })
}

/**
 * Makes sure the gateway for `data` answers on its control socket, starting or re-creating the
 * container when it does not. A gateway of another podshell version is replaced.
 */
export async function ensureGateway(podman: Podman, data: string, opts: EnsureOptions = {}): Promise<void> {
  const client = new GatewayClient(data, { timeoutMs: 1000 })
  const want = podshellVersion()
  try {
    const ping = await client.ping(500)
    if (current(ping, want)) {
      // A gateway restarted on its own (crash, conmon's --restart=always) lost the credential
      // values it held in memory: its sandboxes' placeholders fail closed (403
      // credential_unavailable) until a podshell command reads them back from the Podman secrets.
      if (ping.credentialsMissing?.length) await restoreCredentials(podman, data, ping.credentialsMissing, client).catch(() => undefined)
      return
    }
  } catch {
    // not answering: slow path
  }
  mkdirp(data)
  mkdirp(gatewayDir(data))
  mkdirp(sandboxesDir(data))
  mkdirp(gatewaySandboxesDir(data))
  // Several podshell commands may find the gateway silent at once (sandboxes created in parallel
  // on a fresh login): one starts it, the others wait for that start and then find it answering,
  // instead of racing `podman run --name` ("the container name … is already in use").
  return withLock(
    join(gatewayDir(data), 'start.lock'),
    {
      waitMs: 180_000,
      pollMs: 100,
      busy: holder =>
        new PodshellError(`another podshell command (pid ${holder}) is still starting the gateway`, {
          hint: 'wait for it, or end that process and try again',
          code: 'GATEWAY_START',
        }),
    },
    async () => {
      // Looked at again under the lock: the holder before us may have started or replaced it.
      let staleNow = false
      try {
        if (current(await client.ping(500), want)) return
        staleNow = true
      } catch {
        // still not answering: this process starts it
      }
      await startGateway(podman, data, client, staleNow, opts)
      // A new gateway holds no credential value: read them back for the sandboxes it serves.
      const missing = (await client.ping(2000).catch(() => undefined))?.credentialsMissing ?? []
      if (missing.length) await restoreCredentials(podman, data, missing, client).catch(() => undefined)
    },
  )
}

async function startGateway(podman: Podman, data: string, client: GatewayClient, staleAtStart: boolean, opts: EnsureOptions): Promise<void> {
  let stale = staleAtStart
  const env = opts.env ?? process.env
  const say = opts.say ?? (() => undefined)
  const name = gatewayContainerName(data, env)
  // TLS inspection: the CA (named after the user, created on first start) and the upstream roots
  // (the host's trust store + tls.extra_ca_files), which the container cannot read itself.
  await (await import('../tls/host.js')).prepareHostTrust(data, env)
  const info = await inspect(podman, name)
  if (info && !stale) {
    if (info.State.Running) {
      // Running but silent: it may be starting up. Give it a moment before replacing it.
      try {
        if (current(await waitForPing(client, podman, name, 3000), podshellVersion())) return
        stale = true
      } catch {
        say('podshell gateway is not answering; re-creating it')
      }
    } else {
      const started = await podman.run(['start', name], { reject: false, timeoutMs: 30_000, env: gatewayNetwork(podman.version, env).env })
      if (started.exitCode === 0) {
        try {
          // A stopped container of an older podshell (another layout) starts, answers, and is
          // then replaced like a running one.
          if (current(await waitForPing(client, podman, name, opts.startTimeoutMs ?? 20_000), podshellVersion())) return
          stale = true
        } catch {
          say('podshell gateway did not come back; re-creating it')
        }
      }
    }
  }
  if (stale) say('podshell gateway is from another podshell version; replacing it')
  else if (!info) say('starting the podshell gateway')
  // Its replacement mounts only <data>/gateway: what an older gateway kept elsewhere moves in first.
  const moved = migrateGatewayView(data)
  if (moved) say(`moved ${moved} sandbox files into the gateway's view of the data dir`)
  await podman.run(['rm', '-f', '-t', '5', name], { reject: false, timeoutMs: 60_000 })
  const net = gatewayNetwork(podman.version, env)
  await podman.run(gatewayRunArgs(data, env, opts.image, net.args), { timeoutMs: 120_000, env: net.env })
  await waitForPing(client, podman, name, opts.startTimeoutMs ?? 20_000)
}

export interface GatewayStatus {
  name: string
  /** Container state ("running", "exited", …) or "absent". */
  state: string
  containerId?: string
  image?: string
  /** The control socket answered. */
  answering: boolean
  ping?: PingResult
  stats?: StatsResult
  socket: string
}

export async function gatewayStatus(podman: Podman, data: string, env: Env = process.env): Promise<GatewayStatus> {
  const name = gatewayContainerName(data, env)
  const client = new GatewayClient(data, { timeoutMs: 1000 })
  const [info, stats] = await Promise.all([inspect(podman, name), client.stats().catch(() => undefined)])
  const ping = stats ? await client.ping().catch(() => undefined) : undefined
  return {
    name,
    state: info ? info.State.Status : 'absent',
    ...(info ? { containerId: info.Id.slice(0, 12), image: info.ImageName ?? info.Image } : {}),
    answering: stats !== undefined,
    ...(ping ? { ping } : {}),
    ...(stats ? { stats } : {}),
    socket: client.socket,
  }
}

/** Stops and removes the gateway container (its state lives in the data dir). */
export async function stopGateway(podman: Podman, data: string, env: Env = process.env): Promise<boolean> {
  const name = gatewayContainerName(data, env)
  const info = await inspect(podman, name)
  if (!info) return false
  await podman.run(['rm', '-f', '-t', '5', name], { timeoutMs: 60_000 })
  return true
}

interface GatewayPsJson {
  Id: string
  Names: string[]
  ImageID?: string
  Image?: string
}

/**
 * After the gateway image was rebuilt (podshell upgraded), every gateway container of this user
 * still running the old image is removed — whatever data dir it serves — so no sandbox keeps
 * talking to an old proxy. Each is re-created with the new image by the next podshell command for
 * its data dir (ensureGateway); until then its sandboxes have no egress (fail closed).
 * Returns the names removed.
 */
export async function retireStaleGateways(podman: Podman, currentImageId: string): Promise<string[]> {
  const ps = await podman.json<GatewayPsJson[] | null>(['ps', '-a', '--format', 'json', '--filter', `label=${GATEWAY_ROLE_LABEL}=gateway`])
  const removed: string[] = []
  for (const c of ps ?? []) {
    const id = c.ImageID ?? ''
    if (id && (currentImageId.startsWith(id) || id.startsWith(currentImageId))) continue
    const r = await podman.run(['rm', '-f', '-t', '5', c.Id], { reject: false, timeoutMs: 60_000 })
    if (r.exitCode === 0) removed.push(c.Names[0] ?? c.Id)
  }
  return removed
}
