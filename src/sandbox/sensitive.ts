import { existsSync, lstatSync, readFileSync, realpathSync, statSync } from 'node:fs'
import { opendir } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join, resolve } from 'node:path'
import { normalizePath } from '../util/validate.js'

/**
 * Host paths a sandbox must never see, `.ai-read-deny` discovery, and the paths inside a
 * read-write project that must stay read-only (git hooks, agent settings).
 *
 * Two classes of sensitive path:
 *   - `secret`: credentials and private data (~/.ssh, ~/.aws, shell history …). Refused unless the
 *     caller explicitly allows sensitive mounts (spec `allow_sensitive`, itself subject to the
 *     enterprise config's `allow_sensitive`).
 *   - `escape`: paths that hand the agent control over the host or over podshell itself (container
 *     engine sockets and storage, $XDG_RUNTIME_DIR with the podman/ssh-agent/D-Bus sockets,
 *     podshell's own data and config, shell start-up files, /proc, /sys, /dev). Refused always:
 *     no flag turns a sandbox into a way out of it.
 *
 * A mount is refused when its real path IS, is INSIDE, or CONTAINS a sensitive path. "Contains"
 * is what stops `--mount $HOME` (it would expose ~/.ssh) and `--mount /`. Paths are compared after
 * resolving symlinks on both sides, so a symlink to ~/.ssh, or a ~/.ssh that is itself a symlink
 * into another disk, is caught either way.
 */
export type SensitiveClass = 'secret' | 'escape'

export interface SensitivePath {
  /** Absolute path (lexical, as named; its realpath is compared too). */
  readonly path: string
  /** What it holds, for the refusal message. */
  readonly why: string
  readonly class: SensitiveClass
}

export interface SensitiveOptions {
  /** podshell's data dir (policies, gateway sockets): never mountable. */
  podshellDataDir?: string
  /** podshell's user config dir: never mountable (a sandbox must not edit its own next config). */
  podshellConfigDir?: string
  /** $XDG_RUNTIME_DIR of the caller (podman socket, ssh-agent, gpg-agent, D-Bus session bus). */
  runtimeDir?: string
  /** Caller uid, for /run/user/<uid> when XDG_RUNTIME_DIR is unset. */
  uid?: number
  /** More secret paths (absolute, or relative to home), e.g. from the enterprise config. */
  extra?: readonly string[]
  /** Permit `secret` paths; `escape` paths stay refused. */
  allowSensitive?: boolean
}

