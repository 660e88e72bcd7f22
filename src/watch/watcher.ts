import { createHash } from 'node:crypto'
import { existsSync, lstatSync, opendirSync, readFileSync, readlinkSync, watch, type FSWatcher, type Stats } from 'node:fs'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { READ_DENY_MARKER } from '../sandbox/tree-scan.js'
import { isHostSocketRisk } from '../sandbox/sockets.js'
import { writeWatchFile } from './paths.js'
import { gitDirEntryKind, judgeGitConfig, matchHostExec, type HostExecRule } from './rules.js'
import { moveAside, recordFinding, rewriteFile, type QuarantineContext } from './quarantine.js'
export { baselineFile, rootsFile } from './paths.js'

/**
 * The engine of the host-executed-file watcher: a baseline of what existed when the sandbox was
 * created, a check of one path against the rules (src/watch/rules.ts) and the baseline, a bounded
 * full scan, and live watching with Node's recursive fs.watch (inotify on Linux). Used by the
 * long-lived watcher process (src/watch/main.ts) and, for the rescans at stop/delete and after a
 * watcher died, by the CLI process itself (src/watch/lifecycle.ts).
 *
 * The baseline is taken ONCE, before the agent's container first starts, and kept in the state dir
 * (which no container mounts): a watcher restarted later compares against what the user had, never
 * against what the agent left meanwhile.
 */

/** A file recorded in the baseline: its kind and content hash (and content, when small). */
interface FileRecord {
  t: 'f' | 'd' | 'l' | 'o'
  h?: string
  /** base64 content of small files: restored when the agent changes them. */
  c?: string
}

/** A git dir the user had (the repo's own `.git` and its submodules/worktrees inside a mount). */
interface GitRecord {
  /** Absolute path of the `.git` entry. */
  entry: string
  /** `.git` file content (a worktree or submodule pointer); undefined for a directory. */
  pointer?: string
  /** Protected files inside the git dir (config, config.worktree, commondir, hooks/*), relative. */
  files: Record<string, FileRecord>
}

export interface Baseline {
  version: 1
  created: string
  roots: string[]
  /** Absolute path → record, for every rule match (and children of matched dirs). */
  matched: Record<string, FileRecord>
  /** Absolute `.git` entry path → record. */
  git: Record<string, GitRecord>
  /** False when the baseline scan ran out of budget: entries beyond it were not recorded. */
  complete: boolean
}

export interface ScanBudget {
  /** Entries (files and dirs) visited at most. */
  maxEntries: number
  /** Wall-clock budget. */
  timeoutMs: number
}

export const WATCHER_SCAN: ScanBudget = { maxEntries: 500_000, timeoutMs: 20_000 }
export const COMMAND_SCAN: ScanBudget = { maxEntries: 200_000, timeoutMs: 3_000 }

const SMALL = 64 * 1024
/** Children of a matched directory recorded in the baseline (a `.husky` has a handful). */
const MAX_DIR_CHILDREN = 500


export interface ScanResult {
  entries: number
  complete: boolean
  findings: number
}

function hashOf(p: string): string | undefined {
  try {
    return createHash('sha256').update(readFileSync(p)).digest('hex')
  } catch {
    return undefined
  }
}

function record(p: string, st?: Stats): FileRecord | undefined {
  let s: Stats
  try {
    s = st ?? lstatSync(p)
  } catch {
    return undefined
  }
  if (s.isSymbolicLink()) {
    let target = ''
    try {
      target = readlinkSync(p)
    } catch {
      // gone
    }
    return { t: 'l', h: createHash('sha256').update(target).digest('hex') }
  }
  if (s.isDirectory()) return { t: 'd' }
  if (!s.isFile()) return { t: 'o' }
  const r: FileRecord = { t: 'f', h: hashOf(p) }
  if (s.size <= SMALL) {
    try {
      r.c = readFileSync(p).toString('base64')
    } catch {
      // unreadable: hash only
    }
  }
  return r
}

function same(a: FileRecord | undefined, b: FileRecord | undefined): boolean {
  return !!a && !!b && a.t === b.t && a.h === b.h
}

/** Entries of a directory (names and whether each is a real directory), or undefined. */
function list(dir: string): { name: string; dir: boolean }[] | undefined {
  try {
    const d = opendirSync(dir, { bufferSize: 256 })
    const out: { name: string; dir: boolean }[] = []
    try {
      for (let e = d.readSync(); e; e = d.readSync()) out.push({ name: e.name, dir: e.isDirectory() })
    } finally {
      d.closeSync()
    }
    return out
  } catch {
    return undefined
  }
}

