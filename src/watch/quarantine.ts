import { existsSync, appendFileSync, cpSync, lstatSync, mkdirSync, opendirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { quarantineDir, watchLogFile } from './paths.js'
import { sandboxDir } from '../config/paths.js'
import { AuditLog, redact, type Rendered } from '../gateway/audit.js'
import { watcherFindingJson } from './finding.js'

/**
 * Quarantine: what the watcher does with a host-executed file the agent made. The entry is RENAMED
 * aside (content preserved for the user to inspect) into `<data>/quarantine/<sandbox>/` — in
 * podshell's data dir, which no agent container mounts, owned by the user (0700) — and recorded
 * twice: a line in `<data>/quarantine/<sandbox>/watch.log` and an OCSF Detection Finding in the sandbox's audit log (`podshell
 * logs` shows it).
 *
 * Safety of the rename itself (the agent controls every path component below the mount root): the
 * process changes its working directory INTO the parent directory and checks, by realpath of ".",
 * that it is the directory the path names — no component was swapped for a symlink. The rename is
 * then relative to that pinned directory, so a later swap cannot redirect it to a host path (a
 * symlink `docs -> /home/user/other` would otherwise make the watcher move the user's own files).
 *
 * When the state dir is on another filesystem (rename gives EXDEV), the entry is first renamed in
 * place to `<name>.podshell-quarantined-<id>` (instantly harmless: no host tool reads that name),
 * then copied into the quarantine dir and removed — unless it is larger than COPY_LIMIT, in which
 * case it stays in place under the neutral name, and the log says where.
 */
export interface QuarantineContext {
  readonly dataDir: string
  readonly name: string
  /** Where the line of each action goes besides watch.log (the watcher's stderr, a CLI note). */
  readonly say?: (line: string) => void
  readonly now?: () => number
}

export interface Finding {
  /** Absolute host path of the entry. */
  readonly path: string
  /** Rule pattern that matched (`.git`, `.envrc`, `git-config` …). */
  readonly rule: string
  /** One line: what the entry is and why it is dangerous. */
  readonly reason: string
  /**
   * What was done: moved aside, key removed, baseline restored; `blocked`: nothing to move (a live
   * host unix socket), the kernel already stops the agent (seccomp), recorded so it is visible.
   */
  readonly action: 'quarantined' | 'sanitized' | 'restored' | 'blocked'
  /** Where the agent's version went (quarantine path), if anywhere. */
  readonly savedTo?: string
  /** Keys removed from a git config. */
  readonly removed?: readonly string[]
  /** Milliseconds between the entry's change time and the action, when known. */
  readonly latencyMs?: number
}

export { quarantineDir, watchDir, watchLogFile } from './paths.js'

const COPY_LIMIT = { entries: 20_000, bytes: 256 * 1024 * 1024 }

/**
 * Runs `fn` with the working directory pinned to `dir` after checking that `dir` is a real
 * directory reached without symlinks. Returns undefined (and does nothing) when it is not.
 */
export function inPinnedDir<T>(dir: string, fn: () => T): T | undefined {
  const before = process.cwd()
  try {
    process.chdir(dir)
  } catch {
    return undefined
  }
  try {
    if (realpathSync('.') !== dir) return undefined
    return fn()
  } finally {
    try {
      process.chdir(before)
    } catch {
      process.chdir('/')
    }
  }
}

function stamp(now: number): string {
  return new Date(now).toISOString().replace(/[:.]/g, '-')
}

/** A file name for the quarantined copy: time, random id, and the path with `/` → `%`. */
function savedName(path: string, now: number): string {
  return `${stamp(now)}-${randomBytes(3).toString('hex')}${path.replace(/%/g, '%25').replace(/\//g, '%')}`.slice(0, 240)
}

/**
 * Moves `path` aside. Returns where it went, or undefined when it is gone or its parent is not
 * what the path names (the caller's next scan sees the real entry).
 */
export function moveAside(ctx: QuarantineContext, path: string): string | undefined {
  const now = ctx.now?.() ?? Date.now()
  const qdir = quarantineDir(ctx.dataDir, ctx.name)
  mkdirSync(qdir, { recursive: true, mode: 0o700 })
  const dest = join(qdir, savedName(path, now))
  const base = basename(path)
  return inPinnedDir(dirname(path), () => {
    try {
      lstatSync(base)
    } catch {
      return undefined
    }
    try {
      renameSync(base, dest)
      return dest
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e
    }
    // Another filesystem: neutralise in place first (same directory, atomic), then copy out.
    const neutral = `${base}.podshell-quarantined-${randomBytes(4).toString('hex')}`
    renameSync(base, neutral)
    if (!withinCopyLimit(neutral)) return join(dirname(path), neutral)
    try {
      cpSync(neutral, dest, { recursive: true, verbatimSymlinks: true, errorOnExist: true })
      rmSync(neutral, { recursive: true, force: true })
      return dest
    } catch {
      return join(dirname(path), neutral)
    }
  })
}

function withinCopyLimit(p: string): boolean {
  let entries = 0
  let bytes = 0
  const walk = (x: string): boolean => {
    const st = lstatSync(x)
    entries++
    bytes += st.size
    if (entries > COPY_LIMIT.entries || bytes > COPY_LIMIT.bytes) return false
    if (!st.isDirectory()) return true
    const d = opendirSync(x)
    try {
      for (let e = d.readSync(); e; e = d.readSync()) if (!walk(join(x, e.name))) return false
    } finally {
      d.closeSync()
    }
    return true
  }
  try {
    return walk(p)
  } catch {
    return false
  }
}

/**
 * Replaces the content of a file (pinned parent, temp file + rename in the same directory), after
 * saving the current content into the quarantine dir. Used for git configs (sanitized or restored).
 */
export function rewriteFile(ctx: QuarantineContext, path: string, content: string, opts: { save?: boolean } = {}): string | undefined {
  const now = ctx.now?.() ?? Date.now()
  const qdir = quarantineDir(ctx.dataDir, ctx.name)
  mkdirSync(qdir, { recursive: true, mode: 0o700 })
  const dest = join(qdir, savedName(path, now))
  const base = basename(path)
  return inPinnedDir(dirname(path), () => {
    let current: Buffer
    try {
      const st = lstatSync(base)
      // A symlink or a directory named `config`: move it aside whole, then write ours.
      if (!st.isFile()) {
        renameSync(base, `${base}.podshell-quarantined-${randomBytes(4).toString('hex')}`)
        current = Buffer.alloc(0)
      } else current = readFileSync(base)
    } catch {
      current = Buffer.alloc(0)
    }
    if (opts.save !== false) writeFileSync(dest, current, { mode: 0o600 })
    const tmp = `.${base}.podshell-${randomBytes(4).toString('hex')}`
    writeFileSync(tmp, content, { mode: 0o644, flag: 'wx' })
    renameSync(tmp, base)
    return dest
  })
}

/** Records a finding: watch.log line, OCSF Detection Finding, and ctx.say. Never throws. */
export function recordFinding(ctx: QuarantineContext, f: Finding): void {
  const now = ctx.now?.() ?? Date.now()
  const line = findingLine(f)
  try {
    mkdirSync(quarantineDir(ctx.dataDir, ctx.name), { recursive: true, mode: 0o700 })
    appendFileSync(watchLogFile(ctx.dataDir, ctx.name), `${new Date(now).toISOString()} ${line}\n`, { mode: 0o600 })
  } catch {
    // the audit record below is the authoritative one
  }
  try {
    // Never recreate a removed sandbox's state dir (AuditLog makes its dir): the watch.log line stays.
    if (existsSync(sandboxDir(ctx.dataDir, ctx.name))) AuditLog.forSandbox(ctx.dataDir, ctx.name).write(renderFinding(ctx.name, f, now))
  } catch {
    // AuditLog.write never throws; defensive
  }
  ctx.say?.(line)
}

export function findingLine(f: Finding): string {
  if (f.action === 'blocked') return `host unix socket blocked ${f.path} (${f.reason})`
  const what = f.action === 'quarantined' ? 'quarantined' : f.action === 'sanitized' ? `removed ${f.removed?.join(', ') ?? ''} from` : 'restored'
  return `host-executed file ${what} ${f.path} (${f.reason})${f.savedTo ? ` → ${f.savedTo}` : ''}`
}

/**
 * OCSF Detection Finding (class 2004, category 2 Findings), activity Create, disposition
 * Quarantined: the shape OCSF gives a security control's finding about an artefact it acted on.
 */
export function renderFinding(sandbox: string, f: Finding, time: number): Rendered {
  const json = watcherFindingJson({
    sandbox,
    time,
    severity: 'High',
    message: redact(findingLine(f)),
    title: f.action === 'blocked' ? 'Host unix socket in a mounted tree' : 'Host-executed file written by the agent',
    desc: redact(f.reason),
    types: [f.rule],
    resource: { name: f.path, type: 'file' },
    disposition: f.action === 'blocked' ? { id: 2, name: 'Blocked' } : { id: 3, name: 'Quarantined' },
    unmapped: {
      action: f.action,
      ...(f.savedTo ? { saved_to: f.savedTo } : {}),
      ...(f.removed?.length ? { removed_keys: [...f.removed] } : {}),
      ...(f.latencyMs !== undefined ? { latency_ms: f.latencyMs } : {}),
    },
  })
  const shorthand = `FINDING:CREATE [HIGH] ${f.action === 'blocked' ? 'BLOCKED' : 'QUARANTINED'} ${f.path.replace(/\s/g, '_')} [rule:${f.rule.replace(/[\s\]]/g, '_')} action:${f.action}${f.savedTo ? ` saved:${f.savedTo.replace(/\s/g, '_')}` : ''}] [reason:${redact(f.reason).slice(0, 200)}]`
  return { json, shorthand }
}
