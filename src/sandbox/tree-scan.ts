/** The scan of a mounted tree: `.ai-read-deny` markers, git entries, agent settings, hook configs and sockets, and the protections a development session gets from it. */
import { existsSync, lstatSync, readFileSync, statSync } from 'node:fs'
import { opendir } from 'node:fs/promises'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { normalizePath } from '../util/validate.js'
import { isWithin } from './sensitive.js'

// ───────────────────────────── .ai-read-deny and tree scans ─────────────────────────────

/** ai-guardian's marker: a directory holding this file is unreadable for agents, with its subtree. */
export const READ_DENY_MARKER = '.ai-read-deny'

/**
 * Directories whose contents are not collected as git entries, agent settings or hook configs
 * (dependency trees and git internals: their `.vscode`/`.git` are not the project's). The scan
 * still descends into them for `.ai-read-deny` markers and sockets: a marker is honoured wherever
 * the user put it (issue 9, finding 10).
 */
const NOT_PROJECT_DIRS = new Set(['node_modules', '.git'])

/** Agent settings files and dirs: executable configuration for agents that run on the host. */
export const AGENT_SETTINGS = ['.claude', '.mcp.json', '.vscode', '.cursor', '.gemini', '.opencode', 'opencode.json', 'opencode.jsonc', '.codex', '.continue', '.windsurf'] as const

/** Hook-runner configs in a repo's worktree: `git commit` on the host executes what they name. */
export const HOOK_CONFIGS = ['.pre-commit-config.yaml', '.husky', 'lefthook.yml', 'lefthook.yaml', '.lefthook.yml', '.lefthook.yaml'] as const

export interface ScanOptions {
  /** Directory levels below the root to visit (root = 0); deeper directories are masked unvisited. */
  maxDepth?: number
  /** Wall-clock budget for the whole scan; what is left when it runs out is masked unvisited. */
  timeoutMs?: number
}

export const DEFAULT_SCAN: Required<ScanOptions> = { maxDepth: 32, timeoutMs: 5000 }

/**
 * At most this many unvisited directories are masked one by one; beyond it they are replaced by
 * their parents (fewer, larger masks), so a tree planted to be wide cannot make the mount table
 * explode either.
 */
export const MAX_FRONTIER_MASKS = 256

export interface TreeScan {
  root: string
  /**
   * Directories to mask: those holding a `.ai-read-deny` marker (their subtrees were not visited),
   * and the `frontier` (directories the bounded scan did not reach). Masking what was not looked at
   * is what lets the scan be bounded without missing a marker.
   */
  readDeny: string[]
  /** Directories not visited because the depth or time budget ran out (also in readDeny). */
  frontier: string[]
  /** `.git` entries found (directories, or files of worktrees and submodules). */
  gitEntries: string[]
  /** Existing agent-settings paths (AGENT_SETTINGS) anywhere in the tree. */
  agentSettings: string[]
  /** Existing hook-runner configs (HOOK_CONFIGS) next to a `.git` entry. */
  hookConfigs: string[]
  /** Unix socket files found (see sockets.ts: a host service the sandbox must not reach). */
  sockets: string[]
  /**
   * True when every directory was visited or is masked. False only when the budget ran out so
   * early that masking the unvisited part would mean masking the root itself: callers fail closed.
   */
  complete: boolean
  /** Why part of the tree was not visited (set whenever `frontier` is not empty). */
  stoppedBy?: 'depth' | 'timeout'
  scannedDirs: number
}

/**
 * Walks a tree once (breadth first, never following symlinks: a symlink inside a mount resolves
 * inside the sandbox, where its target is not mounted) and records markers, git entries, agent
 * settings and sockets.
 *
 * Bounded work, never a missed marker (issue 9, finding 10): an agent can plant a tree 40 levels
 * deep or with millions of entries in a writable mount, and every later launch on the project
 * scans it. The scan does bounded work (depth, time) and MASKS what it did not reach, instead of
 * failing the launch (the old behaviour: a denial of service the agent could cause) or trusting the
 * unvisited part (a marker there would be missed). The unvisited part is, in practice, what the
 * agent planted: breadth-first order visits the user's shallow directories first, and within a
 * level the project's own directories before dependency trees and git internals. What is masked is
 * reported (`frontier`) so the caller can say so. A marker the user puts below the frontier stays
 * hidden with it: honoured, just coarser.
 * Unreadable directories are skipped: the agent runs as the same uid and cannot read them either.
 */
