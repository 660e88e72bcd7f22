import { randomUUID } from 'node:crypto'
import { existsSync, realpathSync, statSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { PodshellError } from '../errors.js'
import { Podman, runInteractive } from '../podman/podman.js'
import {
  sandboxDir,
  sandboxesDir,
  sandboxEgressDir,
  sandboxAuditDir,
  sandboxHomeDir,
  sandboxPolicyDir,
  BRIDGE_EGRESS_MOUNT,
  BRIDGE_SOCKET,
  PROXY_PORT,
  homeDir,
  type Env,
} from '../config/paths.js'
import { SANDBOX_IMAGE, GATEWAY_IMAGE } from '../images/names.js'
import { check, sandboxName, objectName, hostPath, envKey, envValue, labelKey, labelValue, normalizePath } from '../util/validate.js'
import type { CreateOptions, MountSpec } from './types.js'
import { podName, agentContainer, bridgeContainer, infraContainer, L } from './naming.js'
import { generateName } from './petname.js'
import { creatorAlive, selfCreatorId } from '../util/process.js'
import {
  ensureDir,
  removeStateDir,
  stateDirExists,
  listStateDirs,
  readPhaseHint,
  writePhaseHint,
  markOperation,
  finishOperation,
  operationState,
  writeLastUsed,
} from './state.js'
import { parseCpu, parseMemory } from './resources.js'
import { writeFileAtomic, fsError } from '../util/fs.js'
import { trace } from '../util/trace.js'
import { homeMountpoints } from './spec.js'
import { mapFilesystemPolicy } from './fs-policy.js'
import { parsePolicyText } from '../policy/schema.js'
import { execSession, PODMAN_EXEC_FAILURE_CODES } from './exec-session.js'
import { envArgs } from '../podman/env-args.js'
import { missingSecretHint } from '../credentials/inject.js'
import { watchHook } from '../watch/lifecycle.js'

/** OpenShell's phases, exactly (proto SandboxPhase). */
export type Phase = 'Provisioning' | 'Ready' | 'Error' | 'Deleting' | 'Stopping' | 'Stopped' | 'Starting' | 'Unknown'

export interface SandboxInfo {
  id: string
  name: string
  /** User labels (without podshell's own io.podshell.* keys). */
  labels: Record<string, string>
  created_at: string
  phase: Phase
  /** podshell's own fields */
  image: string
  workdir: string | null
  mounts: MountSpec[]
  providers: string[]
  session_type: string | null
  /** Egress path state: up (bridge running, gateway answering), or down with the reason. */
  egress: string
  exit_code: number | null
  pod: string
}

/**
 * What the lifecycle needs from the other components. Wired in default-deps.ts; a value, so two
 * runtimes in one process (tests, a library user) never share hidden state.
 */
export interface SandboxDeps {
  /** Builds the default images when missing (saying so on stderr). */
  ensureImages(podman: Podman, which: ('sandbox' | 'gateway')[], say: (msg: string) => void): Promise<{ gatewayReplaced: boolean }>
  /** Starts the per-user gateway if it is not answering. */
  ensureGateway(podman: Podman, say: (msg: string) => void): Promise<void>
  /** Asks the gateway to (re)load a sandbox: creates its socket and loads its newest policy. */
  registerWithGateway(name: string): Promise<{ status: string; error?: string }>
  /** Closes a sandbox's socket in the gateway. */
  unregisterFromGateway(name: string): Promise<void>
  /** Whether the gateway answers on its control socket. */
  gatewayAlive(): Promise<boolean>
  /** Validates the policy text (or the restrictive default) and stores it as revision 1. */
  storeInitialPolicy(name: string, policyText: string | undefined, source: string): { warnings: string[] }
  /** Podman secret args for the attached providers; writes providers.json (no values). */
  prepareCredentials(podman: Podman, name: string, providers: string[]): Promise<{ secretArgs: string[]; variables: { provider: string; name: string }[] }>
  removeCredentials(podman: Podman, name: string): Promise<void>
  gcCredentials(podman: Podman, live: Set<string>): Promise<void>
  /** Whether an interrupted provider change left something for gcCredentials (no podman call). */
  credentialsNeedGc(): boolean
  /** Appends a lifecycle event to the sandbox's audit log. */
  audit(name: string, event: string, detail?: Record<string, unknown>): void
  /** Path of the default seccomp profile. */
  seccompProfile: string
}

export interface RuntimeOptions {
  podman: Podman
  dataDir: string
  env: Env
  deps: SandboxDeps
  /** Progress/notes (stderr). */
  say: (msg: string) => void
}

interface PodJson {
  Id: string
  Name: string
  Status: string
  Created: string
  Labels?: Record<string, string> | null
  Containers?: { Id: string; Names: string; Status: string }[] | null
}
interface CtrJson {
  Id: string
  Names: string[]
  State: string
  ExitCode: number
  Exited: boolean
  Labels?: Record<string, string> | null
  PodName?: string
}

export const PROXY_URL = `http://127.0.0.1:${PROXY_PORT}`

/**
 * Sandbox lifecycle on rootless Podman. A sandbox is a pod `podshell.<name>` whose network
 * namespace holds only loopback, with two containers:
 *   - `.bridge`: relays 127.0.0.1:3128 to the sandbox's gateway socket; the only container that
 *     mounts the socket's directory;
 *   - `.agent`: the agent, as the user's uid (keep-id), hardened.
 * A tool that ignores the proxy variables has no route at all: the namespace has no interface but lo.
 */
export class SandboxRuntime {
  readonly podman: Podman
  readonly dataDir: string
  readonly env: Env
  private readonly deps: SandboxDeps
  private readonly say: (msg: string) => void

  constructor(o: RuntimeOptions) {
    this.podman = o.podman
    this.dataDir = o.dataDir
    this.env = o.env
    this.deps = o.deps
    this.say = o.say
  }

  // ───────────────────────────── create ─────────────────────────────

  /**
   * Creates a sandbox. Every input is validated before podman is called. A failure at any step
   * removes what this call made (pod, containers, secrets, state dir); a kill -9 mid-create leaves
   * a pod labelled with a dead creator, which the next podshell command's gc removes.
   */
  async create(o: CreateOptions): Promise<{ info: SandboxInfo; exitCode?: number; warnings: string[] }> {
    const plan = await this.plan(o)
    const { name } = plan
    const made = { pod: false, state: false, secrets: false }
    const cleanup = async () => {
      if (made.pod) await this.podman.run(['pod', 'rm', '-f', '--ignore', podName(name)], { reject: false })
      if (made.secrets) await this.deps.removeCredentials(this.podman, name).catch(() => undefined)
      if (made.state) {
        await this.deps.unregisterFromGateway(name).catch(() => undefined)
        await this.removeState(name)
      }
    }
    // Ctrl-C during provisioning removes the half-made sandbox instead of leaving it to gc.
    const onInterrupt = () => {
      void cleanup().finally(() => process.exit(130))
    }
    process.once('SIGINT', onInterrupt)
    process.once('SIGTERM', onInterrupt)
    let warnings: string[] = []
    try {
      trace('planned')
      // Images are checked while the state is written and the pod is created (podman calls are
      // mostly waiting); the bridge and agent need them, so those wait for the check.
      const images = this.deps.ensureImages(this.podman, plan.needImages, this.say).then(async r => {
        if (plan.image !== SANDBOX_IMAGE && !(await this.imageExists(plan.image))) {
          throw new PodshellError(`image ${plan.image} not found`, {
            hint: 'build or pull it first (podman images lists what exists), or omit --from to use the podshell sandbox image',
            code: 'IMAGE_NOT_FOUND',
          })
        }
        trace('images ok')
        return r
      })
      images.catch(() => undefined) // awaited below; never an unhandled rejection meanwhile
      // State dir first: the gateway needs it to create the socket before the bridge starts. Its
      // creation is the name lock: mkdir fails if another create took the name meanwhile.
      ensureDir(sandboxesDir(this.dataDir))
      claimStateDir(this.dataDir, name)
      made.state = true
      // The creator file marks an operation in flight: if this process dies before removing it,
      // the next podshell command's gc removes whatever of this sandbox exists.
      markOperation(this.dataDir, name)
      for (const d of [sandboxPolicyDir(this.dataDir, name), sandboxEgressDir(this.dataDir, name), sandboxAuditDir(this.dataDir, name), sandboxHomeDir(this.dataDir, name)]) ensureDir(d)
      this.prepareHomeMountpoints(plan)
      // Host-executed-file watcher (src/watch/): spawned now, in parallel with the rest; its baseline
      // and watches are awaited BEFORE the agent starts. Never throws.
      const watching = watchHook(this.dataDir, name, 'create', { mounts: plan.mounts, say: this.say, env: this.env })
      warnings = this.deps.storeInitialPolicy(name, o.policyText, o.policyFile ?? 'default').warnings
      trace('state written')
      if (!(await this.deps.gatewayAlive())) {
        await images // starting the gateway needs its image
        await this.deps.ensureGateway(this.podman, this.say)
      }
      trace('gateway ok')
      const reg = await this.deps.registerWithGateway(name)
      if (reg.status === 'FAILED') throw new PodshellError(`policy failed to load: ${reg.error ?? 'unknown error'}`, { hint: 'fix the policy and retry', code: 'POLICY_FAILED' })

      trace('registered')
      made.secrets = o.providers.length > 0
      const creds = await this.deps.prepareCredentials(this.podman, name, o.providers)
      // A secret would silently win over --env of the same name; say so instead.
      for (const v of creds.variables) {
        if (v.name in o.env) throw new PodshellError(`--env ${v.name} is also set by provider ${v.provider}`, { hint: 'drop one of them', exitCode: 2, code: 'INVALID_INPUT' })
      }

      made.pod = true
      await this.podman.run(this.podCreateArgs(plan, o))
      if ((await images).gatewayReplaced) {
        // The gateway this sandbox registered with was on an old image and is gone.
        await this.deps.ensureGateway(this.podman, this.say)
        await this.deps.registerWithGateway(name)
      }
      await this.podman.run(this.bridgeArgs(plan))
      trace('bridge running')
      this.deps.audit(name, 'created', {
        image: plan.image,
        mounts: plan.mounts.map(m => `${m.source}:${m.mode}`),
        providers: o.providers,
        injected: creds.variables.map(v => `${v.provider}:${v.name}`),
      })
      for (const v of creds.variables) this.deps.audit(name, 'credential_injected', { provider: v.provider, variable: v.name })
      writeLastUsed(this.dataDir, name)

      await watching
      const agentArgs = this.agentArgs(plan, o, creds.secretArgs)
      const main = o.detach && o.command.length ? o.command : ['sleep', 'infinity']
      // What re-creating the agent container needs (restart after provider attach/detach). No
      // credential value is in here: secrets are referenced by name and added at re-creation.
      writeFileAtomic(agentSpecPath(this.dataDir, name), JSON.stringify({ flags: this.agentArgs(plan, o, []).flags, env: agentArgs.env, image: plan.image, main, providers: o.providers } satisfies AgentSpec) + '\n')
      if (o.detach) {
        await this.podman.run(['run', '-d', ...agentArgs.flags, plan.image, ...main], { env: agentArgs.env })
        finishOperation(this.dataDir, name)
        process.off('SIGINT', onInterrupt)
        process.off('SIGTERM', onInterrupt)
        return { info: await this.get(name), warnings }
      }
      if (!o.keep) {
        // Fast path (DevAIFlow's launch): the command IS the agent container's main process, so
        // `podman run` proxies signals and the TTY natively; the sandbox goes afterwards.
        process.off('SIGINT', onInterrupt)
        process.off('SIGTERM', onInterrupt)
        finishOperation(this.dataDir, name)
        const code = await runInteractive(this.podman, [
          'run', '--rm', '-i', ...(plan.tty ? ['-t'] : []), '--sig-proxy=true', ...agentArgs.flags, plan.image, ...plan.command,
        ], { env: agentArgs.env })
        await this.delete([name], { quiet: true })
        return { info: { ...this.planInfo(plan, o), phase: 'Deleting', exit_code: code }, exitCode: code, warnings }
      }
      // Kept sandbox: an idle main process keeps it Ready for later exec/connect; the foreground
      // command runs as an exec session whose signals podshell forwards.
      await this.podman.run(['run', '-d', ...agentArgs.flags, plan.image, 'sleep', 'infinity'], { env: agentArgs.env })
      finishOperation(this.dataDir, name)
      process.off('SIGINT', onInterrupt)
      process.off('SIGTERM', onInterrupt)
      const code = await this.exec(name, plan.command, { tty: plan.tty, workdir: plan.workdir ?? undefined, env: {} })
      return { info: await this.get(name), exitCode: code, warnings }
    } catch (e) {
      process.off('SIGINT', onInterrupt)
      process.off('SIGTERM', onInterrupt)
      await cleanup()
      throw e
    }
  }

  /** Validates and resolves CreateOptions into everything podman will be given. No side effects. */
  async plan(o: CreateOptions): Promise<Plan> {
    const name = o.name !== undefined ? check(sandboxName, o.name, 'sandbox name', 'e.g. --name my-box') : undefined
    const image = o.image ?? SANDBOX_IMAGE
    checkImageRef(image)
    for (const [k, v] of Object.entries(o.env)) {
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
    const cpus = o.cpu !== undefined ? parseCpu(o.cpu) : undefined
    const memory = o.memory !== undefined ? parseMemory(o.memory) : undefined
    if ((cpus !== undefined || memory !== undefined) && !this.podman.rootlessLimits) {
      throw new PodshellError('--cpu/--memory need cgroup v2: rootless Podman ignores limits on this cgroup v1/hybrid host', {
        hint: 'boot with systemd.unified_cgroup_hierarchy=1, or omit the limits (`podshell doctor` shows the cgroup check)',
        exitCode: 2,
        code: 'LIMITS_UNSUPPORTED',
      })
    }
    const workdir = o.workdir !== undefined ? normalizePath(check(hostPath, o.workdir, '--workdir')) : null
    // filesystem_policy → mounts (see fs-policy.ts). The policy is validated again when stored.
    const fsPolicy = o.policyText !== undefined ? parsePolicyText(o.policyText, o.policyFile ?? 'policy').policy.filesystem_policy : undefined
    const pre = mapFilesystemPolicy(fsPolicy, { workdir, workdirMode: o.workdirMode, mounts: [], home: homeDir(this.env), writable: WRITABLE_IN_IMAGE })
    const mounts = this.resolveMounts({ ...o, workdirMode: pre.workdirMode })
    const fsMap = mapFilesystemPolicy(fsPolicy, { workdir, workdirMode: pre.workdirMode, mounts, home: homeDir(this.env), writable: WRITABLE_IN_IMAGE })
    for (const m of fsMap.mounts) mounts.push(m)
    const tty = o.tty ?? Boolean(process.stdin.isTTY && process.stdout.isTTY)
    for (const a of o.command) {
      if (a.includes('\0')) throw new PodshellError('command arguments must not contain NUL', { exitCode: 2, code: 'INVALID_INPUT' })
    }
    const seccomp = o.seccompProfile ?? this.deps.seccompProfile
    if (!existsSync(seccomp)) {
      // Fails closed: a missing profile must stop the create, never run the agent unfiltered.
      throw new PodshellError(`seccomp profile not found: ${seccomp}`, { hint: 'reinstall podshell or pass an existing profile', code: 'SECCOMP_MISSING' })
    }
    const finalName = name ?? generateName(new Set(listStateDirs(this.dataDir)))
    // Every sandbox has its state dir from the first step of create to the last of delete, so
    // the dir answers "is the name taken" without a podman call (claimStateDir makes it atomic).
    if (stateDirExists(this.dataDir, finalName)) throw alreadyExists(finalName)
    const masks = (o.masks ?? []).map(m => normalizePath(check(hostPath, m, 'mask path')))
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
      seccomp,
      needImages,
      masks,
      tmpfsDirs,
      home: homeDir(this.env),
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
  private resolveMounts(o: CreateOptions): MountSpec[] {
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

  /**
   * Mount points below the agent's home must exist, owned by the user, before podman runs: a mount
   * point that the OCI runtime creates inside a bind mount is owned by a subordinate uid on the host
   * (measured), which the agent cannot write beside and the user cannot delete without
   * `podman unshare`.
   */
  private prepareHomeMountpoints(p: Plan): void {
    const home = sandboxHomeDir(this.dataDir, p.name)
    const mp = homeMountpoints(p.home, { workdir: p.workdir ?? undefined, mounts: p.mounts, masks: p.masks, tmpfsDirs: p.tmpfsDirs })
    try {
      for (const d of mp.dirs) mkdirSync(join(home, d), { recursive: true, mode: 0o755 })
      for (const f of mp.files) if (!existsSync(join(home, f))) writeFileSync(join(home, f), '', { mode: 0o644 })
    } catch (e) {
      throw fsError(`cannot prepare the home of sandbox ${p.name}`, e)
    }
  }

  /**
   * Removes a sandbox's state dir. Files the sandbox's containers created under subordinate uids
   * (possible for anything an image's root process writes into the home) are not the user's to
   * delete directly; `podman unshare` enters the user namespace where they are.
   */
  private async removeState(name: string): Promise<void> {
    try {
      removeStateDir(this.dataDir, name)
    } catch (e) {
      const dir = sandboxDir(this.dataDir, name)
      const r = await this.podman.run(['unshare', 'rm', '-rf', '--', dir], { reject: false })
      if (r.exitCode !== 0) throw e
    }
  }

  private podCreateArgs(p: Plan, o: CreateOptions): string[] {
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
    return [
      'pod', 'create',
      '--name', podName(p.name),
      '--infra-name', infraContainer(p.name),
      // Only loopback: a process that ignores the proxy variables has no route anywhere.
      '--network', 'none',
      // The agent runs as the user's uid, so files it writes in mounted repos stay the user's.
      '--userns', 'keep-id',
      ...labelArgs(labels),
    ]
  }

  private bridgeArgs(p: Plan): string[] {
    return [
      'run', '-d',
      '--pod', podName(p.name),
      '--name', bridgeContainer(p.name),
      '--label', `${L.sandbox}=${p.name}`,
      '--label', `${L.role}=bridge`,
      '--user', `${p.uid}:${p.gid}`,
      '--cap-drop', 'ALL',
      '--security-opt', 'no-new-privileges',
      '--read-only',
      ...(this.podman.rootlessLimits ? ['--pids-limit', '256'] : []),
      // Only the bridge sees the socket dir; the agent container cannot reach the gateway but
      // through the bridge's TCP port, and so only with this sandbox's policy.
      '--mount', `type=bind,source=${sandboxEgressDir(this.dataDir, p.name)},destination=${BRIDGE_EGRESS_MOUNT}${selinuxRelabel()}`,
      GATEWAY_IMAGE,
      'socat', '-b', '262144',
      `TCP-LISTEN:${PROXY_PORT},bind=127.0.0.1,fork,reuseaddr`,
      `UNIX-CONNECT:${BRIDGE_SOCKET}`,
    ]
  }

  private agentArgs(p: Plan, o: CreateOptions, secretArgs: string[]): { flags: string[]; env: Record<string, string> } {
    const env: Record<string, string> = {
      ...o.env,
      HOME: p.home,
      PODSHELL_SANDBOX: p.name,
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
    if (p.tty && this.env.TERM && /^[\w.+-]{1,64}$/.test(this.env.TERM)) env.TERM = this.env.TERM
    const envPass = envArgs(env)
    const flags = [
      '--pod', podName(p.name),
      '--name', agentContainer(p.name),
      '--label', `${L.sandbox}=${p.name}`,
      '--label', `${L.role}=agent`,
      // Podman would copy the caller's proxy variables in (--http-proxy defaults to true): the
      // sandbox environment is an allowlist, and its proxy is the bridge.
      '--http-proxy=false',
      // The user's own uid:gid, whatever USER the image names (keep-id alone keeps the image's USER).
      '--user', `${p.uid}:${p.gid}`,
      '--init',
      '--cap-drop', 'ALL',
      '--security-opt', 'no-new-privileges',
      '--security-opt', `seccomp=${p.seccomp}`,
      '--read-only',
      '--read-only-tmpfs',
      '--tmpfs', '/tmp:rw,nosuid,nodev,mode=1777',
      ...(this.podman.rootlessLimits ? ['--pids-limit', '4096'] : []),
      // No core dumps: a crashing agent must not write its memory (credentials) to disk.
      '--ulimit', 'core=0:0',
      ...(p.cpus !== undefined ? ['--cpus', String(p.cpus)] : []),
      ...(p.memory !== undefined ? ['--memory', p.memory] : []),
      '--mount', `type=bind,source=${sandboxHomeDir(this.dataDir, p.name)},destination=${p.home}${selinuxRelabel()}`,
      ...p.mounts.flatMap(m => [
        '--mount',
        `type=bind,source=${m.source},destination=${m.target}${m.mode === 'ro' ? ',ro=true' : ''}${selinuxRelabel()}`,
      ]),
      // Writable scratch parents (e.g. a CLAUDE_CONFIG_DIR outside $HOME), owned by the agent's uid.
      ...p.tmpfsDirs.flatMap(d => ['--mount', `type=tmpfs,destination=${d},tmpfs-mode=0700,U=true,notmpcopyup`]),
      // Masks: an empty read-only tmpfs on top of each hidden path (`.ai-read-deny` trees). Podman
      // orders mounts parent-first, so a mask inside a bind mount lands on top of it. notmpcopyup:
      // podman would otherwise COPY the hidden content into the tmpfs (measured: it does).
      ...p.masks.flatMap(d => ['--mount', `type=tmpfs,destination=${d},ro=true,tmpfs-mode=000,notmpcopyup`]),
      ...(p.workdir ? ['--workdir', p.workdir] : ['--workdir', p.home]),
      // Values by name through podman's environment, not argv (see env-args.ts).
      ...envPass.args,
      ...secretArgs,
    ]
    return { flags, env: envPass.podmanEnv }
  }

  private planInfo(p: Plan, o: CreateOptions): SandboxInfo {
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
      pod: podName(p.name),
    }
  }

  // ───────────────────────────── read ─────────────────────────────

  async exists(name: string): Promise<boolean> {
    const r = await this.podman.run(['pod', 'exists', podName(name)], { reject: false })
    return r.exitCode === 0
  }

  async imageExists(ref: string): Promise<boolean> {
    const r = await this.podman.run(['image', 'exists', ref], { reject: false })
    return r.exitCode === 0
  }

  /** All sandboxes, phase derived from Podman's state (plus the phase hint of in-flight verbs). */
  async list(selector: Record<string, string> = {}): Promise<SandboxInfo[]> {
    const [pods, ctrs, gw] = await Promise.all([
      this.podman.json<PodJson[]>(['pod', 'ps', '--format', 'json', '--filter', `label=${L.sandbox}`]),
      this.podman.json<CtrJson[]>(['ps', '-a', '--format', 'json', '--filter', `label=${L.sandbox}`]),
      this.deps.gatewayAlive(),
    ])
    const out: SandboxInfo[] = []
    for (const pod of pods ?? []) {
      const info = this.podInfo(pod, ctrs ?? [], gw)
      if (!info) continue
      if (Object.entries(selector).every(([k, v]) => info.labels[k] === v)) out.push(info)
    }
    out.sort((a, b) => a.created_at.localeCompare(b.created_at))
    return out
  }

  async get(name: string): Promise<SandboxInfo> {
    check(sandboxName, name, 'sandbox name')
    const [pods, ctrs, gw] = await Promise.all([
      this.podman.json<PodJson[]>(['pod', 'ps', '--format', 'json', '--filter', `label=${L.sandbox}=${name}`]),
      this.podman.json<CtrJson[]>(['ps', '-a', '--format', 'json', '--filter', `label=${L.sandbox}=${name}`]),
      this.deps.gatewayAlive(),
    ])
    const pod = (pods ?? []).find(p => p.Labels?.[L.sandbox] === name)
    const info = pod && this.podInfo(pod, ctrs ?? [], gw)
    if (!info) throw notFound(name)
    return info
  }

  private podInfo(pod: PodJson, ctrs: CtrJson[], gatewayUp: boolean): SandboxInfo | undefined {
    const labels = pod.Labels ?? {}
    const name = labels[L.sandbox]
    if (!name) return undefined
    const mine = ctrs.filter(c => c.Labels?.[L.sandbox] === name)
    const agent = mine.find(c => c.Labels?.[L.role] === 'agent')
    const bridge = mine.find(c => c.Labels?.[L.role] === 'bridge')
    const hint = readPhaseHint(this.dataDir, name)
    let phase: Phase
    let exitCode: number | null = null
    if (hint === 'deleting') phase = 'Deleting'
    else if (!agent) phase = creatorAlive(labels[L.creator]) ? 'Provisioning' : 'Error'
    else {
      const st = agent.State.toLowerCase()
      if (st === 'running') phase = hint === 'stopping' ? 'Stopping' : 'Ready'
      else if (st === 'exited' || st === 'stopped') {
        if (hint === 'stopped' || hint === 'stopping') phase = 'Stopped'
        else {
          // OpenShell: the main process exiting (even with 0) is terminal Error with its exit code.
          phase = 'Error'
          exitCode = agent.ExitCode
        }
      } else if (st === 'created' || st === 'configured' || st === 'initialized') phase = hint === 'starting' ? 'Starting' : 'Provisioning'
      else if (st === 'stopping') phase = 'Stopping'
      else if (st === 'paused') phase = 'Stopped'
      else phase = 'Unknown'
      if (hint === 'starting' && st !== 'running') phase = 'Starting'
    }
    const egress =
      !bridge ? 'down: no bridge container'
      : bridge.State.toLowerCase() !== 'running' ? `down: bridge ${bridge.State.toLowerCase()}`
      : !gatewayUp ? 'down: gateway not running'
      : 'up'
    const user: Record<string, string> = {}
    for (const [k, v] of Object.entries(labels)) if (k.startsWith(L.userPrefix)) user[k.slice(L.userPrefix.length)] = v
    let mounts: MountSpec[] = []
    try {
      mounts = JSON.parse(labels[L.mounts] || '[]') as MountSpec[]
    } catch {
      mounts = []
    }
    return {
      id: labels[L.id] ?? pod.Id,
      name,
      labels: user,
      created_at: labels[L.created] ?? pod.Created,
      phase,
      image: labels[L.image] ?? '',
      workdir: labels[L.workdir] || null,
      mounts,
      providers: readAgentSpec(this.dataDir, name)?.providers ?? (labels[L.providers] ?? '').split(',').filter(Boolean),
      session_type: labels[L.sessionType] || null,
      egress,
      exit_code: exitCode,
      pod: pod.Name,
    }
  }

  // ───────────────────────────── verbs ─────────────────────────────

  async delete(names: string[], opts: { quiet?: boolean } = {}): Promise<string[]> {
    const deleted: string[] = []
    for (const name of names) {
      check(sandboxName, name, 'sandbox name')
      const exists = await this.exists(name)
      if (!exists && !listStateDirs(this.dataDir).includes(name)) {
        if (opts.quiet) continue
        throw notFound(name)
      }
      if (exists) {
        writePhaseHintSafe(this.dataDir, name, 'deleting')
        this.startOperation(name)
        this.deps.audit(name, 'deleting')
        await this.podman.run(['pod', 'rm', '-f', '-t', '2', '--ignore', podName(name)])
      }
      await watchHook(this.dataDir, name, 'delete', { say: this.say, env: this.env })
      await this.deps.removeCredentials(this.podman, name)
      await this.deps.unregisterFromGateway(name).catch(() => undefined)
      await this.removeState(name)
      deleted.push(name)
    }
    return deleted
  }

  /** Providers to inject at the next restart (attach/detach change this, not the running agent). */
  desiredProviders(name: string): { current: string[]; desired: string[] } {
    const spec = readAgentSpec(this.dataDir, name)
    const current = spec?.providers ?? []
    let desired = current
    try {
      desired = JSON.parse(readFileSync(join(sandboxDir(this.dataDir, name), 'providers.desired.json'), 'utf8')) as string[]
    } catch {
      desired = current
    }
    return { current, desired }
  }

  async setDesiredProviders(name: string, desired: string[]): Promise<void> {
    await this.get(name)
    for (const p of desired) check(objectName, p, 'provider name')
    writeFileAtomic(join(sandboxDir(this.dataDir, name), 'providers.desired.json'), JSON.stringify([...new Set(desired)]) + '\n')
  }

  /**
   * Stop + start, re-creating the agent container when the attached providers changed: Podman
   * binds secrets to a container at creation, so new credentials need a new container. The pod,
   * bridge, home dir, state and policy stay.
   */
  async restart(name: string): Promise<SandboxInfo> {
    const { current, desired } = this.desiredProviders(name)
    await this.stop(name)
    const same = current.length === desired.length && current.every(p => desired.includes(p))
    if (!same) {
      const spec = readAgentSpec(this.dataDir, name)
      if (!spec) throw new PodshellError(`sandbox ${name} has no agent spec`, { hint: 'it was created by an older podshell; recreate it', code: 'STATE' })
      const creds = await this.deps.prepareCredentials(this.podman, name, desired)
      await this.podman.run(['rm', '-f', '--ignore', agentContainer(name)])
      await this.podman.run(['create', ...spec.flags, ...creds.secretArgs, spec.image, ...spec.main], { env: spec.env ?? {} })
      writeFileAtomic(agentSpecPath(this.dataDir, name), JSON.stringify({ ...spec, providers: desired } satisfies AgentSpec) + '\n')
      for (const v of creds.variables) this.deps.audit(name, 'credential_injected', { provider: v.provider, variable: v.name })
      this.deps.audit(name, 'providers_changed', { providers: desired })
    }
    return this.start(name)
  }

  async stop(name: string): Promise<SandboxInfo> {
    await this.get(name)
    writePhaseHint(this.dataDir, name, 'stopping')
    this.deps.audit(name, 'stopping')
    await this.podman.run(['pod', 'stop', '-t', '5', podName(name)])
    await watchHook(this.dataDir, name, 'stop', { say: this.say, env: this.env })
    writePhaseHint(this.dataDir, name, 'stopped')
    this.deps.audit(name, 'stopped')
    return this.get(name)
  }

  async start(name: string): Promise<SandboxInfo> {
    await this.get(name)
    writePhaseHint(this.dataDir, name, 'starting')
    await this.deps.ensureGateway(this.podman, this.say)
    await this.deps.registerWithGateway(name)
    await watchHook(this.dataDir, name, 'start', { say: this.say, env: this.env })
    try {
      await this.podman.run(['pod', 'start', podName(name)])
    } catch (e) {
      const hint = e instanceof PodshellError ? missingSecretHint(e.message) : undefined
      if (hint) throw new PodshellError(`sandbox ${name} cannot start: a credential it uses is gone`, { hint, code: 'PROVIDER_MISSING' })
      throw e
    }
    writePhaseHint(this.dataDir, name, undefined)
    this.deps.audit(name, 'started')
    return this.get(name)
  }

  /**
   * Runs a command in a sandbox as a transparent child: exit code (128+n for signal n), TTY when
   * asked, stdin piped otherwise. `podman exec` does not proxy signals, so each session carries a
   * random marker in its environment and podshell signals the marked processes itself (they run as
   * the user's own uid under keep-id, so the user may signal them).
   */
  async exec(
    name: string,
    command: string[],
    opts: { tty?: boolean; workdir?: string; env?: Record<string, string>; timeoutSeconds?: number } = {},
  ): Promise<number> {
    check(sandboxName, name, 'sandbox name')
    for (const [k, v] of Object.entries(opts.env ?? {})) {
      check(envKey, k, 'environment variable name')
      check(envValue, v, `value of environment variable ${k}`)
    }
    if (opts.workdir !== undefined) check(hostPath, opts.workdir, '--workdir')
    const tty = opts.tty ?? Boolean(process.stdin.isTTY && process.stdout.isTTY)
    const session = execSession({ name, command: command.length ? command : LOGIN_SHELL, tty, workdir: opts.workdir, env: opts.env ?? {}, timeoutSeconds: opts.timeoutSeconds })
    writeLastUsed(this.dataDir, name)
    // A gateway that was stopped or killed comes back with the next command that may need egress
    // (fast path: one control-socket ping). Not fatal: without a gateway the command still runs,
    // with no egress at all (the bridge has nothing to relay to: fail closed).
    await this.deps.ensureGateway(this.podman, this.say).catch((e: unknown) => {
      this.say(`warning: the egress gateway is not running, so this command has no network: ${e instanceof Error ? e.message : String(e)}`)
    })
    await watchHook(this.dataDir, name, 'command', { say: this.say, env: this.env })
    const code = await runInteractive(this.podman, session.args, session.options)
    if (PODMAN_EXEC_FAILURE_CODES.has(code)) await this.explainExecFailure(name)
    return code
  }

  /**
   * After `podman exec` exited 125/126/127/255: podman's own failures (sandbox gone, stopped) land
   * there as well as a command's. Throws the one-line reason when it was the sandbox; returns when
   * the sandbox is Ready (the code was the command's).
   */
  async explainExecFailure(name: string): Promise<void> {
    const info = await this.get(name)
    if (info.phase !== 'Ready') {
      throw new PodshellError(`sandbox ${name} is ${info.phase}`, { hint: `start it with \`podshell sandbox start ${name}\``, code: 'NOT_READY' })
    }
  }

  // ───────────────────────────── gc ─────────────────────────────

  /**
   * Removes what an interrupted create left behind: pods whose creator is dead and that never got
   * their agent container, state dirs without a pod, secrets of sandboxes that no longer exist.
   * Runs at the start of state-changing commands; cheap when there is nothing to do.
   */
  async gc(opts: { full?: boolean } = {}): Promise<string[]> {
    // Cheap check first (no podman call): only an operation that died leaves a creator file with
    // a dead owner, or a stale provider lock. `podshell gc` always does the full pass.
    if (!opts.full && !this.interruptedOperations().length && !this.deps.credentialsNeedGc()) return []
    const removed: string[] = []
    const [pods, ctrs] = await Promise.all([
      this.podman.json<PodJson[]>(['pod', 'ps', '--format', 'json', '--filter', `label=${L.sandbox}`]),
      this.podman.json<CtrJson[]>(['ps', '-a', '--format', 'json', '--filter', `label=${L.sandbox}`]),
    ])
    const interrupted = new Set(this.interruptedOperations())
    const live = new Set<string>()
    for (const pod of pods ?? []) {
      const name = pod.Labels?.[L.sandbox]
      if (!name) continue
      const hasAgent = (ctrs ?? []).some(c => c.Labels?.[L.sandbox] === name && c.Labels?.[L.role] === 'agent')
      const halfMade = !hasAgent && !creatorAlive(pod.Labels?.[L.creator])
      if (halfMade || interrupted.has(name)) {
        await this.podman.run(['pod', 'rm', '-f', '--ignore', pod.Name], { reject: false })
        removed.push(`pod ${pod.Name}`)
        continue
      }
      live.add(name)
    }
    // Containers labelled for a sandbox whose pod is gone (killed between pod rm steps).
    for (const c of ctrs ?? []) {
      const name = c.Labels?.[L.sandbox]
      if (name && !live.has(name) && !(pods ?? []).some(p => p.Labels?.[L.sandbox] === name && !interrupted.has(name))) {
        await this.podman.run(['rm', '-f', '--ignore', c.Id], { reject: false })
        removed.push(`container ${c.Names[0] ?? c.Id}`)
      }
    }
    for (const name of listStateDirs(this.dataDir)) {
      if (live.has(name)) continue
      // A state dir exists briefly before its pod: leave it while its creator runs.
      if (operationState(this.dataDir, name) === 'running') continue
      await this.deps.unregisterFromGateway(name).catch(() => undefined)
      await this.removeState(name).catch(() => undefined)
      removed.push(`state ${name}`)
    }
    await this.deps.gcCredentials(this.podman, live)
    return removed
  }

  /** Sandboxes whose create or delete was interrupted (creator file of a dead process). */
  private interruptedOperations(): string[] {
    return listStateDirs(this.dataDir).filter(name => operationState(this.dataDir, name) === 'interrupted')
  }

  private startOperation(name: string): void {
    try {
      markOperation(this.dataDir, name)
    } catch {
      // Deleting must work on an unwritable state dir; gc then relies on Podman's labels.
    }
  }
}

interface AgentSpec {
  flags: string[]
  /** Values for the `--env NAME` flags (the state dir is the user's own, 0700). */
  env?: Record<string, string>
  image: string
  main: string[]
  providers: string[]
}
const agentSpecPath = (data: string, name: string) => join(sandboxDir(data, name), 'agent.json')
function readAgentSpec(data: string, name: string): AgentSpec | undefined {
  try {
    return JSON.parse(readFileSync(agentSpecPath(data, name), 'utf8')) as AgentSpec
  } catch {
    return undefined
  }
}

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
  seccomp: string
  needImages: ('sandbox' | 'gateway')[]
  masks: string[]
  tmpfsDirs: string[]
  home: string
  uid: number
  gid: number
  command: string[]
}

const LOGIN_SHELL = ['/bin/sh', '-c', 'if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi']

/** Variables podshell sets; a user cannot point the agent at another proxy or fake its identity. */
const RESERVED_ENV = new Set(['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'NODE_USE_ENV_PROXY', 'PODSHELL_SANDBOX', 'PODSHELL_EXEC_ID', 'HOME'])
/** Writable without a mount: podman's --read-only-tmpfs dirs and the /tmp tmpfs. */
const WRITABLE_IN_IMAGE = ['/tmp', '/var/tmp', '/run']
const RESERVED_TARGETS = ['/proc', '/sys', '/dev', '/run/podshell', '/etc/hosts', '/etc/resolv.conf', '/etc/hostname']


function labelArgs(labels: Record<string, string>): string[] {
  return Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`])
}

function alreadyExists(name: string): PodshellError {
  return new PodshellError(`sandbox ${name} already exists`, { hint: `choose another --name or run \`podshell sandbox delete ${name}\``, code: 'ALREADY_EXISTS' })
}

/** Creates the sandbox's state dir, failing if it exists: the atomic claim on the name. */
function claimStateDir(data: string, name: string): void {
  try {
    mkdirSync(sandboxDir(data, name), { mode: 0o700 })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw alreadyExists(name)
    throw fsError(`cannot create the state of sandbox ${name}`, e)
  }
}

function notFound(name: string): PodshellError {
  return new PodshellError(`sandbox ${name} not found`, { hint: '`podshell sandbox list` shows the sandboxes', code: 'NOT_FOUND' })
}

function writePhaseHintSafe(data: string, name: string, hint: 'deleting'): void {
  try {
    writePhaseHint(data, name, hint)
  } catch {
    // Deleting must work even when the state dir is unwritable (full disk): the hint is cosmetic.
  }
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

let selinuxEnabled: boolean | undefined
/**
 * SELinux hosts (Fedora/RHEL) deny containers access to unlabelled bind mounts. podshell relabels
 * with the *shared* label (`:z` semantics): a repo mounted into two sandboxes of one multi-repo
 * session stays usable by both, and host processes keep access. Not needed (and not passed) where
 * SELinux is off, as on Debian.
 */
function selinuxRelabel(): string {
  selinuxEnabled ??= existsSync('/sys/fs/selinux/enforce')
  return selinuxEnabled ? ',relabel=shared' : ''
}

