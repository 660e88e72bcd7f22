import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { z } from 'zod'
import { PodshellError } from '../errors.js'
import { fsError, mkdirp, writeFileAtomic, readFileIfExists } from '../util/fs.js'
import { withLockSync } from '../util/lockfile.js'
import { type Policy } from './schema.js'
import { parsePolicyText, validatePolicy } from './parse.js'
import { policyHash, policyToYaml } from './document.js'

/**
 * Policy revisions of one sandbox, in its policy dir (`sandboxPolicyDir`).
 *
 * Two writers, never the same file:
 *   - the CLI writes `rev-<N>.yaml` (canonical YAML) and `revisions.json` (the list of revisions);
 *   - the gateway writes `status.json` ({ "<N>": { status, load_error?, loaded_at_ms? } }).
 * A revision without a status entry is PENDING. Every write is atomic (temp file + rename), so a
 * reader sees the old file or the new one, and a gateway status write can never damage the
 * revision list. Two CLI processes adding at once serialize on `revisions.lock`.
 *
 * Reads fail closed: a corrupt list, a missing revision file or a revision whose content no longer
 * matches its recorded hash is an error, never "no policy" or "someone else's policy".
 */

export type RevisionStatus = 'PENDING' | 'LOADED' | 'FAILED' | 'SUPERSEDED'

export interface PolicyRevision {
  version: number
  hash: string
  created_at_ms: number
  source: string
  status: RevisionStatus
  load_error?: string
  loaded_at_ms?: number
}

const RevisionEntry = z.strictObject({
  version: z.number().int().min(1),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  created_at_ms: z.number().int().min(0),
  source: z.string(),
})
type RevisionEntry = z.infer<typeof RevisionEntry>
const RevisionList = z.array(RevisionEntry)

const StatusEntry = z.strictObject({
  status: z.enum(['LOADED', 'FAILED', 'SUPERSEDED']),
  load_error: z.string().optional(),
  loaded_at_ms: z.number().int().min(0).optional(),
})
type StatusEntry = z.infer<typeof StatusEntry>
const StatusMap = z.record(z.string().regex(/^[1-9][0-9]*$/), StatusEntry)

const LOCK_WAIT_MS = 15_000
const MAX_SOURCE = 1024
const MAX_LOAD_ERROR = 4096

export class PolicyStore {
  readonly dir: string

  constructor(dir: string) {
    this.dir = dir
  }

  private get revisionsFile(): string {
    return join(this.dir, 'revisions.json')
  }
  private get statusFile(): string {
    return join(this.dir, 'status.json')
  }
  private revFile(version: number): string {
    return join(this.dir, `rev-${version}.yaml`)
  }

  private corrupt(file: string, why: string): PodshellError {
    return new PodshellError(`policy store ${file} is unreadable: ${why}`, {
      hint: 'the file was damaged or edited by hand; restore it, or recreate the sandbox',
      code: 'POLICY_STORE_CORRUPT',
    })
  }

  private readJson(file: string): unknown {
    const text = readFileIfExists(file)
    if (text === undefined) return undefined
    try {
      return JSON.parse(text)
    } catch (e) {
      throw this.corrupt(file, `not JSON (${(e as Error).message})`)
    }
  }

  private readRevisions(): RevisionEntry[] {
    const raw = this.readJson(this.revisionsFile)
    if (raw === undefined) return []
    const r = RevisionList.safeParse(raw)
    if (!r.success) throw this.corrupt(this.revisionsFile, r.error.issues[0]?.message ?? 'invalid')
    for (let i = 1; i < r.data.length; i++) {
      if (r.data[i]!.version <= r.data[i - 1]!.version) throw this.corrupt(this.revisionsFile, 'versions are not ascending')
    }
    return r.data
  }

  private readStatus(): Record<string, StatusEntry> {
    const raw = this.readJson(this.statusFile)
    if (raw === undefined) return {}
    const r = StatusMap.safeParse(raw)
    if (!r.success) throw this.corrupt(this.statusFile, r.error.issues[0]?.message ?? 'invalid')
    return r.data
  }

  /**
   * Serializes CLI writers (two `policy set` at once must not both take version N): a lock file
   * (src/util/lockfile.ts); the store is synchronous, so waiting blocks.
   */
  private withLock<T>(fn: () => T): T {
    mkdirp(this.dir)
    const lock = join(this.dir, 'revisions.lock')
    return withLockSync(lock, {
      waitMs: LOCK_WAIT_MS,
      pollMs: 20,
      busy: () => new PodshellError(`policy store ${this.dir} is locked by another podshell`, {
        hint: `wait for it to finish; if none is running, remove ${lock}`,
        code: 'POLICY_STORE_LOCKED',
      }),
    }, fn)
  }

