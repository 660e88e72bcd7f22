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
import { createServer, type Server, type Socket } from 'node:net'
import { readdirSync, readFileSync, statSync, lstatSync, existsSync, unlinkSync, chmodSync } from 'node:fs'
import { GATEWAY_LAYOUT } from './layout.js'
import { gatewaySandboxesDir, gatewaySandboxDir, sandboxPolicyDir, sandboxSocket, sandboxEgressDir, sandboxProvidersFile, gatewayControlSocket, gatewayDir } from '../config/paths.js'
import { mkdirp } from '../util/fs.js'
import { SANDBOX_NAME_RE } from '../util/validate.js'
import { PolicyStore, type PolicyRevision } from '../policy/store.js'
import { activeGlobalPolicy, type PolicyLayer } from '../policy/global.js'
import type { Policy } from '../policy/schema.js'
import { PolicyEngine, type ProviderAttachment, type PolicyInput } from './policy-engine.js'
import { SandboxProxy, type ProxyLimits, type Resolver } from './proxy.js'
import { createSandboxResolver } from '../rules/dns.js'
import { AuditLog, type AuditOptions, type AuditSink } from './audit.js'
import type { IpAddress } from './address.js'
import { GatewayTls } from '../tls/gateway-tls.js'
import type { HeldCredential } from './credential-substitution.js'
import type { ReloadResult, StatsResult, SandboxStats, PingResult } from './client.js'
import { Contention } from './http/admission.js'
import { SandboxWorker, cidrPermit, defaultWorkerScript, hostsResolver, replayAudit, type FairnessOptions, type SerialTestHooks, type WorkerStats } from './fairness.js'

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

interface Served {
  readonly name: string
  /** The main loop's proxy (after a move: the one draining its last connections). */
  proxy: SandboxProxy
  readonly audit: AuditSink
  /** The worker thread serving this sandbox now (fairness), if it was moved. */
  worker?: SandboxWorker | undefined
  /** Workers of earlier moves that are finishing their connections. */
  readonly retired: Set<SandboxWorker>
  /** Consecutive fairness checks over its share; set while a move is under way. */
  strikes: number
  moving: boolean
  engine: PolicyEngine
  version: number | null
  hash: string | null
  policy: Policy | null
  providersStamp: string
  /** Hash of the global policy in force for this sandbox (src/policy/global.ts), null: its own. */
  globalHash: string | null
  /** Placeholders of the attached providers (providers.json; not secret). */
  placeholders: readonly { provider: string; variable: string; placeholder: string }[]
  /** Real values by placeholder, pushed by the CLI over the control socket; memory only (issue 12). */
  readonly values: Map<string, { provider: string; variable: string; value: string }>
  /** Serializes reloads of this sandbox. */
  queue: Promise<unknown>
}

