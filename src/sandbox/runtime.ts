import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { PodshellError } from '../errors.js'
import { Podman, runInteractive } from '../podman/podman.js'
import { attachMainArgs, podCreateArgs, runArgs, startAttachedArgs, type ContainerSpec, type RenderContext } from '../podman/container-spec.js'
import { agentSpec, bridgeSpec, podSpec, PROXY_URL } from './containers.js'
import { IDLE_MAIN, peekAgentDescription, readAgentDescription, writeAgentDescription, type AgentDescription } from './description.js'
import { checkTreeSource, isSecured } from './mount-pipeline.js'
import { pipelineOptions, secureCreateOptions } from './spec.js'
import { loadEffectiveConfig, type LoadOptions } from '../config/enterprise.js'
import type { SandboxTrustArgs, SandboxDeps, RuntimeOptions } from './runtime-types.js'
import type { SignalSource } from '../podman/interactive.js'
import { sandboxDir, sandboxesDir, sandboxEgressDir, sandboxAuditDir, sandboxHomeDir, sandboxPolicyDir, configDir, type Env } from '../config/paths.js'
import { SANDBOX_IMAGE } from '../images/names.js'
import { check, sandboxName, objectName, hostPath, envKey, envValue } from '../util/validate.js'
import type { CreateOptions } from './types.js'
import { podName, agentContainer, L } from './naming.js'
import { ensureDir, removeStateDir, listStateDirs, writePhaseHint, markOperation, finishOperation, writeLastUsed } from './state.js'
import { pidsLimit, sandboxLimits } from './resources.js'
import { writeFileAtomic, fsError } from '../util/fs.js'
import { trace } from '../util/trace.js'
import { isSocketMaskMount } from './sockets.js'
import { execSession, PODMAN_EXEC_FAILURE_CODES } from './exec-session.js'
import { prepareExecServer, execThroughServer } from './exec-server.js'
import { missingSecretHint } from '../credentials/inject.js'
import { sysfsNetMasks } from '../podman/sysfs.js'
import { watchHook } from '../watch/lifecycle.js'
import { spawnTeardown } from './teardown.js'
import { diskPaused, diskPausedError } from '../watch/disk-guard.js'
import { sentinelHeld } from '../watch/paths.js'
import { podInfo, notFound, type PodJson, type CtrJson, type SandboxInfo } from './sandbox-info.js'
import { planCreate, LOGIN_SHELL, alreadyExists, prepareHomeMountpoints, podLabels, planInfo, type Plan } from './plan.js'
import { collectGarbage } from './gc.js'

export type { Phase, SandboxInfo } from './sandbox-info.js'
export type { Plan } from './plan.js'
export { checkImageRef } from './plan.js'

export type { SandboxTrustArgs, SandboxDeps, RuntimeOptions } from './runtime-types.js'


export { PROXY_URL }