/** Relative to $HOME. Ordered roughly by how often they hold live credentials. */
const HOME_SECRETS: readonly (readonly [string, string])[] = [
  ['.ssh', 'SSH keys'],
  ['.gnupg', 'GnuPG keys'],
  ['.aws', 'AWS credentials'],
  ['.config/gcloud', 'Google Cloud credentials'],
  ['.azure', 'Azure credentials'],
  ['.kube', 'Kubernetes credentials'],
  ['.docker', 'Docker registry credentials'],
  ['.netrc', 'machine passwords (netrc)'],
  ['.git-credentials', 'git credentials'],
  ['.config/git/credentials', 'git credentials'],
  ['.config/gh', 'GitHub CLI tokens'],
  ['.config/hub', 'GitHub hub tokens'],
  ['.config/glab-cli', 'GitLab CLI tokens'],
  ['.npmrc', 'npm registry tokens'],
  ['.yarnrc.yml', 'Yarn registry tokens'],
  ['.pypirc', 'PyPI upload tokens'],
  ['.cargo/credentials', 'crates.io tokens'],
  ['.cargo/credentials.toml', 'crates.io tokens'],
  ['.gem/credentials', 'RubyGems tokens'],
  ['.m2/settings.xml', 'Maven server passwords'],
  ['.m2/settings-security.xml', 'Maven master password'],
  ['.gradle/gradle.properties', 'Gradle credentials'],
  ['.pgpass', 'PostgreSQL passwords'],
  ['.my.cnf', 'MySQL passwords'],
  ['.password-store', 'pass password store'],
  ['.local/share/keyrings', 'GNOME keyring'],
  ['.local/share/kwalletd', 'KDE wallet'],
  ['.config/op', '1Password CLI session'],
  ['.vault-token', 'Vault token'],
  ['.terraform.d', 'Terraform Cloud tokens'],
  ['.config/rclone', 'rclone remotes and tokens'],
  ['.s3cfg', 's3cmd credentials'],
  ['.boto', 'boto credentials'],
  ['.oci', 'Oracle Cloud credentials'],
  ['.config/doctl', 'DigitalOcean token'],
  ['.config/hcloud', 'Hetzner Cloud token'],
  ['.claude.json', 'Claude Code account state and MCP server secrets'],
  ['.claude/.credentials.json', 'Claude Code OAuth tokens'],
  ['.codex/auth.json', 'Codex credentials'],
  ['.config/ai-guardian', 'ai-guardian configuration (its self-protection)'],
  ['.bash_history', 'shell history'],
  ['.zsh_history', 'shell history'],
  ['.local/share/fish', 'shell history'],
  ['.python_history', 'Python history'],
  ['.psql_history', 'psql history'],
  ['.mysql_history', 'mysql history'],
  ['.node_repl_history', 'Node history'],
  ['.mozilla', 'browser profiles (cookies, sessions)'],
  ['.config/google-chrome', 'browser profiles (cookies, sessions)'],
  ['.config/chromium', 'browser profiles (cookies, sessions)'],
  ['.config/BraveSoftware', 'browser profiles (cookies, sessions)'],
  ['.thunderbird', 'mail profiles'],
]

/** Relative to $HOME: mounting these hands over the host, whatever the mode. */
const HOME_ESCAPES: readonly (readonly [string, string])[] = [
  ['.local/share/containers', 'Podman storage (containers and images of this user)'],
  ['.config/containers', 'Podman configuration and registry auth'],
  ['.config/systemd', 'systemd user units (run on the host)'],
  ['.config/autostart', 'desktop autostart entries (run on the host)'],
  ['.bashrc', 'shell start-up file (runs on the host)'],
  ['.bash_profile', 'shell start-up file (runs on the host)'],
  ['.profile', 'shell start-up file (runs on the host)'],
  ['.bash_login', 'shell start-up file (runs on the host)'],
  ['.zshrc', 'shell start-up file (runs on the host)'],
  ['.zprofile', 'shell start-up file (runs on the host)'],
  ['.zshenv', 'shell start-up file (runs on the host)'],
  ['.config/fish', 'shell start-up files (run on the host)'],
]

const SYSTEM_SECRETS: readonly (readonly [string, string])[] = [
  ['/root', "root's home"],
  ['/etc/shadow', 'password hashes'],
  ['/etc/gshadow', 'group password hashes'],
  ['/etc/sudoers', 'sudo configuration'],
  ['/etc/sudoers.d', 'sudo configuration'],
  ['/etc/ssh', 'SSH host keys'],
]

const SYSTEM_ESCAPES: readonly (readonly [string, string])[] = [
  ['/run/docker.sock', 'the Docker socket'],
  ['/var/run/docker.sock', 'the Docker socket'],
  ['/run/podman', 'the system Podman socket'],
  ['/run/containerd', 'the containerd socket'],
  ['/run/dbus', 'the system D-Bus'],
  ['/run/user', 'per-user runtime dirs (podman, ssh-agent, D-Bus sockets)'],
  ['/var/lib/containers', 'system container storage'],
  ['/var/lib/docker', 'Docker storage'],
  ['/proc', 'host processes'],
  ['/sys', 'kernel interfaces'],
  ['/dev', 'host devices'],
  ['/boot', 'the boot partition'],
]

