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
import { AuditLog, type AuditOptions } from './audit.js'
import type { IpAddress } from './address.js'
import { GatewayTls } from '../tls/gateway-tls.js'
import type { HeldCredential } from './credential-substitution.js'
import type { ReloadResult, StatsResult, SandboxStats, PingResult } from './client.js'
import { Contention } from './http/admission.js'

// The engine reads only network_policies; the schema's Policy must stay assignable to its input.
const _policyIsEngineInput = (p: Policy): PolicyInput => p
void _policyIsEngineInput

export interface GatewayTestHooks {
  /** Replaces DNS resolution. */
  resolve?: Resolver
  /** Lets addresses through that the SSRF rules refuse (e.g. 127.0.0.1 test servers). */
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
}

interface Served {
  readonly name: string
  readonly proxy: SandboxProxy
  readonly audit: AuditLog
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

  constructor(opts: GatewayOptions) {
    this.dataDir = opts.dataDir
    this.opts = opts
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
    this.log(`gateway started: data ${this.dataDir}, ${this.served.size} sandbox(es)`)
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.rescanTimer) clearInterval(this.rescanTimer)
    for (const s of this.controlSockets) s.destroy()
    if (this.control) await new Promise<void>(r => this.control!.close(() => r()))
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
      const audit = AuditLog.forSandbox(this.dataDir, name, this.opts.audit)
      const entry: Served = {
        name,
        audit,
        engine: PolicyEngine.denyAll(),
        version: null,
        globalHash: null,
        hash: null,
        policy: null,
        providersStamp: '',
        placeholders: [],
        values: new Map(),
        queue: Promise.resolve(),
        proxy: undefined as unknown as SandboxProxy,
      }
      const proxy = new SandboxProxy({
        sandbox: name,
        engine: () => entry.engine,
        policyVersion: () => entry.version,
        audit,
        // One resolver per sandbox, off libuv's shared thread pool (src/rules/dns.ts).
        resolve: this.opts.testHooks?.resolve ?? createSandboxResolver(),
        permitAddress: this.opts.testHooks?.permitAddress,
        limits: this.opts.limits,
        contention: this.contention,
        tls: this.tls ? await this.tls.forSandbox(name) : undefined,
        credentials: () => heldCredentials(entry),
      })
      ;(entry as { proxy: SandboxProxy }).proxy = proxy
      await proxy.listen(sandboxSocket(this.dataDir, name))
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

  /** Stops serving `name`: closes its socket and every open connection. */
  async remove(name: string): Promise<boolean> {
    const s = this.served.get(name)
    if (!s) return false
    this.served.delete(name)
    await s.proxy.close()
    s.audit.close()
    this.log(`stopped serving sandbox ${name}`)
    return true
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
    const run = s.queue.then(() => this.load(s))
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
      s.audit.config({ state: 'failed', version: s.version ?? 0, error, message: 'policy store unreadable; the policy in force stays' })
      return { status: 'FAILED', error, ...(s.version !== null ? { version: s.version } : {}) }
    }
    const providersChanged = prov.stamp !== s.providersStamp
    // A global policy replaces the sandbox's own (OpenShell's policy_source: global).
    let global: PolicyLayer | undefined
    try {
      global = activeGlobalPolicy(this.dataDir)
    } catch (e) {
      const error = `cannot read the global policy: ${(e as Error).message}`
      s.audit.config({ state: 'failed', version: s.version ?? 0, error, message: 'global policy store unreadable; the policy in force stays' })
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
    s.audit.config({ state: 'failed', version: newest.version, hash: newest.hash.slice(0, 12), error: attempt.error })
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
      s.audit.config({ state: 'failed', version: g.version, hash: g.hash.slice(0, 12), error })
      return { status: 'FAILED', version: g.version, error }
    }
    s.engine = engine
    s.policy = g.policy
    s.globalHash = g.hash
    s.providersStamp = prov.stamp
    s.audit.config({ state: 'loaded', version: g.version, hash: g.hash.slice(0, 12), message: 'global policy' })
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
    s.audit.config({ state: 'loaded', version: rev.version, hash: rev.hash.slice(0, 12) })
    const closed = s.proxy.revalidate()
    this.log(`sandbox ${s.name}: policy revision ${rev.version} LOADED${closed ? ` (${closed} open connection(s) closed)` : ''}`)
    return { ok: true }
  }

  private safeMark(fn: () => void): void {
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
      connections: s.proxy.connections,
      allowed: s.proxy.allowed,
      denied: s.proxy.denied,
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

function socketExists(path: string): boolean {
  try {
    return lstatSync(path).isSocket()
  } catch {
    return false
  }
}
