/**
 * The gateway: one process per user (in the `podshell-gateway` container), serving every sandbox's
 * egress proxy socket and a control socket.
 *
 * Policy loading (hot reload):
 *  - `reload(name)` (control socket; the CLI calls it right after `policy set`) loads the sandbox's
 *    newest revision. Valid → compiled, swapped in (NEW requests and connections use it at once;
 *    open tunnels it no longer allows are closed), marked LOADED. Invalid → marked FAILED and the
 *    revision in force stays in force. No revision ever loaded → deny everything.
 *  - A periodic rescan (default every 2 s) is the fallback for a missed control message and the
 *    way new sandbox dirs, vanished sandbox dirs, changed providers.json and deleted socket files
 *    are noticed.
 *
 * Fail-closed points: a sandbox whose policy store cannot be read keeps what it had (or nothing);
 * a policy that throws while compiling is FAILED; an exception in a request handler closes that
 * connection only.
 */
import type { Server, Socket } from 'node:net'
import { readdirSync, lstatSync, existsSync } from 'node:fs'
import { GATEWAY_LAYOUT } from './layout.js'
import {
  gatewaySandboxesDir,
  gatewaySandboxDir,
  sandboxPolicyDir,
  sandboxSocket,
  sandboxEgressDir,
  gatewayControlSocket,
  gatewayDir,
} from '../config/paths.js'
import { mkdirp } from '../util/fs.js'
import { SANDBOX_NAME_RE } from '../util/validate.js'
import type { Policy } from '../policy/schema.js'
import { PolicyStore } from '../policy/store.js'
import { activeGlobalPolicy } from '../policy/global.js'
import { PolicyEngine, type PolicyInput } from './policy-engine.js'
import { SandboxProxy, type ProxyLimits, type Resolver } from './proxy.js'
import { createSandboxResolver } from '../rules/dns.js'
import { AuditLog, type AuditOptions, type AuditSink } from './audit.js'
import type { IpAddress } from './address.js'
import { GatewayTls } from '../tls/gateway-tls.js'
import type { ReloadResult, StatsResult, SandboxStats, PingResult } from './client.js'
import { Contention } from './http/admission.js'
import { handleControlLine, listenControlSocket } from './control.js'
import { isPrintableCredentialValue } from '../credentials/input.js'
import { PolicyLoader } from './policy-load.js'
import { readProvidersFile } from './providers-file.js'
import { heldCredentials, type Served } from './served.js'
import {
  SandboxWorker,
  cidrPermit,
  defaultWorkerScript,
  hostsResolver,
  replayAudit,
  type FairnessOptions,
  type SerialTestHooks,
  type WorkerStats,
} from './fairness.js'

// The engine reads only network_policies; the schema's Policy must stay assignable to its input.
const _policyIsEngineInput = (p: Policy): PolicyInput => p
void _policyIsEngineInput

export interface GatewayTestHooks extends SerialTestHooks {
  /** Replaces DNS resolution (main thread only; `hosts` also reaches a sandbox moved to a worker). */
  resolve?: Resolver
  /** Lets addresses through that the SSRF rules refuse (main thread only; `permitCidrs` also reaches workers). */
  permitAddress?: (ip: IpAddress) => boolean
}

export interface GatewayOptions {
  dataDir: string
  limits?: Partial<ProxyLimits>
  /** Fallback rescan period, ms (default 2000; 0 disables). */
  rescanIntervalMs?: number
  audit?: AuditOptions
  /** The gateway's own operational log (container stdout). Default: none. */
  log?: (line: string) => void
  version?: string
  /**
   * FOR IN-PROCESS TESTS ONLY. Loopback is always blocked by the SSRF rules, so a test that runs
   * real clients against local servers needs its own resolver and an address override.
   *
   * This can only be set by code that constructs a Gateway. Production constructs exactly one, in
   * `podshell gateway serve` (src/cli/gateway.ts), from the --data flag alone: no environment
   * variable, config file, policy field or control-socket message reaches this option, so nothing
   * a sandbox (or a user's config) can influence turns the SSRF guard off.
   */
  testHooks?: GatewayTestHooks
  /**
   * TLS inspection (src/gateway/tls-terminate.ts): load or create the sandbox CA at start and
   * terminate CONNECTs to inspected endpoints. `gateway serve` turns it on.
   */
  tls?: boolean
  /**
   * Fairness between sandboxes (src/gateway/fairness.ts): a sandbox that exceeds its share while
   * another is active is served by a low-priority worker thread until it calms down.
   */
  fairness?: FairnessOptions
  /**
   * Set only by src/gateway/sandbox-worker.ts: this Gateway serves one sandbox in a worker thread
   * for the main thread's Gateway. It writes no policy-status marks and no policy audit records
   * (the main thread loads the same revisions and writes them), and its records go to `auditSink`.
   */
  follower?: { auditSink: (name: string) => AuditSink; values: [string, { provider: string; variable: string; value: string }][] }
}