/** Every sensitive path for this home and options (lexical; checkMount also compares realpaths). */
export function sensitivePaths(home: string, opts: SensitiveOptions = {}): SensitivePath[] {
  const out: SensitivePath[] = []
  const h = normalizePath(home)
  for (const [rel, why] of HOME_SECRETS) out.push({ path: join(h, rel), why, class: 'secret' })
  for (const [rel, why] of HOME_ESCAPES) out.push({ path: join(h, rel), why, class: 'escape' })
  for (const [p, why] of SYSTEM_SECRETS) out.push({ path: p, why, class: 'secret' })
  for (const [p, why] of SYSTEM_ESCAPES) out.push({ path: p, why, class: 'escape' })
  const runtime = opts.runtimeDir && isAbsolute(opts.runtimeDir) ? opts.runtimeDir : opts.uid !== undefined ? `/run/user/${opts.uid}` : undefined
  if (runtime) out.push({ path: normalizePath(runtime), why: '$XDG_RUNTIME_DIR (podman, ssh-agent and D-Bus sockets)', class: 'escape' })
  out.push({ path: join(h, '.local/share/podshell'), why: "podshell's data (policies, gateway sockets, the sandbox CA key)", class: 'escape' })
  out.push({ path: join(h, '.config/podshell'), why: "podshell's configuration", class: 'escape' })
  if (opts.podshellDataDir) out.push({ path: normalizePath(opts.podshellDataDir), why: "podshell's data (policies, gateway sockets, the sandbox CA key)", class: 'escape' })
  if (opts.podshellConfigDir) out.push({ path: normalizePath(opts.podshellConfigDir), why: "podshell's configuration", class: 'escape' })
  for (const e of opts.extra ?? []) {
    out.push({ path: normalizePath(isAbsolute(e) ? e : join(h, e)), why: 'listed as sensitive by the enterprise configuration', class: 'secret' })
  }
  return out
}

/**
 * Why `path` must not be mounted, or undefined when it may be. `home` is the caller's $HOME.
 * Fails closed: a path whose realpath cannot be determined for a reason other than not existing
 * (a symlink loop, EACCES on a parent) is refused, since what it would expose is unknown.
 */
export function checkMount(path: string, home: string, opts: SensitiveOptions = {}): string | undefined {
  if (!isAbsolute(path)) return `${path} is not an absolute path`
  const lexical = normalizePath(path)
  let real: string
  try {
    real = realpathOrNearest(lexical)
  } catch (e) {
    return `${lexical} cannot be resolved (${(e as NodeJS.ErrnoException).code ?? 'error'}), so what it exposes is unknown`
  }
  const h = normalizePath(home)
  const show = (p: string) => (p === h ? '~' : p.startsWith(h + '/') ? '~/' + p.slice(h.length + 1) : p)
  const via = real !== lexical ? ` (${lexical} resolves to ${real})` : ''
  // Escapes first: they are refused even with allowSensitive, so report them when both apply.
  const list = sensitivePaths(h, opts).sort((a, b) => (a.class === b.class ? 0 : a.class === 'escape' ? -1 : 1))
  for (const s of list) {
    if (s.class === 'secret' && opts.allowSensitive) continue
    const forms = new Set([s.path])
    try {
      if (existsSync(s.path)) forms.add(realpathSync(s.path))
    } catch {
      // an unresolvable sensitive path is still compared by its name
    }
    for (const sp of forms) {
      const named = show(s.path)
      if (real === sp || lexical === s.path) return `${show(lexical)}${via} is ${named} (${s.why})`
      if (isWithin(real, sp) || isWithin(lexical, s.path)) return `${show(lexical)}${via} is inside ${named} (${s.why})`
      if (isWithin(sp, real) || isWithin(s.path, lexical)) {
        const what = real === h || lexical === h ? 'your home directory' : show(lexical)
        return `mounting ${what}${via} would expose ${named} (${s.why})`
      }
    }
  }
  return undefined
}

