/**
 * Loading a sandbox's policy into the gateway (hot reload): the newest revision of its store, or
 * the global policy when one is in force (OpenShell's policy_source: global), compiled with its
 * providers and swapped in; a revision that fails is marked FAILED and the one in force stays; a
 * gateway with nothing loaded yet falls back to the newest revision that loaded before. A follower
 * (a sandbox moved to a worker thread, src/gateway/fairness.ts) loads the same revisions but writes
 * no marks and no policy audit records: the main thread does.
 */
import { performance } from 'node:perf_hooks'
import { sandboxPolicyDir } from '../config/paths.js'
import { PolicyStore, type PolicyRevision } from '../policy/store.js'
import { activeGlobalPolicy, type PolicyLayer } from '../policy/global.js'
import type { Policy } from '../policy/schema.js'
import { PolicyEngine, type ProviderAttachment } from './policy-engine.js'
import type { AuditSink } from './audit.js'
import type { ReloadResult } from './client.js'
import { readProvidersFile } from './providers-file.js'
import type { Served } from './served.js'

export class PolicyLoader {
  constructor(
    private readonly dataDir: string,
    private readonly follower: boolean,
    private readonly log: (line: string) => void,
  ) {}

  private compile(policy: Policy | null, providers: ProviderAttachment[]): PolicyEngine {
    return policy ? PolicyEngine.compile(policy, providers) : PolicyEngine.denyAll()
  }

  async load(s: Served): Promise<ReloadResult> {
    const t0 = performance.now()
    const store = new PolicyStore(sandboxPolicyDir(this.dataDir, s.name))
    const prov = readProvidersFile(this.dataDir, s.name)
    s.placeholders = prov.placeholders
    let revs: PolicyRevision[]
    try {
      revs = store.list()
    } catch (e) {
      const error = `cannot read the policy store: ${(e as Error).message}`
      this.auditConfig(s, {
        state: 'failed',
        version: s.version ?? 0,
        error,
        message: 'policy store unreadable; the policy in force stays',
      })
      return { status: 'FAILED', error, ...(s.version !== null ? { version: s.version } : {}) }
    }
    const providersChanged = prov.stamp !== s.providersStamp
    // A global policy replaces the sandbox's own (OpenShell's policy_source: global).
    let global: PolicyLayer | undefined
    try {
      global = activeGlobalPolicy(this.dataDir)
    } catch (e) {
      const error = `cannot read the global policy: ${(e as Error).message}`
      this.auditConfig(s, {
        state: 'failed',
        version: s.version ?? 0,
        error,
        message: 'global policy store unreadable; the policy in force stays',
      })
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
  private loadGlobal(
    s: Served,
    g: PolicyLayer,
    prov: { stamp: string; list: ProviderAttachment[] },
    providersChanged: boolean,
    t0: number,
  ): ReloadResult {
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
  private async loadLastGood(
    s: Served,
    store: PolicyStore,
    revs: PolicyRevision[],
    prov: { stamp: string; list: ProviderAttachment[]; placeholders: Served['placeholders'] },
  ): Promise<void> {
    for (const r of [...revs].reverse()) {
      if (r.status !== 'LOADED' && r.status !== 'SUPERSEDED') continue
      if (this.tryLoad(s, store, r, prov, r.status === 'LOADED').ok) return
    }
  }

  private tryLoad(
    s: Served,
    store: PolicyStore,
    rev: PolicyRevision,
    prov: { stamp: string; list: ProviderAttachment[] },
    mark = true,
  ): { ok: true } | { ok: false; error: string } {
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
    if (!this.follower) s.audit.config(e)
  }

  private safeMark(fn: () => void): void {
    if (this.follower) return
    try {
      fn()
    } catch (e) {
      this.log(`cannot record policy status: ${(e as Error).message}`)
    }
  }
}