/** The git dir a `.git` entry names (itself, or the `gitdir:` of a pointer file). */
function gitDirOf(entry: string): string | undefined {
  try {
    const st = lstatSync(entry)
    if (st.isDirectory()) return entry
    if (!st.isFile()) return undefined
    const m = /^gitdir:\s*(.+?)\s*$/m.exec(readFileSync(entry, 'utf8').slice(0, 4096))
    return m ? resolve(dirname(entry), m[1]!) : undefined
  } catch {
    return undefined
  }
}

/** Protected files of a git dir, relative to it (see gitDirEntryKind), bounded. */
function protectedGitFiles(gitDir: string): string[] {
  const out: string[] = []
  for (const f of ['config', 'config.worktree', 'commondir']) if (existsSync(join(gitDir, f))) out.push(f)
  for (const h of list(join(gitDir, 'hooks')) ?? []) if (!h.name.endsWith('.sample')) out.push(`hooks/${h.name}`)
  for (const w of list(join(gitDir, 'worktrees')) ?? []) {
    for (const f of ['commondir', 'gitdir', 'config.worktree']) if (existsSync(join(gitDir, 'worktrees', w.name, f))) out.push(`worktrees/${w.name}/${f}`)
  }
  return out.slice(0, 2000)
}

export class HostExecWatcher {
  readonly roots: string[]
  private readonly rules: readonly HostExecRule[]
  private readonly q: QuarantineContext
  baseline: Baseline
  private watchers: FSWatcher[] = []
  /** Sockets already reported by checkSocket. */
  private readonly sockets = new Set<string>()
  /** Findings recorded by this instance (tests, the bench). */
  findings = 0
  /** Live events received (the watcher daemon reads and resets it every second: flood detection). */
  events = 0

  constructor(o: { q: QuarantineContext; roots: string[]; rules: readonly HostExecRule[]; baseline: Baseline }) {
    this.q = o.q
    this.roots = o.roots
    this.rules = o.rules
    this.baseline = o.baseline
  }

  // ───────────────────────────── baseline ─────────────────────────────

  /** Walks the roots and records every rule match and every git dir: what the user had. */
  static takeBaseline(roots: string[], rules: readonly HostExecRule[], budget: ScanBudget = WATCHER_SCAN): Baseline {
    const b: Baseline = { version: 1, created: new Date().toISOString(), roots, matched: {}, git: {}, complete: true }
    const visit = (abs: string, rel: string, st: Stats | undefined): 'skip' | void => {
      // A git-dir layout the user had (a bare repo, a test fixture): not the agent's plant.
      if (rel.endsWith('HEAD') && (rel === 'HEAD' || rel.endsWith('/HEAD')) && looksLikeGitDir(dirname(abs))) b.git[dirname(abs)] ??= { entry: dirname(abs), files: {} }
      const m = matchHostExec(rel, rules)
      if (!m) return
      const top = join(abs.slice(0, abs.length - rel.length), m.matched)
      if (m.git) {
        if (top !== abs) return 'skip'
        const gitDir = gitDirOf(abs)
        const g: GitRecord = { entry: abs, files: {} }
        try {
          if (lstatSync(abs).isFile()) g.pointer = readFileSync(abs, 'utf8').slice(0, 4096)
        } catch {
          // gone
        }
        if (gitDir && roots.some(r => gitDir === r || gitDir.startsWith(r + '/'))) {
          for (const f of protectedGitFiles(gitDir)) {
            const rec = record(join(gitDir, f))
            if (rec) g.files[f] = rec
          }
          b.git[gitDir] = g
        }
        b.git[abs] = g
        return 'skip' // objects and refs are not host-executed; the protected files were recorded
      }
      const rec = record(abs, st)
      if (rec) b.matched[abs] = rec
      if (rec?.t === 'd' && top === abs) {
        let n = 0
        const walk = (d: string) => {
          for (const e of list(d) ?? []) {
            if (++n > MAX_DIR_CHILDREN) return
            const p = join(d, e.name)
            const r = record(p)
            if (r) b.matched[p] = r
            if (e.dir) walk(p)
          }
        }
        walk(abs)
        return 'skip'
      }
    }
    for (const root of roots) {
      if (!walkTree(root, budget, visit).complete) b.complete = false
    }
    return b
  }