/**
 * Relative to $HOME: package caches and tool dirs whose content HOST builds and shells execute
 * later (issue 9, red-team lead). A Maven plugin jar planted in ~/.m2/repository runs at the user's
 * next `mvn` on the host; the same holds for Gradle's caches and init scripts, Cargo's registry
 * sources (build.rs) and ~/.cargo/bin, npm's cache (install scripts), pip/uv/poetry wheels, Go's
 * module cache, and ~/.local/bin on PATH. Mounting them READ-ONLY is fine (the agent builds with
 * them offline); read-write is refused: the agent would be writing the host's next build.
 */
const HOST_EXECUTED: readonly (readonly [string, string])[] = [
  ['.m2', 'the Maven repository (plugins and dependencies host builds run)'],
  ['.gradle', 'Gradle caches and init scripts (host builds run them)'],
  ['.ivy2', 'the Ivy cache (host builds run what is in it)'],
  ['.sbt', 'sbt plugins and boot jars (host builds run them)'],
  ['.npm', 'the npm cache (install scripts run by host installs)'],
  ['.cache/yarn', 'the Yarn cache (install scripts run by host installs)'],
  ['.yarn', 'Yarn caches and plugins (host installs run them)'],
  ['.local/share/pnpm', 'the pnpm store (install scripts run by host installs)'],
  ['.pnpm-store', 'the pnpm store (install scripts run by host installs)'],
  ['.cache/pip', 'the pip cache (wheels host installs unpack and run)'],
  ['.cache/uv', 'the uv cache (wheels host installs unpack and run)'],
  ['.cache/pypoetry', 'the Poetry cache (packages host installs run)'],
  ['.conda', 'conda packages and environments (host shells run them)'],
  ['.cargo', 'Cargo registry sources (build.rs) and ~/.cargo/bin (on PATH)'],
  ['.rustup', 'Rust toolchains (host builds run them)'],
  ['go/pkg/mod', 'the Go module cache (host builds compile and run it)'],
  ['.cache/go-build', 'the Go build cache (host builds link it)'],
  ['.gem', 'installed gems (host Ruby runs them)'],
  ['.nuget/packages', 'the NuGet cache (host builds run its MSBuild targets)'],
  ['.local/bin', 'executables on the host PATH'],
]

/**
 * Why `path` must not be mounted READ-WRITE (it is, is inside, or contains a package cache or tool
 * dir the host executes from), or undefined. Read-only mounts of these are fine.
 */
export function checkWritable(path: string, home: string): string | undefined {
  const h = normalizePath(home)
  let real: string
  try {
    real = realpathOrNearest(normalizePath(path))
  } catch {
    real = normalizePath(path)
  }
  const lexical = normalizePath(path)
  const show = (p: string) => (p.startsWith(h + '/') ? '~/' + p.slice(h.length + 1) : p)
  for (const [rel, why] of HOST_EXECUTED) {
    const c = join(h, rel)
    const forms = new Set([c])
    try {
      if (existsSync(c)) forms.add(realpathSync(c))
    } catch {
      // compared by name
    }
    for (const cp of forms) {
      if (isWithin(real, cp) || isWithin(lexical, c)) return `${show(lexical)} ${real === cp || lexical === c ? 'is' : 'is inside'} ${show(c)}, ${why}: a file the agent plants there runs on the host`
      if (isWithin(cp, real) || isWithin(c, lexical)) return `${show(lexical)} contains ${show(c)}, ${why}: a file the agent plants there runs on the host`
    }
  }
  return undefined
}

/** True when `child` is `parent` or lies under it. */
export function isWithin(child: string, parent: string): boolean {
  if (parent === '/') return child.startsWith('/')
  return child === parent || child.startsWith(parent + '/')
}

/** realpath of the path, or of its nearest existing ancestor joined with the rest. */
function realpathOrNearest(p: string): string {
  let cur = p
  const rest: string[] = []
  for (;;) {
    try {
      const r = realpathSync(cur)
      return rest.length ? join(r, ...rest.reverse()) : r
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
      const parent = dirname(cur)
      if (parent === cur) throw e
      rest.push(basename(cur))
      cur = parent
    }
  }
}

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
  const masked = minimal([...s.readDeny, ...s.frontier])
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
