import { existsSync, realpathSync } from 'node:fs'
import { basename, dirname, isAbsolute, join } from 'node:path'
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
 *     podshell's own data, config and cache, shell start-up files, /proc, /sys, /dev). Refused always:
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
  /**
   * podshell's cache dir: never mountable. The host's podshell runs what is there: Node's compile
   * cache (V8 code of every command), the OCI-runtime probe the fast exec path trusts, image
   * build digests and build contexts.
   */
  podshellCacheDir?: string
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

const PODSHELL_CACHE_WHY = "podshell's cache (its compile cache, runtime probe and image build contexts run on the host)"

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
  out.push({ path: join(h, '.cache/podshell'), why: PODSHELL_CACHE_WHY, class: 'escape' })
  if (opts.podshellDataDir) out.push({ path: normalizePath(opts.podshellDataDir), why: "podshell's data (policies, gateway sockets, the sandbox CA key)", class: 'escape' })
  if (opts.podshellConfigDir) out.push({ path: normalizePath(opts.podshellConfigDir), why: "podshell's configuration", class: 'escape' })
  if (opts.podshellCacheDir) out.push({ path: normalizePath(opts.podshellCacheDir), why: PODSHELL_CACHE_WHY, class: 'escape' })
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