  // ───────────────────────────── one path ─────────────────────────────

  /**
   * Checks one path (relative to `root`) against the rules and the baseline, and acts. Returns the
   * number of findings. Never throws: a failure to act is itself recorded.
   */
  check(root: string, rel: string, changedAt?: number): number {
    rel = rel.split('/').filter(Boolean).join('/')
    if (!rel) return 0
    try {
      return this.checkInner(root, rel, changedAt)
    } catch (e) {
      recordFinding(this.q, { path: join(root, rel), rule: 'watcher', reason: `could not neutralise: ${(e as Error).message.split('\n')[0]}`, action: 'quarantined' })
      return 1
    }
  }

  private checkInner(root: string, rel: string, changedAt?: number): number {
    const n = this.checkBareLayout(root, rel)
    const m = matchHostExec(rel, this.rules)
    if (!m) return n
    const top = join(root, m.matched)
    const abs = join(root, rel)
    if (m.git) return n + this.checkGit(top, rel.slice(m.matched.length + 1), changedAt)
    const base = this.baseline.matched[top]
    if (!base) return n + this.quarantine(top, m.pattern, `${m.pattern} created by the agent: host tools run it`, changedAt)
    if (base.t === 'd' && abs !== top) {
      const cur = record(abs)
      if (!cur || cur.t === 'd') return n
      if (same(cur, this.baseline.matched[abs])) return n
      return n + this.quarantine(abs, m.pattern, `file in ${m.pattern} written by the agent: host tools run it`, changedAt, this.baseline.matched[abs])
    }
    const cur = record(top)
    if (!cur || same(cur, base) || (cur.t === 'd' && base.t === 'd')) return n
    return n + this.quarantine(top, m.pattern, `${m.pattern} changed by the agent: host tools run it`, changedAt, base)
  }

  /** A directory that IS a git dir (HEAD + objects/ + refs/) that the user did not have. */
  private checkBareLayout(root: string, rel: string): number {
    const segs = rel.split('/')
    const last = segs[segs.length - 1]
    if (last !== 'HEAD' && last !== 'objects' && last !== 'refs' && last !== 'commondir') return 0
    const dir = join(root, ...segs.slice(0, -1))
    if (this.baseline.git[dir] || dir === root && this.baseline.git[root]) return 0
    // Inside a known git dir (the repo's own .git, its modules/worktrees): git work, not a plant.
    if (Object.keys(this.baseline.git).some(g => dir.startsWith(g + '/'))) return 0
    if (segs.includes('.git')) return 0 // handled by the .git rule (the entry itself)
    const head = join(dir, 'HEAD')
    if (!looksLikeGitDir(dir)) return 0
    return this.quarantine(head, 'bare-git-dir', 'HEAD of a git-dir layout (HEAD, objects/, refs/): host git would use its config', undefined)
  }

  /** A `.git` entry (`entry`) and a path inside it (`inner`, '' for the entry itself). */
  private checkGit(entry: string, inner: string, changedAt?: number): number {
    const base = this.baseline.git[entry]
    if (!base) return this.quarantine(entry, '.git', 'new .git created by the agent: host git would run its config and hooks', changedAt)
    let st: Stats
    try {
      st = lstatSync(entry)
    } catch {
      return 0
    }
    if (base.pointer !== undefined || !st.isDirectory()) {
      // A pointer file must keep pointing where it pointed: a new gitdir is an agent-made repo.
      let now: string | undefined
      try {
        now = st.isFile() ? readFileSync(entry, 'utf8').slice(0, 4096) : undefined
      } catch {
        now = undefined
      }
      if (now === base.pointer) return this.checkGitDir(base, gitDirOf(entry), inner === '' ? undefined : inner, changedAt)
      const n = this.quarantine(entry, '.git', 'the .git entry was replaced by the agent: host git would use another git dir', changedAt)
      if (base.pointer !== undefined) rewriteFile(this.q, entry, base.pointer, { save: false })
      return n
    }
    return this.checkGitDir(base, entry, inner || undefined, changedAt)
  }

