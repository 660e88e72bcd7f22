import { lstatSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { MountSpec } from './types.js'

/**
 * Protections that survive rename (issue 9, findings 1 and 6).
 *
 * A read-only bind (a submodule's `.git` pointer, `.git/modules`, `packages/web/.claude/settings.json`)
 * or a mask (`.ai-read-deny`) nested in a READ-WRITE bind is only as fixed as the path leading to
 * it. The kernel refuses to rename a mount point (EBUSY), but not its parent: `mv libs libs.orig`
 * carried the read-only `libs/sub/.git` away with it, and the agent then recreated `libs/sub` with
 * a `.git` whose `core.fsmonitor` the host's next `git status` ran.
 *
 * The fix is data: every directory strictly between a protected mount point and the read-write
 * bind that contains it is bound onto itself, read-write ("pinned"). A mount point cannot be
 * renamed, exchanged (renameat2 RENAME_EXCHANGE), replaced (rename over it), or removed (rmdir):
 * all fail with EBUSY, so no ancestor of a protected path can be moved and a symlink cannot be
 * swapped in for one. Measured on this host (rootless Podman 4.3.1 + runc, kernel 6.18), inside a
 * container with `repo` rw, `repo/libs` and `repo/libs/sub` pinned, `repo/libs/sub/.git` ro:
 *   rename(libs) EBUSY · rename(libs/sub) EBUSY · RENAME_EXCHANGE(libs, x) EBUSY ·
 *   RENAME_EXCHANGE(libs/sub, libs/other) EBUSY · rename(x → libs) EBUSY · rename(mask) EBUSY ·
 *   RENAME_EXCHANGE(libs, symlink) EBUSY; RENAME_EXCHANGE of the ro file itself EXDEV.
 * Without the pins, rename(libs) and rename(mask) succeed (the control).
 *
 * Cost and limits: one extra bind per pinned directory (shared ancestors once). A rename(2) of a
 * FILE from a pinned directory to another directory crosses a mount and fails with EXDEV; `mv` and
 * most tools fall back to copy + unlink, `git` renames only within a directory. Ancestors that are
 * symlinks on the host are not pinned (the mount is not below them: runc resolves the target
 * through them); the scan never follows symlinks, so protections it found have none. Mounts whose
 * enclosing mount is read-only need nothing (rename there is EROFS), nor do mounts that sit in the
 * sandbox's own home or a tmpfs: what the agent moves there never reaches the host.
 */

/** A self-bind (source = the host directory of target) that pins one directory. */
export interface PinMount extends MountSpec {
  mode: 'rw'
}

/**
 * The pins for a set of mounts and masks: for each mount target and mask path, every directory
 * strictly between it and its nearest enclosing read-write bind. `mounts` are the binds the agent
 * container gets (sources on the host, targets inside); masks are paths covered by tmpfs or a file.
 * Pure apart from lstat of the host sources (a pin is only made for a real directory).
 */
export function pinMounts(mounts: readonly MountSpec[], masks: readonly string[] = []): PinMount[] {
  const targets = new Set(mounts.map(m => m.target))
  const pins = new Map<string, PinMount>()
  const enclosing = (p: string): MountSpec | undefined => {
    let best: MountSpec | undefined
    for (const m of mounts) {
      if (m.target !== p && within(p, m.target) && (!best || m.target.length > best.target.length)) best = m
    }
    return best
  }
  const protect = (p: string) => {
    const e = enclosing(p)
    if (!e || e.mode !== 'rw') return
    for (let d = dirname(p); d !== e.target && within(d, e.target); d = dirname(d)) {
      if (targets.has(d) || pins.has(d)) continue
      const source = join(e.source, d.slice(e.target.length))
      if (!isRealDir(source)) continue
      pins.set(d, { source, target: d, mode: 'rw' })
    }
  }
  for (const m of mounts) protect(m.target)
  for (const m of masks) protect(m)
  return [...pins.values()].sort((a, b) => a.target.length - b.target.length || (a.target < b.target ? -1 : 1))
}

function within(p: string, dir: string): boolean {
  return dir === '/' ? p.startsWith('/') : p === dir || p.startsWith(dir + '/')
}

function isRealDir(p: string): boolean {
  try {
    const st = lstatSync(p)
    return st.isDirectory()
  } catch {
    return false
  }
}
