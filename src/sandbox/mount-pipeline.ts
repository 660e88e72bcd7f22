import { existsSync, mkdirSync, statSync } from 'node:fs'
import { PodshellError } from '../errors.js'
import { checkMount, checkWritable, type SensitiveOptions } from './sensitive.js'
import { devProtections, readDenyAncestor, scanTree, type ScanOptions } from './tree-scan.js'
import type { MountMode } from './types.js'

/**
 * THE mount pipeline: every directory tree a sandbox mounts, whoever asked for it (command-line
 * flags, a DevAIFlow spec, a library caller of SandboxRuntime.create), passes through
 * secureTrees. One place decides:
 *   1. the path is not sensitive (src/sandbox/sensitive.ts; symlinks resolved on both sides);
 *   2. no ancestor holds a `.ai-read-deny` marker (such a mount would expose the marked tree);
 *   3. the tree is scanned (bounded; an unfinished scan fails closed, since a missed marker is an
 *      exposed directory) and every marked directory inside is masked;
 *   4. read-write SOURCE trees get the development protections (git dirs, hook configs and agent
 *      settings read-only, absent protected dirs created so they can be bound) — data trees (the
 *      agent's own state, e.g. Claude's projects/) are not source trees and get none.
 */

export interface Tree {
  path: string
  mode: MountMode
  /** `source`: a project/repository tree (default); `data`: agent state, no dev protections. */
  kind?: 'source' | 'data'
  /** How the refusal names it: `--workdir`, `spec mounts[0]` … */
  what: string
}

export interface PipelineOptions {
  home: string
  sensitive: SensitiveOptions
  scan: Required<ScanOptions>
  /** Error code prefix and hint wording differ between the spec and the flags; the rules do not. */
  code?: 'INVALID_SPEC' | 'INVALID_INPUT'
  /** Hint for a sensitive-path refusal. */
  sensitiveHint?: string
  /** Name a sensitive refusal by `what` alone (the spec's key path; the reason names the path). */
  sensitiveByKey?: boolean
}

export interface Secured {
  /** Directories to hide (empty read-only tmpfs on top). */
  masks: string[]
  /** Paths to bind read-only on themselves inside read-write trees. */
  readOnly: string[]
}

function fail(what: string, hint: string, code: string): PodshellError {
  return new PodshellError(what, { hint, code, exitCode: 2 })
}

export function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory()
  } catch {
    return false
  }
}

/** Steps 1 and 2 for one path (no scan): used before anything is created for it. */
export function checkTreeSource(t: Tree, o: PipelineOptions): void {
  const why = checkMount(t.path, o.home, o.sensitive)
  if (why) throw fail(`refusing to mount ${o.sensitiveByKey ? t.what : `${t.what} ${t.path}`}: ${why}`, o.sensitiveHint ?? 'mount only project directories', 'SENSITIVE_PATH')
  const marked = existsSync(t.path) ? readDenyAncestor(t.path) : undefined
  if (marked) throw fail(`refusing to mount ${t.what} ${t.path}: ${marked} is marked .ai-read-deny`, 'remove the marker or do not mount this tree', 'READ_DENY')
  // Package caches and tool dirs host builds execute from: read-only only (sensitive.ts checkWritable).
  const hostRuns = t.mode === 'rw' ? checkWritable(t.path, o.home) : undefined
  if (hostRuns) throw fail(`refusing to mount ${t.what} ${t.path} read-write: ${hostRuns}`, 'mount it read-only', 'HOST_EXECUTED')
}

export async function secureTrees(trees: readonly Tree[], o: PipelineOptions): Promise<Secured> {
  const masks = new Set<string>()
  const readOnly = new Set<string>()
  for (const t of trees) checkTreeSource(t, o)
  for (const t of trees) {
    if (!isDir(t.path)) continue
    const scan = await scanTree(t.path, o.scan)
    if (!scan.complete) {
      throw fail(
        `cannot finish the .ai-read-deny scan of ${t.what} ${t.path} (${scan.stoppedBy === 'timeout' ? `time budget ${o.scan.timeoutMs} ms` : `depth ${o.scan.maxDepth}`} reached after ${scan.scannedDirs} directories)`,
        'raise read_deny_scan.timeout_ms / max_depth in ~/.config/podshell/config.yaml, or mount a smaller tree',
        'READ_DENY_SCAN',
      )
    }
    // Marked dirs and what the bounded scan did not reach (scanTree), and host unix sockets (the
    // runtime covers a socket with an empty file instead of a tmpfs: sockets.ts).
    for (const d of scan.readDeny) masks.add(d)
    for (const d of scan.sockets) masks.add(d)
    if (t.mode === 'rw' && (t.kind ?? 'source') === 'source') {
      const prot = devProtections(scan)
      for (const p of prot.readOnly) readOnly.add(p)
      for (const p of createProtected(prot.create)) readOnly.add(p)
    }
  }
  return { masks: [...masks].sort(), readOnly: [...readOnly].sort() }
}

/**
 * Creates absent protected directories (empty, owned by the user) so they can be bound read-only.
 * Fails closed: if one cannot be created, the agent could create it, so the launch is refused.
 */
function createProtected(paths: readonly string[]): string[] {
  for (const p of paths) {
    try {
      mkdirSync(p, { recursive: true, mode: 0o755 })
    } catch (e) {
      throw fail(`cannot create ${p} to protect it (${(e as NodeJS.ErrnoException).code ?? 'error'})`, 'check the permissions of the project directory', 'INVALID_SPEC')
    }
  }
  return [...paths]
}

// ───────────────────────────── secured options ─────────────────────────────

const secured = new WeakSet<object>()

/**
 * Marks options as having passed the pipeline and the enterprise rules, frozen so that nothing can
 * add a mount afterwards; SandboxRuntime.create does not repeat the (bounded but not free) scan for
 * them. Options that are not marked — a library caller's own, or a copy of marked ones — are
 * secured by the runtime itself. The set is module-private: a caller cannot mark its own object.
 */
export function markSecured<T extends object>(o: T): Readonly<T> {
  for (const v of Object.values(o)) {
    if (Array.isArray(v)) {
      for (const x of v) if (x && typeof x === 'object') Object.freeze(x)
      Object.freeze(v)
    } else if (v && typeof v === 'object') Object.freeze(v)
  }
  Object.freeze(o)
  secured.add(o)
  return o
}

export function isSecured(o: object): boolean {
  return secured.has(o)
}