export class Gateway {
  readonly dataDir: string
  private readonly opts: GatewayOptions
  private readonly served = new Map<string, Served>()
  /** Which sandboxes are active: a flooding sandbox's in-flight share shrinks while others are (admission.ts). */
  private readonly contention = new Contention()
  private readonly pending = new Map<string, Promise<Served | undefined>>()
  private control: Server | undefined
  private readonly controlSockets = new Set<Socket>()
  private rescanTimer: NodeJS.Timeout | undefined
  private rescanning = false
  private readonly started = Date.now()
  private stopped = false
  private tls: GatewayTls | undefined
  private fairnessTimer: NodeJS.Timeout | undefined

  private readonly loader: PolicyLoader

  constructor(opts: GatewayOptions) {
    this.dataDir = opts.dataDir
    this.opts = opts
    this.loader = new PolicyLoader(opts.dataDir, Boolean(opts.follower), l => this.log(l))
  }

  /** Worker mode: the threads serving moved sandboxes (tests, bench). */
  workerOf(name: string): SandboxWorker | undefined {
    return this.served.get(name)?.worker
  }

  private log(line: string): void {
    this.opts.log?.(`${new Date().toISOString()} ${line}`)
  }

  /** Serves the control socket and every sandbox found; starts the periodic rescan. */
  async start(): Promise<void> {
    mkdirp(gatewayDir(this.dataDir))
    mkdirp(gatewaySandboxesDir(this.dataDir))
    if (this.opts.tls) {
      this.tls = new GatewayTls(this.dataDir, l => this.log(l))
      const ca = await this.tls.start()
      this.log(`TLS inspection on: sandbox CA ${ca.fingerprint.slice(0, 16)}…`)
    }
    this.control = await listenControlSocket(gatewayControlSocket(this.dataDir), this, this.controlSockets)
    await this.rescan()
    const every = this.opts.rescanIntervalMs ?? 2000
    if (every > 0) {
      this.rescanTimer = setInterval(() => void this.rescan(), every)
      this.rescanTimer.unref()
    }
    if (this.opts.fairness?.workers) {
      this.fairnessTimer = setInterval(() => this.fairnessCheck(), this.opts.fairness.checkMs ?? 100)
      this.fairnessTimer.unref()
    }
    this.log(`gateway started: data ${this.dataDir}, ${this.served.size} sandbox(es)`)
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.rescanTimer) clearInterval(this.rescanTimer)
    if (this.fairnessTimer) clearInterval(this.fairnessTimer)
    for (const s of this.controlSockets) s.destroy()
    if (this.control) await new Promise<void>(r => this.control!.close(() => r()))
    await Promise.all([...this.served.values()].map(s => this.stopWorkers(s)))
    await Promise.all([...this.served.values()].map(s => s.proxy.close()))
    for (const s of this.served.values()) s.audit.close() // pending denial summaries are written
    this.served.clear()
    this.log('gateway stopped')
  }

  // -------------------------------------------------------------------------------------------
  // Sandboxes
  // -------------------------------------------------------------------------------------------

  /** Starts serving `name` (socket) if it is not served yet. */
  private async serve(name: string): Promise<Served | undefined> {
    const existing = this.served.get(name)
    if (existing) return existing
    const inflight = this.pending.get(name)
    if (inflight) return inflight
    const p = (async () => {
      if (!existsSync(gatewaySandboxDir(this.dataDir, name))) return undefined
      mkdirp(sandboxEgressDir(this.dataDir, name))
      const audit = this.opts.follower?.auditSink(name) ?? AuditLog.forSandbox(this.dataDir, name, this.opts.audit)
      const entry: Served = {
        name,
        audit,
        retired: new Set(),
        strikes: 0,
        moving: false,
        engine: PolicyEngine.denyAll(),
        version: null,
        globalHash: null,
        hash: null,
        policy: null,
        providersStamp: '',
        placeholders: [],
        values: new Map(this.opts.follower?.values ?? []),
        queue: Promise.resolve(),
        proxy: undefined as unknown as SandboxProxy,
      }
      entry.proxy = await this.newProxy(entry)
      // A follower serves a sandbox the main thread already serves: it listens only with the
      // policy in force loaded (startFollower), never deny-all in between.
      if (!this.opts.follower) await entry.proxy.listen(sandboxSocket(this.dataDir, name))
      this.served.set(name, entry)
      this.log(`serving sandbox ${name}`)
      return entry
    })()
    this.pending.set(name, p)
    try {
      return await p
    } finally {
      this.pending.delete(name)
    }
  }

  private async newProxy(entry: Served): Promise<SandboxProxy> {
    const hooks = this.opts.testHooks
    return new SandboxProxy({
      sandbox: entry.name,
      engine: () => entry.engine,
      policyVersion: () => entry.version,
      audit: entry.audit,
      // One resolver per sandbox, off libuv's shared thread pool (src/rules/dns.ts).
      resolve: hooks?.resolve ?? (hooks?.hosts ? hostsResolver(hooks.hosts) : createSandboxResolver()),
      permitAddress: hooks?.permitAddress ?? (hooks?.permitCidrs ? cidrPermit(hooks.permitCidrs) : undefined),
      limits: this.opts.limits,
      contention: this.opts.follower ? undefined : this.contention,
      tls: this.tls ? await this.tls.forSandbox(entry.name) : undefined,
      credentials: () => heldCredentials(entry),
    })
  }

  /** Stops serving `name`: closes its socket and every open connection. */
  async remove(name: string): Promise<boolean> {
    const s = this.served.get(name)
    if (!s) return false
    this.served.delete(name)
    await this.stopWorkers(s)
    await s.proxy.close()
    s.audit.close()
    this.log(`stopped serving sandbox ${name}`)
    return true
  }

  // -------------------------------------------------------------------------------------------
  // Fairness (src/gateway/fairness.ts)
  // -------------------------------------------------------------------------------------------

  /** Moves a sandbox over its share to a worker; moves a calm one back. */
  private fairnessCheck(): void {
    const f = this.opts.fairness
    if (!f?.workers || this.stopped) return
    for (const s of this.served.values()) {
      if (s.moving) continue
      if (s.worker) {
        if (performance.now() - s.worker.lastQueued > (f.calmMs ?? 5000)) void this.takeBack(s, 'calm')
        continue
      }
      const a = s.proxy.admission
      s.strikes = a.queued > 0 && this.contention.othersActive(a) ? s.strikes + 1 : 0
      if (s.strikes >= (f.strikes ?? 3)) void this.moveToWorker(s, `over its share while another sandbox is active (${a.queued} queued)`)
    }
  }

  /** Serves `s` from a low-priority worker thread; the main loop's proxy drains. */
  async moveToWorker(s: Served | string, why = 'moved on request'): Promise<boolean> {
    const entry = typeof s === 'string' ? this.served.get(s) : s
    if (!entry || entry.moving || entry.worker || this.stopped) return false
    entry.moving = true
    entry.strikes = 0
    const hooks = this.opts.testHooks
    const w = new SandboxWorker(
      this.opts.fairness?.workerScript ?? defaultWorkerScript(),
      {
        kind: 'podshell-sandbox-worker',
        dataDir: this.dataDir,
        name: entry.name,
        nice: this.opts.fairness?.nice ?? 19,
        tls: !!this.opts.tls,
        ...(this.opts.limits ? { limits: this.opts.limits } : {}),
        ...(this.opts.audit ? { audit: withoutClock(this.opts.audit) } : {}),
        ...(hooks
          ? {
              testHooks: {
                ...(hooks.hosts ? { hosts: hooks.hosts } : {}),
                ...(hooks.permitCidrs ? { permitCidrs: hooks.permitCidrs } : {}),
              },
            }
          : {}),
        values: [...entry.values],
      },
      { audit: calls => replayAudit(entry.audit, calls), log: l => this.log(`[worker ${entry.name}] ${l}`) },
    )
    void w.exited.then(code => this.workerExited(entry, w, code))
    try {
      await w.ready
    } catch (e) {
      entry.moving = false
      this.log(`sandbox ${entry.name}: could not move to a worker (${(e as Error).message}); it stays on the main loop`)
      // The worker may have renamed its socket over the sandbox's before it failed: listen again.
      if (this.served.get(entry.name) === entry && !this.stopped) await this.relisten(entry)
      return false
    }
    entry.moving = false
    if (this.served.get(entry.name) !== entry || this.stopped) {
      await w.stop()
      return false
    }
    entry.worker = w
    const old = entry.proxy
    void old.drain()
    this.log(`sandbox ${entry.name}: ${why}: moved to worker thread ${w.threadId} at nice ${this.opts.fairness?.nice ?? 19}`)
    return true
  }

  /** Serves `s` on the main loop again: a fresh proxy renamed over the socket; the worker drains and ends. */
  async takeBack(s: Served, why: 'calm' | 'crash' | 'socket'): Promise<void> {
    const w = s.worker
    if (!w || s.moving) return
    s.moving = true
    try {
      s.worker = undefined
      await this.relisten(s)
      if (why === 'crash') return
      s.retired.add(w)
      this.log(
        `sandbox ${s.name}: ${why === 'calm' ? 'calm again' : 'socket re-created'}: served on the main loop again; worker thread ${w.threadId} finishes its connections`,
      )
      void w.drain()
    } finally {
      s.moving = false
    }
  }

  /** A new main-loop proxy for `s` on its socket (the old one drains). */
  private async relisten(s: Served): Promise<void> {
    const old = s.proxy
    const proxy = await this.newProxy(s)
    await proxy.listen(sandboxSocket(this.dataDir, s.name))
    s.proxy = proxy
    void old.drain().then(() => old.close())
  }

  private workerExited(s: Served, w: SandboxWorker, code: number): void {
    s.retired.delete(w)
    if (s.worker !== w) return
    if (this.served.get(s.name) !== s || this.stopped || w.retiring) return
    // Fail closed: never leave the socket unserved, nor served without the policy in force (the
    // main thread's entry was kept current by every reload).
    void this.takeBack(s, 'crash').then(
      () =>
        this.log(
          `sandbox ${s.name}: worker thread ${w.threadId} exited (code ${code}); served on the main loop again with policy revision ${s.version ?? 'none'}`,
        ),
      e =>
        this.log(
          `sandbox ${s.name}: worker thread ${w.threadId} exited (code ${code}) and the main loop cannot serve it again: ${(e as Error).message}`,
        ),
    )
  }

  private async stopWorkers(s: Served): Promise<void> {
    const all = [...(s.worker ? [s.worker] : []), ...s.retired]
    s.worker = undefined
    s.retired.clear()
    await Promise.all(all.map(w => w.stop()))
  }

  /** Forwards a control request to the workers serving `s` (the moved one and the draining ones). */
  private async forward(s: Served, line: string): Promise<void> {
    const all = [...(s.worker ? [s.worker] : []), ...s.retired]
    await Promise.all(
      all.map(async w => {
        const r = await w.control(line)
        if (r.ok !== false) return
        this.log(`sandbox ${s.name}: worker thread ${w.threadId} did not apply a control request: ${String(r.error)}`)
        // A worker that hangs cannot be trusted to follow the policy: end it; its exit hands the
        // sandbox back to the main loop (workerExited), whose policy is current.
        if (r.timedOut) void w.terminate()
      }),
    )
  }

  /** Follower (worker thread): loads the policy in force, then takes over the sandbox's socket. */
  async startFollower(name: string, beforeListen?: () => void): Promise<void> {
    if (this.opts.tls) {
      this.tls = new GatewayTls(this.dataDir, l => this.log(l))
      await this.tls.start()
    }
    const r = await this.reload(name)
    if (r.status === 'FAILED' && r.version === undefined) throw new Error(`policy did not load: ${r.error}`)
    const s = this.served.get(name)
    if (!s) throw new Error(`no sandbox ${name}`)
    beforeListen?.()
    await s.proxy.listen(sandboxSocket(this.dataDir, name))
  }

  /** Follower: stop accepting, finish the open connections. */
  async drainFollower(name: string): Promise<void> {
    await this.served.get(name)?.proxy.drain()
  }

  followerStats(name: string): WorkerStats | undefined {
    const s = this.served.get(name)
    if (!s) return undefined
    const p = s.proxy
    return {
      connections: p.connections,
      allowed: p.allowed,
      denied: p.denied,
      queued: p.admission.queued,
      inFlight: p.admission.inFlight,
      policyVersion: s.version,
    }
  }

  /**
   * Serves `name` and loads its newest policy revision. The reply says what is in force now:
   * LOADED (the newest revision), FAILED (it did not load; the previous one stays), NO_POLICY.
   */
  async reload(name: string): Promise<ReloadResult> {
    if (!SANDBOX_NAME_RE.test(name)) throw new Error(`invalid sandbox name ${JSON.stringify(name)}`)
    const s = await this.serve(name)
    if (!s) {
      await this.remove(name)
      throw new Error(`no sandbox ${name} in ${gatewaySandboxesDir(this.dataDir)}`)
    }
    const run = s.queue.then(async () => {
      const r = await this.loader.load(s)
      // A moved sandbox: its worker loads the same revision (the main thread's entry stays current
      // too: it decides the draining connections and is what a crashed worker falls back to).
      if (s.worker || s.retired.size) await this.forward(s, JSON.stringify({ op: 'reload', sandbox: s.name }))
      return r
    })
    s.queue = run.catch(() => undefined)
    return run
  }

  /**
   * Reconciles with the data dir: serves new sandboxes, reloads changed revisions and providers,
   * re-creates deleted sockets, and stops serving sandboxes whose dir is gone.
   */
  async rescan(): Promise<void> {
    if (this.rescanning || this.stopped) return
    this.rescanning = true
    try {
      let names: string[] = []
      try {
        names = readdirSync(gatewaySandboxesDir(this.dataDir)).filter(n => SANDBOX_NAME_RE.test(n))
      } catch {
        names = []
      }
      const present = new Set(names)
      let globalHash: string | null = null
      try {
        globalHash = activeGlobalPolicy(this.dataDir)?.hash ?? null
      } catch {
        globalHash = 'unreadable' // reload says why, and keeps what is in force
      }
      for (const name of [...this.served.keys()]) {
        if (!present.has(name) || !existsSync(gatewaySandboxDir(this.dataDir, name))) await this.remove(name)
      }
      for (const name of names) {
        if (this.stopped) return
        try {
          const s = this.served.get(name)
          if (s && !socketExists(sandboxSocket(this.dataDir, name))) {
            // Someone removed the socket file (or the egress dir): serve it again.
            if (s.moving) continue
            await this.remove(name)
          }
          const cur = this.served.get(name)
          if (!cur) {
            if (existsSync(sandboxPolicyDir(this.dataDir, name)) || existsSync(sandboxEgressDir(this.dataDir, name)))
              await this.reload(name)
            continue
          }
          const latest = new PolicyStore(sandboxPolicyDir(this.dataDir, name)).latest()
          const prov = readProvidersFile(this.dataDir, name)
          const globalChanged = globalHash !== cur.globalHash && globalHash !== 'unreadable'
          const ownChanged = globalHash === null && latest && latest.version !== cur.version && latest.status !== 'FAILED'
          if (ownChanged || globalChanged || prov.stamp !== cur.providersStamp) await this.reload(name)
        } catch (e) {
          this.log(`rescan of ${name}: ${(e as Error).message}`)
        }
      }
    } finally {
      this.rescanning = false
    }
  }

  stats(): StatsResult {
    const m = process.memoryUsage()
    const sandboxes: SandboxStats[] = [...this.served.values()].map(s => ({
      name: s.name,
      socket: s.proxy.path ?? '',
      connections: s.proxy.connections + sumWorkers(s, 'connections'),
      allowed: s.proxy.allowed + sumWorkers(s, 'allowed'),
      denied: s.proxy.denied + sumWorkers(s, 'denied'),
      policyVersion: s.version,
      auditDropped: s.audit.dropped,
    }))
    return {
      pid: process.pid,
      uptimeMs: Date.now() - this.started,
      memory: { rss: m.rss, heapUsed: m.heapUsed, external: m.external },
      connections: sandboxes.reduce((n, s) => n + s.connections, 0),
      sandboxes,
    }
  }

  ping(): PingResult {
    const credentialsMissing = [...this.served.values()].filter(s => heldCredentials(s).some(c => c.value === undefined)).map(s => s.name)
    return {
      version: this.opts.version ?? '0.0.0',
      layout: GATEWAY_LAYOUT,
      pid: process.pid,
      uptimeMs: Date.now() - this.started,
      sandboxes: this.served.size,
      credentialsMissing,
    }
  }

  // -------------------------------------------------------------------------------------------
  // Control socket (src/gateway/control.ts parses; these act)
  // -------------------------------------------------------------------------------------------

  /** One control request → one reply object. Never throws. */
  handleControl(line: string): Promise<Record<string, unknown>> {
    return handleControlLine(this, line)
  }

  /** Real values for one sandbox's placeholders (the CLI read them from the Podman secrets). */
  async setCredentials(name: string, list: readonly unknown[], line: string): Promise<number | undefined> {
    const s = await this.serve(name)
    if (!s) return undefined
    s.values.clear()
    for (const c of list as unknown[]) {
      const v = c as { provider?: unknown; variable?: unknown; placeholder?: unknown; value?: unknown }
      if ([v?.provider, v?.variable, v?.placeholder, v?.value].every(x => typeof x === 'string') && isPrintableCredentialValue(v.value as string)) {
        s.values.set(v.placeholder as string, { provider: v.provider as string, variable: v.variable as string, value: v.value as string })
      }
    }
    // providers.json may be newer than the last rescan: read the placeholders now.
    s.placeholders = readProvidersFile(this.dataDir, s.name).placeholders
    await this.forward(s, line)
    return s.values.size
  }

  /**
   * `provider update`: running sandboxes' placeholders of this provider resolve to the new values
   * at once (no restart). Only placeholders a sandbox already has are touched.
   */
  async rotateCredentials(provider: string, values: Record<string, unknown>, line: string): Promise<number> {
    let rotated = 0
    for (const s of this.served.values()) {
      for (const p of s.placeholders) {
        const v = values[p.variable]
        if (p.provider !== provider || typeof v !== 'string' || !isPrintableCredentialValue(v)) continue
        s.values.set(p.placeholder, { provider: p.provider, variable: p.variable, value: v })
        rotated++
      }
    }
    for (const s of this.served.values()) await this.forward(s, line)
    return rotated
  }

  /** A provider was deleted: its placeholders stop resolving in every sandbox at once. */
  async dropCredentials(provider: string, line: string): Promise<number> {
    let dropped = 0
    for (const s of this.served.values()) {
      for (const [k, v] of s.values) {
        if (v.provider !== provider) continue
        s.values.delete(k)
        dropped++
      }
    }
    for (const s of this.served.values()) await this.forward(s, line)
    return dropped
  }
}

/** Audit options as data (a test clock cannot cross to a worker thread). */
function withoutClock(o: AuditOptions): Omit<AuditOptions, 'now'> {
  const { now: _now, ...rest } = o
  void _now
  return rest
}

/** Counts of the worker threads serving a moved sandbox (reported every 250 ms). */
function sumWorkers(s: Served, k: 'connections' | 'allowed' | 'denied'): number {
  let n = s.worker ? s.worker.stats[k] : 0
  for (const w of s.retired) n += w.stats[k]
  return n
}

function socketExists(path: string): boolean {
  try {
    return lstatSync(path).isSocket()
  } catch {
    return false
  }
}