  /** Protected files inside a baseline git dir: `only` = one of them, undefined = all of them. */
  private checkGitDir(base: GitRecord, gitDir: string | undefined, only: string | undefined, changedAt?: number): number {
    if (!gitDir || !this.roots.some(r => gitDir === r || gitDir.startsWith(r + '/'))) return 0
    const rec = this.baseline.git[gitDir] ?? base
    const paths = only !== undefined ? [only] : [...new Set([...protectedGitFiles(gitDir), ...Object.keys(rec.files)])]
    let n = 0
    for (const rel of paths) {
      const kind = gitDirEntryKind(rel)
      if (!kind) continue
      const abs = join(gitDir, rel)
      if (kind === 'hooks') {
        if (rel === 'hooks') {
          let st: Stats | undefined
          try {
            st = lstatSync(abs)
          } catch {
            st = undefined
          }
          if (st && !st.isDirectory()) n += this.quarantine(abs, 'git-hooks', 'the hooks dir was replaced by the agent', changedAt)
          else if (st) for (const h of list(abs) ?? []) n += this.checkGitDir(base, gitDir, `hooks/${h.name}`, changedAt)
          continue
        }
        if (rel.endsWith('.sample')) continue
        const cur = record(abs)
        if (!cur || cur.t === 'd' && rel.split('/').length > 2) continue
        if (same(cur, rec.files[rel])) continue
        n += this.quarantine(abs, 'git-hooks', 'git hook written by the agent: host git runs it', changedAt, rec.files[rel])
        continue
      }
      const cur = record(abs)
      const was = rec.files[rel]
      if (!cur) continue
      if (same(cur, was)) continue
      if (kind === 'redirect') {
        n += this.quarantine(abs, 'git-redirect', `${rel} written by the agent: it points git at another git dir`, changedAt, was)
        continue
      }
      // config / config.worktree: remove what runs commands, keep the agent's ordinary git work.
      let text: string
      try {
        text = cur.t === 'f' ? readFileSync(abs, 'utf8') : ''
      } catch {
        continue
      }
      const baseText = was?.c !== undefined ? Buffer.from(was.c, 'base64').toString('utf8') : undefined
      const v = cur.t === 'f' ? judgeGitConfig(text, baseText) : { clean: false, removed: ['(not a file)'] as string[] }
      if (v.clean) continue
      const content = v.sanitized ?? baseText ?? ''
      const saved = rewriteFile(this.q, abs, content)
      if (saved === undefined) continue
      n++
      this.findings++
      recordFinding(this.q, {
        path: abs,
        rule: 'git-config',
        reason: `git config keys that run commands on the host: ${v.removed.join(', ')}`,
        action: v.sanitized !== undefined ? 'sanitized' : 'restored',
        removed: v.removed,
        savedTo: saved,
        ...latency(changedAt),
      })
    }
    return n
  }

  private quarantine(abs: string, rule: string, reason: string, changedAt: number | undefined, restore?: FileRecord): number {
    let ctime: number | undefined
    try {
      ctime = lstatSync(abs).ctimeMs
    } catch {
      return 0
    }
    const savedTo = moveAside(this.q, abs)
    if (savedTo === undefined) return 0
    let action: 'quarantined' | 'restored' = 'quarantined'
    if (restore?.t === 'f' && restore.c !== undefined) {
      rewriteFile(this.q, abs, Buffer.from(restore.c, 'base64').toString('utf8'), { save: false })
      action = 'restored'
    }
    this.findings++
    recordFinding(this.q, { path: abs, rule, reason, action, savedTo, ...latency(changedAt ?? ctime) })
    return 1
  }

  // ───────────────────────────── scans ─────────────────────────────

  /** A full, bounded scan of every root: what the live watch may have missed. */
  scan(budget: ScanBudget = WATCHER_SCAN): ScanResult {
    let findings = 0
    let entries = 0
    let complete = true
    for (const root of this.roots) {
      const r = walkTree(root, budget, (abs, rel) => {
        const m = matchHostExec(rel, this.rules)
        if (m?.git && join(root, m.matched) === abs) {
          findings += this.check(root, rel)
          return 'skip'
        }
        findings += this.check(root, rel)
        return undefined
      })
      entries += r.entries
      if (!r.complete) complete = false
    }
    return { entries, complete, findings }
  }

  // ───────────────────────────── live ─────────────────────────────