export async function scanTree(root: string, opts: ScanOptions = {}): Promise<TreeScan> {
  const maxDepth = opts.maxDepth ?? DEFAULT_SCAN.maxDepth
  const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_SCAN.timeoutMs)
  const top = normalizePath(root)
  const scan: TreeScan = { root, readDeny: [], frontier: [], gitEntries: [], agentSettings: [], hookConfigs: [], sockets: [], complete: true, scannedDirs: 0 }
  const agentNames = new Set<string>(AGENT_SETTINGS)
  const hookNames = new Set<string>(HOOK_CONFIGS)
  interface Item {
    dir: string
    /** Inside node_modules or .git: markers and sockets only. */
    dep: boolean
  }
  let queue: Item[] = [{ dir: top, dep: false }]
  for (let depth = 0; queue.length; depth++) {
    // The project's own directories first, dependency trees and git internals last.
    queue.sort((a, b) => Number(a.dep) - Number(b.dep))
    const next: Item[] = []
    for (let at = 0; at < queue.length; at += CONCURRENCY) {
      if (Date.now() > deadline) {
        scan.stoppedBy = 'timeout'
        for (const it of [...queue.slice(at), ...next]) scan.frontier.push(it.dir)
        return finish(scan, top)
      }
      const batch = queue.slice(at, at + CONCURRENCY)
      const listings = await Promise.all(batch.map(it => listDir(it.dir)))
      batch.forEach((it, k) => {
        const names = listings[k]
        if (names) visit(it, names, depth, next)
      })
    }
    queue = next
  }
  return finish(scan, top)

  function visit(it: Item, names: DirEntry[], depth: number, next: Item[]): void {
    const dir = it.dir
    scan.scannedDirs++
    if (names.some(n => n.name === READ_DENY_MARKER)) {
      scan.readDeny.push(dir)
      return
    }
    const hasGit = !it.dep && names.some(n => n.name === '.git')
    for (const n of names) {
      const p = join(dir, n.name)
      if (n.isSocket) scan.sockets.push(p)
      if (!it.dep) {
        if (n.name === '.git') scan.gitEntries.push(p)
        if (agentNames.has(n.name)) scan.agentSettings.push(p)
        if (hasGit && hookNames.has(n.name)) scan.hookConfigs.push(p)
      }
      if (n.isDir) {
        if (depth + 1 > maxDepth) {
          scan.stoppedBy = 'depth'
          scan.frontier.push(p)
        } else next.push({ dir: p, dep: it.dep || NOT_PROJECT_DIRS.has(n.name) })
      }
    }
  }
}

const CONCURRENCY = 32

interface DirEntry {
  name: string
  isDir: boolean
  isSocket: boolean
}

/** Entries of a directory, or undefined when it cannot be read (the agent, same uid, cannot either). */
async function listDir(dir: string): Promise<DirEntry[] | undefined> {
  try {
    const names: DirEntry[] = []
    const d = await opendir(dir, { bufferSize: 256 })
    for await (const ent of d) names.push({ name: ent.name, isDir: ent.isDirectory(), isSocket: ent.isSocket() })
    return names
  } catch {
    return undefined
  }
}

/**
 * Reduces the unvisited frontier to at most MAX_FRONTIER_MASKS directories by replacing the
 * deepest ones with their parents (never the root: a scan that cannot mask less than the whole
 * tree is incomplete, and callers refuse the launch), and adds it to the masked set.
 */