  /**
   * CLI side: stores `policy` as the next revision (PENDING until the gateway reports). The policy
   * is validated again first: the store never holds a document the gateway would have to reject.
   * A policy identical (same hash) to the newest revision is not stored again: as OpenShell, the
   * version stays and the result says `unchanged` (unless that revision FAILED to load).
   */
  add(policy: Policy, source: string): PolicyRevision & { unchanged?: true } {
    const { policy: valid } = validatePolicy(policy, source)
    const yaml = policyToYaml(valid)
    const hash = policyHash(valid)
    // eslint-disable-next-line no-control-regex -- control characters are what this strips from the label
    const src = source.replace(/[\0-\x1f\x7f]/g, ' ').slice(0, MAX_SOURCE)
    return this.withLock(() => {
      const revs = this.readRevisions()
      const last = revs.at(-1)
      if (last && last.hash === hash) {
        // A revision that FAILED to load is retried by a new one, as anything else would leave the
        // user with no way to load a policy whose stored copy was damaged.
        const cur = this.list().find(r => r.version === last.version)!
        if (cur.status !== 'FAILED') return { ...cur, unchanged: true as const }
      }
      const version = (last?.version ?? 0) + 1
      // The revision file first: a listed revision always has its document.
      writeFileAtomic(this.revFile(version), yaml)
      const entry: RevisionEntry = { version, hash, created_at_ms: Date.now(), source: src }
      writeFileAtomic(this.revisionsFile, JSON.stringify([...revs, entry], null, 2) + '\n')
      return { ...entry, status: 'PENDING' as const }
    })
  }

  /** All revisions, ascending, with the gateway's status merged in. */
  list(): PolicyRevision[] {
    const revs = this.readRevisions()
    const status = this.readStatus()
    return revs.map(r => {
      const s = status[String(r.version)]
      const out: PolicyRevision = { ...r, status: s?.status ?? 'PENDING' }
      if (s?.load_error !== undefined) out.load_error = s.load_error
      if (s?.loaded_at_ms !== undefined) out.loaded_at_ms = s.loaded_at_ms
      return out
    })
  }

  /** One revision with its policy; verifies the stored document still has the recorded hash. */
  get(version: number): { revision: PolicyRevision; policy: Policy; yaml: string } | undefined {
    const revision = this.list().find(r => r.version === version)
    if (!revision) return undefined
    const file = this.revFile(version)
    let yaml: string
    try {
      yaml = readFileSync(file, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw this.corrupt(file, `revision ${version} is listed but its file is missing`)
      throw fsError(`cannot read ${file}`, e)
    }
    const { policy } = parsePolicyText(yaml, file)
    if (policyHash(policy) !== revision.hash) {
      throw this.corrupt(file, `revision ${version} no longer matches its recorded hash (modified on disk)`)
    }
    return { revision, policy, yaml }
  }

  latest(): PolicyRevision | undefined {
    return this.list().at(-1)
  }

  /** The revision in force: the latest LOADED one, or undefined before the gateway loaded any. */
  current(): PolicyRevision | undefined {
    return this.list()
      .reverse()
      .find(r => r.status === 'LOADED')
  }

  private requireRevision(version: number): void {
    if (!this.readRevisions().some(r => r.version === version)) {
      throw new PodshellError(`policy revision ${version} does not exist in ${this.dir}`, { code: 'POLICY_REVISION_NOT_FOUND' })
    }
  }

  /**
   * Gateway side: `version` is in force. Exactly one revision is LOADED at a time: the one loaded
   * before becomes SUPERSEDED, and so do older revisions that never loaded (they never will).
   */
  markLoaded(version: number): void {
    this.requireRevision(version)
    const status = this.readStatus()
    const now = Date.now()
    for (const [v, s] of Object.entries(status)) {
      if (s.status === 'LOADED' && Number(v) !== version) status[v] = { ...s, status: 'SUPERSEDED' }
    }
    for (const r of this.readRevisions()) {
      if (r.version < version && status[String(r.version)] === undefined) status[String(r.version)] = { status: 'SUPERSEDED' }
    }
    status[String(version)] = { status: 'LOADED', loaded_at_ms: now }
    writeFileAtomic(this.statusFile, JSON.stringify(status, null, 2) + '\n')
  }

  /**
   * Nothing of this store is in force any more (`policy delete --global`): the LOADED revision
   * becomes SUPERSEDED; the history stays. Returns whether one was in force.
   */
  deactivate(): boolean {
    return this.withLock(() => {
      const status = this.readStatus()
      let was = false
      for (const [v, s] of Object.entries(status)) {
        if (s.status === 'LOADED') {
          status[v] = { ...s, status: 'SUPERSEDED' }
          was = true
        }
      }
      if (was) writeFileAtomic(this.statusFile, JSON.stringify(status, null, 2) + '\n')
      return was
    })
  }

  /** Gateway side: `version` could not be loaded; the previously LOADED revision stays in force. */
  markFailed(version: number, error: string): void {
    this.requireRevision(version)
    const status = this.readStatus()
    status[String(version)] = { status: 'FAILED', load_error: error.slice(0, MAX_LOAD_ERROR) }
    writeFileAtomic(this.statusFile, JSON.stringify(status, null, 2) + '\n')
  }
}