const MAX_CONTROL_LINE = 64 * 1024

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

  constructor(opts: GatewayOptions) {
    this.dataDir = opts.dataDir
    this.opts = opts
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
    await this.listenControl()
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
        ...(hooks ? { testHooks: { ...(hooks.hosts ? { hosts: hooks.hosts } : {}), ...(hooks.permitCidrs ? { permitCidrs: hooks.permitCidrs } : {}) } } : {}),
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
      this.log(`sandbox ${s.name}: ${why === 'calm' ? 'calm again' : 'socket re-created'}: served on the main loop again; worker thread ${w.threadId} finishes its connections`)
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
      () => this.log(`sandbox ${s.name}: worker thread ${w.threadId} exited (code ${code}); served on the main loop again with policy revision ${s.version ?? 'none'}`),
      e => this.log(`sandbox ${s.name}: worker thread ${w.threadId} exited (code ${code}) and the main loop cannot serve it again: ${(e as Error).message}`),
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
    return { connections: p.connections, allowed: p.allowed, denied: p.denied, queued: p.admission.queued, inFlight: p.admission.inFlight, policyVersion: s.version }
  }

  private readProviders(name: string): { stamp: string; list: ProviderAttachment[]; placeholders: Served['placeholders'] } {
    const file = sandboxProvidersFile(this.dataDir, name)
    try {
      const st = statSync(file)
      const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`
      const raw = JSON.parse(readFileSync(file, 'utf8')) as unknown
      const list: ProviderAttachment[] = []
      const placeholders: { provider: string; variable: string; placeholder: string }[] = []
      if (Array.isArray(raw)) {
        for (const p of raw) {
          if (p && typeof p === 'object' && typeof (p as ProviderAttachment).name === 'string' && typeof (p as ProviderAttachment).type === 'string') {
            const creds = (p as { credentials?: unknown }).credentials
            for (const c of Array.isArray(creds) ? (creds as unknown[]) : []) {
              const v = c as { variable?: unknown; placeholder?: unknown }
              if (typeof v?.variable === 'string' && typeof v.placeholder === 'string' && /^[A-Za-z0-9_-]{8,}$/.test(v.placeholder)) {
                placeholders.push({ provider: (p as ProviderAttachment).name, variable: v.variable, placeholder: v.placeholder })
              }
            }
            const cfg = (p as { config?: unknown }).config
            const eps = (p as { endpoints?: unknown }).endpoints
            const endpoints = (Array.isArray(eps) ? (eps as { host?: unknown; port?: unknown; path?: unknown }[]) : [])
              .filter(e => typeof e?.host === 'string' && Number.isInteger(e.port) && (e.path === undefined || typeof e.path === 'string'))
              .map(e => ({ host: e.host as string, port: e.port as number, ...(typeof e.path === 'string' ? { path: e.path } : {}) }))
            list.push({
              name: (p as ProviderAttachment).name,
              type: (p as ProviderAttachment).type,
              config: cfg && typeof cfg === 'object' ? Object.fromEntries(Object.entries(cfg).filter(([, v]) => typeof v === 'string')) as Record<string, string> : {},
              ...(endpoints.length ? { endpoints } : {}),
            })
          }
        }
      }
      return { stamp, list, placeholders }
    } catch {
      // Absent or unreadable: attribution is informational, never a reason to deny or allow.
      return { stamp: 'none', list: [], placeholders: [] }
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
      const r = await this.load(s)
      // A moved sandbox: its worker loads the same revision (the main thread's entry stays current
      // too: it decides the draining connections and is what a crashed worker falls back to).
      if (s.worker || s.retired.size) await this.forward(s, JSON.stringify({ op: 'reload', sandbox: s.name }))
      return r
    })
    s.queue = run.catch(() => undefined)
    return run
  }

  private compile(policy: Policy | null, providers: ProviderAttachment[]): PolicyEngine {
    return policy ? PolicyEngine.compile(policy, providers) : PolicyEngine.denyAll()
  }

  private async load(s: Served): Promise<ReloadResult> {
    const t0 = performance.now()
    const store = new PolicyStore(sandboxPolicyDir(this.dataDir, s.name))
    const prov = this.readProviders(s.name)
    s.placeholders = prov.placeholders
    let revs: PolicyRevision[]
    try {
      revs = store.list()
    } catch (e) {
      const error = `cannot read the policy store: ${(e as Error).message}`
      this.auditConfig(s, { state: 'failed', version: s.version ?? 0, error, message: 'policy store unreadable; the policy in force stays' })
      return { status: 'FAILED', error, ...(s.version !== null ? { version: s.version } : {}) }
    }
    const providersChanged = prov.stamp !== s.providersStamp
    // A global policy replaces the sandbox's own (OpenShell's policy_source: global).
    let global: PolicyLayer | undefined
    try {
      global = activeGlobalPolicy(this.dataDir)
    } catch (e) {
      const error = `cannot read the global policy: ${(e as Error).message}`
      this.auditConfig(s, { state: 'failed', version: s.version ?? 0, error, message: 'global policy store unreadable; the policy in force stays' })
      return { status: 'FAILED', error, ...(s.version !== null ? { version: s.version } : {}) }
    }
    if (global) return this.loadGlobal(s, global, prov, providersChanged, t0)
    if (s.globalHash !== null) {
      // The global policy was deleted: the sandbox's own newest revision is loaded again.
      s.globalHash = null
      s.version = null
    }
    const newest = revs.at(-1)
    if (!newest) {
      s.engine = PolicyEngine.denyAll()
      s.version = null
      s.policy = null
      s.providersStamp = prov.stamp
      s.proxy.revalidate()
      return { status: 'NO_POLICY' }
    }
    if (newest.version === s.version) {
      if (providersChanged) {
        s.engine = this.compile(s.policy, prov.list)
        s.providersStamp = prov.stamp
      }
      if (newest.status !== 'LOADED') this.safeMark(() => store.markLoaded(newest.version))
      return { status: 'LOADED', version: newest.version, loadMs: performance.now() - t0 }
    }
    if (newest.status === 'FAILED') {
      // Already tried and failed: do not retry it. A fresh gateway still needs what was in force.
      if (s.version === null) await this.loadLastGood(s, store, revs, prov)
      else if (providersChanged) {
        s.engine = this.compile(s.policy, prov.list)
        s.providersStamp = prov.stamp
      }
      return { status: 'FAILED', version: newest.version, error: newest.load_error ?? 'failed to load' }
    }
    const attempt = this.tryLoad(s, store, newest, prov)
    if (attempt.ok) return { status: 'LOADED', version: newest.version, loadMs: performance.now() - t0 }
    this.safeMark(() => store.markFailed(newest.version, attempt.error))
    this.auditConfig(s, { state: 'failed', version: newest.version, hash: newest.hash.slice(0, 12), error: attempt.error })
    this.log(`sandbox ${s.name}: policy revision ${newest.version} FAILED: ${attempt.error}`)
    if (s.version === null) await this.loadLastGood(s, store, revs, prov)
    return { status: 'FAILED', version: newest.version, error: attempt.error }
  }

  /** Puts the global policy in force for `s` (its own revisions stay as they are, for later). */
  private loadGlobal(s: Served, g: PolicyLayer, prov: { stamp: string; list: ProviderAttachment[] }, providersChanged: boolean, t0: number): ReloadResult {
    if (s.globalHash === g.hash && !providersChanged) return { status: 'LOADED', version: g.version, loadMs: performance.now() - t0 }
    let engine: PolicyEngine
    try {
      engine = PolicyEngine.compile(g.policy, prov.list)
    } catch (e) {
      const error = `global policy revision ${g.version}: ${(e as Error).message.replace(/\s+/g, ' ').trim()}`
      this.auditConfig(s, { state: 'failed', version: g.version, hash: g.hash.slice(0, 12), error })
      return { status: 'FAILED', version: g.version, error }
    }
    s.engine = engine
    s.policy = g.policy
    s.globalHash = g.hash
    s.providersStamp = prov.stamp
    this.auditConfig(s, { state: 'loaded', version: g.version, hash: g.hash.slice(0, 12), message: 'global policy' })
    const closed = s.proxy.revalidate()
    this.log(`sandbox ${s.name}: global policy revision ${g.version} LOADED${closed ? ` (${closed} open connection(s) closed)` : ''}`)
    return { status: 'LOADED', version: g.version, loadMs: performance.now() - t0 }
  }

  /** After a failure on a gateway with nothing loaded: the newest revision that loaded before. */
  private async loadLastGood(s: Served, store: PolicyStore, revs: PolicyRevision[], prov: { stamp: string; list: ProviderAttachment[]; placeholders: Served['placeholders'] }): Promise<void> {
    for (const r of [...revs].reverse()) {
      if (r.status !== 'LOADED' && r.status !== 'SUPERSEDED') continue
      if (this.tryLoad(s, store, r, prov, r.status === 'LOADED').ok) return
    }
  }

  private tryLoad(s: Served, store: PolicyStore, rev: PolicyRevision, prov: { stamp: string; list: ProviderAttachment[] }, mark = true): { ok: true } | { ok: false; error: string } {
    let policy: Policy
    let engine: PolicyEngine
    try {
      const got = store.get(rev.version)
      if (!got) throw new Error(`revision ${rev.version} vanished`)
      policy = got.policy
      engine = PolicyEngine.compile(policy, prov.list)
    } catch (e) {
      return { ok: false, error: (e as Error).message.replace(/\s+/g, ' ').trim() }
    }
    // Swap: every request decided from here on uses the new engine.
    s.engine = engine
    s.policy = policy
    s.version = rev.version
    s.hash = rev.hash
    s.providersStamp = prov.stamp
    if (mark) this.safeMark(() => store.markLoaded(rev.version))
    this.auditConfig(s, { state: 'loaded', version: rev.version, hash: rev.hash.slice(0, 12) })
    const closed = s.proxy.revalidate()
    this.log(`sandbox ${s.name}: policy revision ${rev.version} LOADED${closed ? ` (${closed} open connection(s) closed)` : ''}`)
    return { ok: true }
  }

  /** Policy audit records: written by the main thread only (a follower loads the same revisions). */
  private auditConfig(s: Served, e: Parameters<AuditSink['config']>[0]): void {
    if (!this.opts.follower) s.audit.config(e)
  }

  private safeMark(fn: () => void): void {
    if (this.opts.follower) return
    try {
      fn()
    } catch (e) {
      this.log(`cannot record policy status: ${(e as Error).message}`)
    }
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
            if (existsSync(sandboxPolicyDir(this.dataDir, name)) || existsSync(sandboxEgressDir(this.dataDir, name))) await this.reload(name)
            continue
          }
          const latest = new PolicyStore(sandboxPolicyDir(this.dataDir, name)).latest()
          const prov = this.readProviders(name)
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
    return { version: this.opts.version ?? '0.0.0', layout: GATEWAY_LAYOUT, pid: process.pid, uptimeMs: Date.now() - this.started, sandboxes: this.served.size, credentialsMissing }
  }

  // -------------------------------------------------------------------------------------------
  // Control socket
  // -------------------------------------------------------------------------------------------

  private listenControl(): Promise<void> {
    const path = gatewayControlSocket(this.dataDir)
    try {
      const st = lstatSync(path)
      if (st.isSocket() || st.isSymbolicLink()) unlinkSync(path)
    } catch {
      // none
    }
    const server = createServer(sock => this.onControl(sock))
    this.control = server
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      const old = process.umask(0o177)
      try {
        server.listen(path, () => {
          server.off('error', reject)
          try {
            chmodSync(path, 0o600)
          } catch {
            // umask made it 0600 already
          }
          resolve()
        })
      } finally {
        process.umask(old)
      }
    })
  }

  private onControl(sock: Socket): void {
    this.controlSockets.add(sock)
    sock.on('close', () => this.controlSockets.delete(sock))
    sock.on('error', () => sock.destroy())
    sock.setEncoding('utf8')
    let buf = ''
    sock.on('data', (chunk: string) => {
      buf += chunk
      if (buf.length > MAX_CONTROL_LINE) {
        sock.end(JSON.stringify({ ok: false, error: 'request too large' }) + '\n')
        return
      }
      let nl: number
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        void this.handleControl(line).then(reply => {
          if (!sock.destroyed) sock.write(JSON.stringify(reply) + '\n')
        })
      }
    })
  }

  /** One control request → one reply object. Never throws. */
  async handleControl(line: string): Promise<Record<string, unknown>> {
    let req: { id?: unknown; op?: unknown; sandbox?: unknown }
    try {
      req = JSON.parse(line) as typeof req
    } catch {
      return { ok: false, error: 'invalid JSON' }
    }
    const id = typeof req.id === 'number' ? req.id : null
    try {
      switch (req.op) {
        case 'ping':
          return { id, ok: true, ...this.ping() }
        case 'stats':
          return { id, ok: true, ...this.stats() }
        case 'reload':
          if (typeof req.sandbox !== 'string') return { id, ok: false, error: 'sandbox is required' }
          return { id, ok: true, ...(await this.reload(req.sandbox)) }
        case 'credentials': {
          // Real values for one sandbox's placeholders (the CLI read them from the Podman secrets).
          if (typeof req.sandbox !== 'string') return { id, ok: false, error: 'sandbox is required' }
          const s = await this.serve(req.sandbox)
          if (!s) return { id, ok: false, error: `no sandbox ${req.sandbox}` }
          const list = (req as { credentials?: unknown }).credentials
          if (!Array.isArray(list)) return { id, ok: false, error: 'credentials must be a list' }
          s.values.clear()
          for (const c of list as unknown[]) {
            const v = c as { provider?: unknown; variable?: unknown; placeholder?: unknown; value?: unknown }
            if ([v?.provider, v?.variable, v?.placeholder, v?.value].every(x => typeof x === 'string') && /^[\x20-\x7e]+$/.test(v.value as string)) {
              s.values.set(v.placeholder as string, { provider: v.provider as string, variable: v.variable as string, value: v.value as string })
            }
          }
          // providers.json may be newer than the last rescan: read the placeholders now.
          s.placeholders = this.readProviders(s.name).placeholders
          await this.forward(s, line)
          return { id, ok: true, held: s.values.size }
        }
        case 'credentials-rotate': {
          // `provider update`: running sandboxes' placeholders of this provider resolve to the new
          // values at once (no restart). Only placeholders a sandbox already has are touched.
          const r = req as { provider?: unknown; values?: unknown }
          if (typeof r.provider !== 'string' || typeof r.values !== 'object' || r.values === null) return { id, ok: false, error: 'provider and values are required' }
          const values = r.values as Record<string, unknown>
          let rotated = 0
          for (const s of this.served.values()) {
            for (const p of s.placeholders) {
              const v = values[p.variable]
              if (p.provider !== r.provider || typeof v !== 'string' || !/^[\x20-\x7e]+$/.test(v)) continue
              s.values.set(p.placeholder, { provider: p.provider, variable: p.variable, value: v })
              rotated++
            }
          }
          for (const s of this.served.values()) await this.forward(s, line)
          return { id, ok: true, rotated }
        }
        case 'credentials-drop': {
          // A provider was deleted: its placeholders stop resolving in every sandbox at once.
          const provider = (req as { provider?: unknown }).provider
          if (typeof provider !== 'string') return { id, ok: false, error: 'provider is required' }
          let dropped = 0
          for (const s of this.served.values()) {
            for (const [k, v] of s.values) {
              if (v.provider !== provider) continue
              s.values.delete(k)
              dropped++
            }
          }
          for (const s of this.served.values()) await this.forward(s, line)
          return { id, ok: true, dropped }
        }
        case 'remove':
          if (typeof req.sandbox !== 'string') return { id, ok: false, error: 'sandbox is required' }
          return { id, ok: true, removed: await this.remove(req.sandbox) }
        default:
          return { id, ok: false, error: `unknown op ${JSON.stringify(req.op)}` }
      }
    } catch (e) {
      return { id, ok: false, error: (e as Error).message }
    }
  }
}

/** What the sandbox's proxy substitutes: every placeholder it was given, with the value when held. */
function heldCredentials(s: Served): HeldCredential[] {
  return s.placeholders.map(p => {
    const v = s.values.get(p.placeholder)
    return { ...p, value: v && v.provider === p.provider && v.variable === p.variable ? v.value : undefined }
  })
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