function finish(s: TreeScan, top: string): TreeScan {
  let f = minimal(s.frontier)
  // Lift the largest groups of close relatives first: 100 planted siblings (or cousins) become
  // their one common ancestor, while a lone unvisited directory of the user's stays a small mask.
  for (let round = 0; f.length > MAX_FRONTIER_MASKS; round++) {
    let lifted: string[] | undefined
    for (let k = 1; !lifted && k < 4096; k++) {
      const groups = new Map<string, string[]>()
      for (const p of f) {
        const a = ancestor(p, k)
        if (a !== top && isWithin(a, top) && a !== p) groups.set(a, [...(groups.get(a) ?? []), p])
      }
      if (!groups.size) break
      const ranked = [...groups.entries()].filter(([, g]) => g.length > 1).sort((a, b) => b[1].length - a[1].length)
      if (!ranked.length) continue
      let count = f.length
      const gone = new Set<string>()
      const add: string[] = []
      for (const [a, g] of ranked) {
        if (count <= MAX_FRONTIER_MASKS) break
        add.push(a)
        for (const p of g) gone.add(p)
        count -= g.length - 1
      }
      lifted = minimal([...f.filter(p => !gone.has(p)), ...add])
    }
    // No two share an ancestor below the root: each becomes the root's child that holds it.
    lifted ??= minimal(f.map(p => ancestor(p, depthOf(p) - depthOf(top) - 1)))
    if (round > 4096 || (lifted.length > MAX_FRONTIER_MASKS && lifted.length >= f.length)) {
      s.complete = false
      break
    }
    f = lifted
  }
  if (f.includes(top)) s.complete = false
  s.frontier = f.sort()
  // A path with ":" or "," cannot be given to podman's --mount (hostPath refuses it), so a marker,
  // socket or protected path below such a name could not be masked or bound, and the launch would
  // fail: a name the agent can plant. Its nearest expressible ancestor is masked instead (never the
  // root: then the scan is incomplete and the launch fails closed, as before).
  const inexpressible = (p: string) => /[:,]/.test(p.slice(top.length))
  const expressible = (p: string) => {
    let a = p
    while (a !== top && inexpressible(a)) a = dirname(a)
    if (a === top) s.complete = false
    return a
  }
  const odd: string[] = []
  for (const list of [s.readDeny, s.frontier, s.gitEntries, s.agentSettings, s.hookConfigs, s.sockets]) {
    for (const p of list) if (inexpressible(p)) odd.push(expressible(p))
  }
  const clean = (l: string[]) => l.filter(p => !inexpressible(p))
  s.readDeny = clean(s.readDeny)
  s.frontier = clean(s.frontier)
  const masked = minimal([...s.readDeny, ...s.frontier, ...odd.filter(p => p !== top)])
  s.readDeny = masked.sort()
  const hidden = (p: string) => masked.some(m => p !== m && isWithin(p, m))
  s.gitEntries = s.gitEntries.filter(p => !hidden(p)).sort()
  s.agentSettings = s.agentSettings.filter(p => !hidden(p)).sort()
  s.hookConfigs = s.hookConfigs.filter(p => !hidden(p)).sort()
  s.sockets = s.sockets.filter(p => !hidden(p)).sort()
  return s
}

const depthOf = (p: string) => (p === '/' ? 0 : p.split('/').length - 1)

function ancestor(p: string, k: number): string {
  let a = p
  for (let i = 0; i < k; i++) a = dirname(a)
  return a
}

/** The paths not inside another path of the list, deduplicated (O(n · depth): frontiers can be large). */
function minimal(paths: readonly string[]): string[] {
  const set = new Set(paths)
  const out: string[] = []
  for (const p of set) {
    let covered = false
    for (let c = p, d = dirname(p); d !== c && !covered; c = d, d = dirname(d)) covered = set.has(d)
    if (!covered) out.push(p)
  }
  return out
}

/** Directories inside `root` that hold a `.ai-read-deny` marker (see scanTree for the bounds). */
export async function findReadDenyDirs(root: string, opts: ScanOptions = {}): Promise<{ dirs: string[]; complete: boolean; scannedDirs: number }> {
  const s = await scanTree(root, opts)
  return { dirs: s.readDeny, complete: s.complete, scannedDirs: s.scannedDirs }
}

/**
 * The nearest directory at or above `path` that holds a `.ai-read-deny` marker. ai-guardian denies
 * the marker's whole subtree, so a mount below a marked directory is as denied as the directory.
 */
export function readDenyAncestor(path: string): string | undefined {
  let cur = normalizePath(path)
  for (;;) {
    if (existsSync(join(cur, READ_DENY_MARKER))) return cur
    const parent = dirname(cur)
    if (parent === cur) return undefined
    cur = parent
  }
}

// ───────────────────────────── development-session protections ─────────────────────────────

export interface Protections {
  /** Existing paths inside a read-write mount that must be bind-mounted onto themselves read-only. */
  readOnly: string[]
  /**
   * Absent directories the agent must not be able to create: the caller creates each on the host
   * (as the user, empty) and then binds it read-only like `readOnly`. Not masked with a tmpfs:
   * measured on rootless Podman, the mount point the runtime creates inside a bind mount is owned
   * by a subordinate uid on the host (e.g. 462144), which the user can then not write or remove.
   */
  create: string[]
}