  /**
   * Starts inotify watches (Node's recursive fs.watch) on every root. Each event is checked at
   * once, synchronously; an event naming a directory (created, or moved in whole) is followed by a
   * bounded scan of that directory, since a moved-in tree produces one event for its top only.
   */
  watch(onError: (e: Error) => void): void {
    for (const root of this.roots) {
      const w = watch(root, { recursive: true, persistent: true }, (_event, filename) => {
        this.events++
        if (!filename) {
          // No name (overflow): a full rescan.
          this.scan()
          return
        }
        const rel = String(filename)
        this.check(root, rel)
        const abs = join(root, rel)
        this.checkSocket(abs)
        let st: Stats | undefined
        try {
          st = lstatSync(abs)
        } catch {
          st = undefined
        }
        if (st?.isDirectory() && !matchHostExec(rel, this.rules)?.git) {
          walkTree(abs, { maxEntries: 50_000, timeoutMs: 2_000 }, (_a, r) => {
            this.check(root, rel + '/' + r)
            return undefined
          })
        }
      })
      w.on('error', onError)
      this.watchers.push(w)
    }
  }

  /**
   * A unix socket that appeared in a mounted tree after start (a host editor, language server,
   * ssh-agent, Podman API socket): it cannot be masked in a running container and a live host
   * socket cannot be moved aside; the agent's seccomp profile already denies it AF_UNIX sockets
   * (src/sandbox/sockets.ts). Recorded once per path so the user sees what the sandbox could see.
   */
  private checkSocket(abs: string): void {
    if (this.sockets.has(abs) || !isHostSocketRisk(abs)) return
    this.sockets.add(abs)
    this.findings++
    recordFinding(this.q, {
      path: abs,
      rule: 'unix-socket',
      reason: 'host unix socket created in a mounted tree after start; the sandbox cannot connect: its seccomp profile denies socket(AF_UNIX) (a sandbox given --allow-socket CAN: no mask covers a socket created or re-created after start)',
      action: 'blocked',
    })
  }

  close(): void {
    for (const w of this.watchers) w.close()
    this.watchers = []
  }
}

/** git's is_git_directory, roughly: HEAD, refs/, and objects/ (or a commondir that has them). */
function looksLikeGitDir(dir: string): boolean {
  try {
    lstatSync(join(dir, 'HEAD'))
    if (!lstatSync(join(dir, 'refs')).isDirectory()) return false
    return existsSync(join(dir, 'objects')) || existsSync(join(dir, 'commondir'))
  } catch {
    return false
  }
}

function latency(at: number | undefined): { latencyMs?: number } {
  return at === undefined ? {} : { latencyMs: Math.max(0, Math.round((Date.now() - at) * 100) / 100) }
}

/**
 * Breadth-first walk of a tree, never following symlinks, never descending into a directory that
 * holds a `.ai-read-deny` marker (the user hid it; nothing the agent can write is there), with
 * `node_modules` trees visited last (they are large and rarely where a user runs a tool). Bounded
 * by entries and time; `visit` returning 'skip' does not descend into that entry.
 */
export function walkTree(root: string, budget: ScanBudget, visit: (abs: string, rel: string, st?: Stats) => 'skip' | void | undefined): { entries: number; complete: boolean } {
  const deadline = Date.now() + budget.timeoutMs
  let entries = 0
  const queue: string[] = ['']
  const later: string[] = []
  while (queue.length || later.length) {
    const rel = queue.length ? queue.shift()! : later.shift()!
    const dir = rel ? join(root, rel) : root
    const names = list(dir)
    if (!names) continue
    if (rel && names.some(n => n.name === READ_DENY_MARKER)) continue
    for (const e of names) {
      if (++entries > budget.maxEntries || (entries % 256 === 0 && Date.now() > deadline)) return { entries, complete: false }
      const r = rel ? `${rel}/${e.name}` : e.name
      const what = visit(join(root, r), r)
      if (what === 'skip' || !e.dir) continue
      if (e.name === 'node_modules') later.push(r)
      else queue.push(r)
    }
  }
  return { entries, complete: true }
}

/** Loads the baseline, or undefined when there is none (or it is unreadable). */
export function loadBaseline(file: string): Baseline | undefined {
  try {
    const b = JSON.parse(readFileSync(file, 'utf8')) as Baseline
    return b.version === 1 ? b : undefined
  } catch {
    return undefined
  }
}

export function saveBaseline(file: string, b: Baseline): void {
  writeWatchFile(file, JSON.stringify(b))
}

/** Writable mount roots: absolute host paths, deduplicated, nested ones folded into their parent. */
export function writableRoots(mounts: readonly { source: string; mode: string }[]): string[] {
  const rw = [...new Set(mounts.filter(m => m.mode === 'rw' && isAbsolute(m.source)).map(m => m.source))].sort()
  return rw.filter(r => !rw.some(o => o !== r && r.startsWith(o + '/')))
}