/** What provisioning hands to the agent launch. */
interface Launch {
  secretArgs: string[]
  /** The sandbox's CA bundle (src/tls/): read-only mounts and variables. */
  trust: SandboxTrustArgs
  warnings: string[]
}

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
  private readonly signals: SignalSource | undefined
  private readonly configLoad: LoadOptions | undefined

  constructor(o: RuntimeOptions) {
    this.signals = o.signals
    this.configLoad = o.configLoad
    this.podman = o.podman
    this.dataDir = o.dataDir
    this.env = o.env
    this.deps = o.deps
    this.say = o.say
  }

  // ───────────────────────────── create ─────────────────────────────

  /**
   * Creates a sandbox. Every input is validated before podman is called, and the security rules
   * are applied HERE, for every caller (CLI, spec, library): configuration defaults, the mount
   * pipeline (sensitive paths refused, `.ai-read-deny` masked, read-write trees protected) and the
   * enterprise rules (src/sandbox/spec.ts secureCreateOptions; options that already passed it are
   * not scanned twice). A failure at any step removes what this call made (pod, containers,
   * secrets, state dir); a kill -9 mid-create leaves a pod labelled with a dead creator, which the
   * next podshell command's gc removes. A signal from the `signals` source during provisioning
   * removes the half-made sandbox and rejects with exit code 130.
   */
  async create(input: CreateOptions): Promise<{ info: SandboxInfo; exitCode?: number; warnings: string[] }> {
    const sec = isSecured(input) ? { options: input, warnings: [] } : await secureCreateOptions(input, this.env, this.configLoad)
    const o = sec.options
    const plan = await this.plan(o)
    const { name } = plan
    const made = { pod: false, state: false, secrets: false }
    let cleaning: Promise<void> | undefined
    const cleanup = () =>
      (cleaning ??= (async () => {
        if (made.pod) await this.podman.run(['pod', 'rm', '-f', '--ignore', podName(name)], { reject: false })
        if (made.secrets) await this.deps.removeCredentials(this.podman, name).catch(() => undefined)
        if (made.state) {
          await this.deps.unregisterFromGateway(name).catch(() => undefined)
          await this.removeState(name)
        }
      })())
    // Ctrl-C during provisioning removes the half-made sandbox instead of leaving it to gc. The
    // signals come from the caller (the CLI passes its process); the runtime installs nothing.
    let cancelled = false
    let onSignal = () => undefined as void
    const interrupted = new Promise<never>((_, reject) => {
      onSignal = () => {
        cancelled = true
        void cleanup().finally(() => reject(new PodshellError(`create of sandbox ${name} interrupted; nothing of it is left`, { code: 'INTERRUPTED', exitCode: 130 })))
      }
    })
    interrupted.catch(() => undefined)
    const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM']
    for (const s of sigs) this.signals?.on(s, onSignal)
    const unsubscribe = () => {
      for (const s of sigs) this.signals?.off(s, onSignal)
    }
    const step = () => {
      if (cancelled) throw new PodshellError('interrupted', { code: 'INTERRUPTED', exitCode: 130 })
    }
    let launch: Launch
    try {
      launch = await Promise.race([this.provision(plan, o, made, step), interrupted])
    } catch (e) {
      unsubscribe()
      await cleanup()
      throw cancelled ? await interrupted.catch((x: unknown) => x) : e
    }
    unsubscribe()
    const warnings = [...sec.warnings, ...launch.warnings]
    try {
      return await this.launch(plan, o, launch, warnings)
    } catch (e) {
      await cleanup()
      throw e
    }
  }

  /** State dir, policy, gateway registration, credentials, pod and bridge: everything but the agent. */
  private async provision(plan: Plan, o: CreateOptions, made: { pod: boolean; state: boolean; secrets: boolean }, step: () => void): Promise<Launch> {
    const { name } = plan
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
    prepareHomeMountpoints(this.dataDir, plan)
    // Host-executed-file watcher (src/watch/): spawned now, in parallel with the rest; its baseline
    // and watches are awaited below, BEFORE the agent starts. Never throws.
    const watching = watchHook(this.dataDir, name, 'create', { mounts: plan.mounts, masks: plan.masks, say: this.say, env: this.env })
    // Before the gateway is asked to serve the sandbox: it signs with the CA this bundle holds.
    const trust = await this.deps.prepareTrust(name)
    const warnings = this.deps.storeInitialPolicy(name, o.policyText, o.policyFile ?? 'default').warnings
    trace('state written')
    step()
    if (!(await this.deps.gatewayAlive())) {
      await images // starting the gateway needs its image
      await this.deps.ensureGateway(this.podman, this.say)
    }
    trace('gateway ok')
    step()
    const reg = await this.deps.registerWithGateway(name)
    if (reg.status === 'FAILED') throw new PodshellError(`policy failed to load: ${reg.error ?? 'unknown error'}`, { hint: 'fix the policy and retry', code: 'POLICY_FAILED' })

    trace('registered')
    step()
    made.secrets = o.providers.length > 0
    const creds = await this.deps.prepareCredentials(this.podman, name, o.providers, o.credentialMode)
    if (o.credentialMode === 'env' && creds.variables.length > 0) {
      this.say(`warning: --credential-mode env: the agent gets the real values of ${creds.variables.map(v => v.name).join(', ')} as environment variables`)
    }
    // A secret would silently win over --env of the same name; say so instead.
    for (const v of creds.variables) {
      if (v.name in o.env || v.name in (o.passEnv ?? {})) throw new PodshellError(`--env ${v.name} is also set by provider ${v.provider}`, { hint: 'drop one of them', exitCode: 2, code: 'INVALID_INPUT' })
    }

    step()
    made.pod = true
    await this.podman.run(podCreateArgs(podSpec(name, podLabels(plan, o))))
    if ((await images).gatewayReplaced) {
      // The gateway this sandbox registered with was on an old image and is gone.
      await this.deps.ensureGateway(this.podman, this.say)
      await this.deps.registerWithGateway(name)
    }
    step()
    const bridge = runArgs(bridgeSpec(name, this.dataDir, plan.uid, plan.gid, plan.limits, this.podman.rootlessLimits), this.renderContext({}), { verb: 'run-detached' })
    await this.podman.run(bridge.args, { env: bridge.podmanEnv })
    trace('bridge running')
    this.deps.audit(name, 'created', {
      image: plan.image,
      mounts: plan.mounts.map(m => `${m.source}:${m.mode}`),
      providers: o.providers,
      injected: creds.variables.map(v => `${v.provider}:${v.name}`),
    })
    for (const v of creds.variables) this.deps.audit(name, 'credential_injected', { provider: v.provider, variable: v.name })
    for (const p of plan.maskedSockets) this.deps.audit(name, 'socket_masked', { path: p, reason: 'host unix socket in a mounted tree (allow with --allow-socket)' })
    writeLastUsed(this.dataDir, name)
    await watching
    step()
    return { secretArgs: creds.secretArgs, trust, warnings }
  }

  /**
   * Starts the agent. As OpenShell ≥ v0.0.111 (PR #2884): a command given to create is the
   * sandbox's main process — detached, or in the foreground of a kept sandbox (it ends Completed
   * on exit 0, Error with its exit code otherwise; `sandbox start` runs it again); with --no-keep
   * it runs as `podman run --rm`. No command: an idle main process and a login shell as an exec.
   */
  private async launch(plan: Plan, o: CreateOptions, l: Launch, warnings: string[]): Promise<{ info: SandboxInfo; exitCode?: number; warnings: string[] }> {
    const { name } = plan
    const foregroundMain = !o.detach && o.keep && o.command.length > 0 && !o.commandAsExec
    const main = (o.detach || foregroundMain) && o.command.length ? o.command : [...IDLE_MAIN]
    const desc = this.describeAgent(plan, o, main)
    // What re-creating the agent container needs (restart): the description, never argv, and no
    // secret value (see description.ts).
    writeAgentDescription(this.dataDir, desc)
    const agent = this.renderAgent(desc, l.secretArgs, o.passEnv ?? {}, l.trust)
    if (foregroundMain) {
      // Created first so that --forward is in place before the command's first instruction.
      const created = runArgs(agent.spec, agent.ctx, { verb: 'create-main', tty: plan.tty })
      await this.podman.run(created.args, { env: created.podmanEnv })
      await o.onReady?.(name)
      finishOperation(this.dataDir, name)
      const code = await runInteractive(this.podman, startAttachedArgs(agentContainer(name)), { signals: this.signals })
      return { info: await this.get(name), exitCode: code, warnings }
    }
    if (o.detach || o.keep) {
      const run = runArgs(agent.spec, agent.ctx, { verb: 'run-detached' })
      await this.podman.run(run.args, { env: run.podmanEnv })
      await o.onReady?.(name)
      finishOperation(this.dataDir, name)
      if (o.detach) return { info: await this.get(name), warnings }
      // Kept sandbox: an idle main process keeps it Ready for later exec/connect; the foreground
      // command runs as an exec session whose signals podshell forwards.
      const code = await this.exec(name, plan.command, { tty: plan.tty, workdir: plan.workdir ?? undefined, env: {} })
      return { info: await this.get(name), exitCode: code, warnings }
    }
    // Fast path (DevAIFlow's launch): the command IS the agent container's main process, so
    // `podman run` proxies signals and the TTY natively; the sandbox goes afterwards.
    await o.onReady?.(name)
    finishOperation(this.dataDir, name)
    const fg = runArgs(agent.spec, agent.ctx, { verb: 'run-foreground', tty: plan.tty, command: plan.command })
    const code = await runInteractive(this.podman, fg.args, { env: fg.podmanEnv, signals: this.signals })
    // The exit status and all output are the caller's now; the pod goes in the background (and
    // gc finishes it if that process dies: see teardown.ts).
    spawnTeardown(this.dataDir, name, this.env)
    return { info: { ...planInfo(plan, o), phase: 'Deleting', exit_code: code }, exitCode: code, warnings }
  }

  /** The stored description of the agent container (no secret value: see description.ts). */
  private describeAgent(p: Plan, o: CreateOptions, main: string[]): AgentDescription {
    return {
      version: 2,
      name: p.name,
      image: p.image,
      main,
      home: p.home,
      uid: p.uid,
      gid: p.gid,
      workdir: p.workdir,
      mounts: p.mounts,
      masks: p.masks,
      tmpfsDirs: p.tmpfsDirs,
      seccomp: p.seccomp,
      resources: { ...(p.cpus !== undefined ? { cpus: p.cpus } : {}), ...(p.memory !== undefined ? { memory: p.memory } : {}), ...(p.pids !== undefined ? { pids: p.pids } : {}) },
      env: { ...o.env },
      callerEnv: Object.keys(o.passEnv ?? {}).sort(),
      ...(p.tty && this.env.TERM && /^[\w.+-]{1,64}$/.test(this.env.TERM) ? { term: this.env.TERM } : {}),
      providers: o.providers,
      ...(o.credentialMode === 'env' ? { credentialMode: 'env' as const } : {}),
      ...(o.allowSensitive ? { allowSensitive: true } : {}),
    }
  }

  /** The agent container spec of a description, with this release's limits and hardening. */
  private renderAgent(d: AgentDescription, secretArgs: readonly string[], callerValues: Record<string, string>, trust: SandboxTrustArgs): { spec: ContainerSpec; ctx: RenderContext } {
    const eff = loadEffectiveConfig(this.env, this.configLoad).effective
    const limits = sandboxLimits(eff.resources)
    const pids = pidsLimit(d.resources.pids ?? eff.resources.pids, this.podman.rootlessLimits)
    const { spec, values } = agentSpec(d, { dataDir: this.dataDir, limits, pids, secretArgs, trust, execServer: prepareExecServer(this.dataDir, d.name, this.env) })
    return { spec, ctx: this.renderContext({ ...callerValues, ...values }) }
  }

  private renderContext(values: Record<string, string>): RenderContext {
    return { values, cgroupLimits: this.podman.rootlessLimits, podSysfsMasks: sysfsNetMasks(this.podman.version) }
  }




  /** Validates and resolves CreateOptions into everything podman will be given. No side effects (src/sandbox/plan.ts). */
  plan(o: CreateOptions): Promise<Plan> {
    return planCreate(o, { podman: this.podman, dataDir: this.dataDir, env: this.env, seccompProfile: this.deps.seccompProfile, configLoad: this.configLoad })
  }

  /**
   * Removes a sandbox's state dir. Files the sandbox's containers created under subordinate uids
   * (possible for anything an image's root process writes into the home) are not the user's to
   * delete directly; `podman unshare` enters the user namespace where they are.
   */
  async removeState(name: string): Promise<void> {
    try {
      removeStateDir(this.dataDir, name)
    } catch (e) {
      const dir = sandboxDir(this.dataDir, name)
      const r = await this.podman.run(['unshare', 'rm', '-rf', '--', dir], { reject: false })
      if (r.exitCode !== 0) throw e
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
      const info = podInfo(this.dataDir, pod, ctrs ?? [], gw)
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
    const info = pod && podInfo(this.dataDir, pod, ctrs ?? [], gw)
    if (!info) throw notFound(name)
    return info
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
    const spec = peekAgentDescription(this.dataDir, name)
    const current = spec?.providers ?? []
    let desired: string[]
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
   * Stop + start, re-creating the agent container from its stored description (description.ts)
   * with THIS release's rendering: a sandbox made by an older podshell gets the current hardening
   * and limits, and provider changes (attach/detach) take effect (Podman binds secrets to a
   * container at creation). The pod, bridge, home dir, state and policy stay. env_pass values are
   * not stored: they are read again from this process's environment; names missing there are left
   * unset, with a warning.
   */
  async restart(name: string): Promise<SandboxInfo> {
    const { desired } = this.desiredProviders(name)
    const desc = readAgentDescription(this.dataDir, name)
    if (!desc) throw new PodshellError(`sandbox ${name} has no agent description`, { hint: 'its state dir lost agent.json; recreate the sandbox', code: 'STATE' })
    // The file is outside input (the gateway container mounts the data dir): validated when read,
    // and its mounts pass the sensitive-path and .ai-read-deny checks again before podman sees them.
    const eff = loadEffectiveConfig(this.env, this.configLoad).effective
    const pipe = pipelineOptions(eff, this.env, { podshellDataDir: this.dataDir, podshellConfigDir: configDir(this.env) }, desc.allowSensitive === true && eff.allowSensitive)
    for (const m of desc.mounts) if (!isSocketMaskMount(m, this.dataDir)) checkTreeSource({ path: m.source, mode: m.mode, what: 'stored mount' }, pipe)
    if (!existsSync(desc.seccomp)) {
      // Fails closed, as at create: the agent never runs unfiltered.
      throw new PodshellError(`seccomp profile not found: ${desc.seccomp}`, { hint: 'reinstall podshell, or recreate the sandbox', code: 'SECCOMP_MISSING' })
    }
    await this.stop(name)
    const callerValues: Record<string, string> = {}
    const missing: string[] = []
    for (const k of desc.callerEnv) {
      const v = this.env[k]
      if (v !== undefined && envValue.safeParse(v).success) callerValues[k] = v
      else missing.push(k)
    }
    const creds = await this.deps.prepareCredentials(this.podman, name, desired, desc.credentialMode)
    const next: AgentDescription = { ...desc, providers: desired }
    // The CA bundle is re-derived: a rotated CA reaches a sandbox at its restart.
    const trust = await this.deps.prepareTrust(name)
    const agent = this.renderAgent(next, creds.secretArgs, callerValues, trust)
    const created = runArgs(agent.spec, agent.ctx, { verb: 'create' })
    await this.podman.run(['rm', '-f', '--ignore', agentContainer(name)])
    await this.podman.run(created.args, { env: created.podmanEnv })
    // Rewritten in the current shape: a legacy agent.json (argv and env values) is gone now.
    writeAgentDescription(this.dataDir, next)
    for (const v of creds.variables) this.deps.audit(name, 'credential_injected', { provider: v.provider, variable: v.name })
    if (desired.length !== desc.providers.length || desired.some(p => !desc.providers.includes(p))) this.deps.audit(name, 'providers_changed', { providers: desired })
    if (missing.length) {
      this.say(`warning: env_pass variable${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not set in this environment, so unset in the restarted sandbox (podshell never stores their values)`)
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
    writeLastUsed(this.dataDir, name)
    // A gateway that was stopped or killed comes back with the next command that may need egress
    // (fast path: one control-socket ping). Not fatal: without a gateway the command still runs,
    // with no egress at all (the bridge has nothing to relay to: fail closed).
    await this.deps.ensureGateway(this.podman, this.say).catch((e: unknown) => {
      this.say(`warning: the egress gateway is not running, so this command has no network: ${e instanceof Error ? e.message : String(e)}`)
    })
    await watchHook(this.dataDir, name, 'command', { say: this.say, env: this.env })
    // Paused by the disk guard: an exec would be stopped with the rest; say why instead.
    const paused = diskPaused(this.dataDir, name)
    if (paused) throw diskPausedError(name, paused)
    // Held stopped by the mount sentinel (a protection it could not make again): an exec would be stopped too.
    const held = sentinelHeld(this.dataDir, name)
    if (held) throw new PodshellError(`sandbox ${name} is stopped by the mount sentinel: ${held}`, { hint: 'podshell sandbox stop, then start (or restart) mounts every protection again', exitCode: 1, code: 'PROTECTION_LOST' })
    const served = await execThroughServer(this.dataDir, name, this.podman.bin, this.podman.globalArgs(), { command: command.length ? command : LOGIN_SHELL, tty, workdir: opts.workdir, env: opts.env ?? {}, timeoutSeconds: opts.timeoutSeconds }, this.signals)
    if (served !== undefined) return served
    const session = execSession({ name, command: command.length ? command : LOGIN_SHELL, tty, workdir: opts.workdir, env: opts.env ?? {}, timeoutSeconds: opts.timeoutSeconds })
    const code = await runInteractive(this.podman, session.args, { ...session.options, signals: this.signals })
    if (PODMAN_EXEC_FAILURE_CODES.has(code)) await this.explainExecFailure(name)
    return code
  }

  /**
   * `sandbox connect`: a sandbox whose main process is a command shows that process (attached on
   * a terminal, its output followed otherwise); one without opens a login shell, as before.
   * Leaving (ctrl-p ctrl-q, or ending the follow) never stops the main process.
   */
  async connect(name: string, opts: { tty: boolean }): Promise<number> {
    const info = await this.get(name)
    if (info.main !== 'command') return this.exec(name, [], { tty: opts.tty })
    if (info.phase !== 'Ready') {
      throw new PodshellError(`sandbox ${name} is ${info.phase}`, { hint: `its main process is not running; \`podshell sandbox start ${name}\` runs it again`, code: 'NOT_READY' })
    }
    writeLastUsed(this.dataDir, name)
    // A signal ends podman's attach/logs (sig-proxy off), never the main process.
    return runInteractive(this.podman, attachMainArgs(agentContainer(name), opts.tty), { signals: this.signals })
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
   * Removes what an interrupted create left behind (src/sandbox/gc.ts). Runs at the start of
   * state-changing commands; cheap when there is nothing to do.
   */
  gc(opts: { full?: boolean } = {}): Promise<string[]> {
    return collectGarbage({ podman: this.podman, dataDir: this.dataDir, deps: this.deps, removeState: n => this.removeState(n) }, opts)
  }



  private startOperation(name: string): void {
    try {
      markOperation(this.dataDir, name)
    } catch {
      // Deleting must work on an unwritable state dir; gc then relies on Podman's labels.
    }
  }
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


function writePhaseHintSafe(data: string, name: string, hint: 'deleting'): void {
  try {
    writePhaseHint(data, name, hint)
  } catch {
    // Deleting must work even when the state dir is unwritable (full disk): the hint is cosmetic.
  }
}