/**
 * What must stay read-only inside a read-write project tree. Everything here is code that the
 * HOST runs later without asking, so an agent that writes it escapes the sandbox at the next
 * `git commit` (daf complete commits on the host) or the next unsandboxed agent session:
 *   - `<gitdir>/hooks` (created empty when absent), `<gitdir>/config` (core.hooksPath, core.fsmonitor,
 *     aliases and filter drivers are all commands), `config.worktree`, and the directory
 *     core.hooksPath names when it lies in the tree (husky's `.husky/_`);
 *   - hook-runner configs next to a repo (`.pre-commit-config.yaml`, `.husky`, lefthook);
 *   - agent settings (`.claude/`, `.mcp.json`, `.vscode/`, …) anywhere in the tree: hooks and MCP
 *     servers in them run on the host. A `.claude` missing at a repo or mount root is returned in
 *     `create`, so the agent cannot plant one (the caller leaves an empty `.claude` on the host).
 * Residual risk (documented in docs/devaiflow.md): hooks that run project code (`npm test` in a
 * pre-commit hook) run agent-written code; daf should commit with hooks disabled or in the sandbox.
 */
export function devProtections(scan: TreeScan): Protections {
  const readOnly = new Set<string>()
  const create = new Set<string>()
  const roots = new Set<string>([normalizePath(scan.root)])
  for (const entry of scan.gitEntries) {
    const worktree = dirname(entry)
    roots.add(worktree)
    const git = resolveGitDirs(entry)
    if (!git) continue
    // The whole git dir is read-only, as Codex does, not just hooks/ and config: git on the host
    // also trusts files an agent could ADD there (a new `commondir` redirects hooks and config to
    // an agent-written copy; a renamed-away .git is replaced by one with planted hooks — both
    // found by the attack suite, #34/#35). A bind mount of the dir itself also makes the rename
    // fail (EBUSY). The agent edits the working tree; staging and commits happen on the host
    // (`daf complete`), as DevAIFlow's workflow does anyway.
    readOnly.add(git.dir)
    readOnly.add(git.common)
    try {
      if (lstatSync(entry).isFile()) readOnly.add(entry) // a worktree's `.git` pointer file
    } catch {
      // vanished meanwhile
    }
    const hooksPath = readHooksPath(join(git.common, 'config'))
    if (hooksPath) {
      const p = isAbsolute(hooksPath) ? normalizePath(hooksPath) : normalizePath(resolve(worktree, hooksPath))
      if (existsSync(p)) readOnly.add(p)
      else if (isWithin(p, scan.root)) create.add(p)
    }
  }
  for (const p of scan.hookConfigs) readOnly.add(p)
  for (const p of scan.agentSettings) readOnly.add(p)
  for (const r of roots) {
    const claude = join(r, '.claude')
    if (!existsSync(claude) && !scan.readDeny.some(d => isWithin(r, d))) create.add(claude)
  }
  const inTree = (p: string) => isWithin(p, scan.root) && !scan.readDeny.some(d => isWithin(p, d))
  return { readOnly: [...readOnly].filter(inTree).sort(), create: [...create].filter(inTree).sort() }
}

/** The git dir and common dir for a `.git` entry (a dir, or a `gitdir:` file). */
function resolveGitDirs(entry: string): { dir: string; common: string } | undefined {
  try {
    let dir = entry
    const st = lstatSync(entry)
    if (st.isFile()) {
      const m = /^gitdir:\s*(.+?)\s*$/m.exec(readFileSync(entry, 'utf8').slice(0, 4096))
      if (!m) return undefined
      dir = normalizePath(resolve(dirname(entry), m[1]!))
    } else if (!st.isDirectory()) return undefined
    let common = dir
    const commondir = join(dir, 'commondir')
    if (existsSync(commondir) && statSync(commondir).isFile()) {
      common = normalizePath(resolve(dir, readFileSync(commondir, 'utf8').slice(0, 4096).trim()))
    }
    return { dir, common }
  } catch {
    return undefined
  }
}

/** `core.hooksPath` from a git config file (last value wins, as in git). */
function readHooksPath(configFile: string): string | undefined {
  let text: string
  try {
    text = readFileSync(configFile, 'utf8').slice(0, 256 * 1024)
  } catch {
    return undefined
  }
  let section = ''
  let value: string | undefined
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim()
    const sec = /^\[\s*([A-Za-z0-9.-]+)(?:\s+"[^"]*")?\s*\]$/.exec(line)
    if (sec) {
      section = sec[1]!.toLowerCase()
      continue
    }
    const kv = /^([A-Za-z][A-Za-z0-9-]*)\s*=\s*(.*)$/.exec(line)
    if (section === 'core' && kv && kv[1]!.toLowerCase() === 'hookspath') value = kv[2]!.replace(/^"(.*)"$/, '$1')
  }
  return value || undefined
}

