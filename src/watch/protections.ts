import { spawnSync } from 'node:child_process'
import { lstatSync, readFileSync, rmSync } from 'node:fs'
import { z } from 'zod'
import type { MountSpec } from '../sandbox/types.js'
import { readAgentDescription } from '../sandbox/description.js'
import { isSocketMaskMount } from '../sandbox/sockets.js'
import { protectedFile, sentinelHeldFile, writeWatchFile } from './paths.js'

/**
 * The mount sentinel's record of protections (src/watch/mount-sentinel.ts watches them): which
 * mounts of a sandbox the host can detach (a read-only bind or pin nested in a read-write bind, a
 * directory or socket mask), the identity of the host path each was made on, and how one is made
 * again inside the agent's mount namespace. Written by podshell at create and start into the
 * sandbox's watch state dir (no container mounts it), read back validated.
 */
export type ProtectionKind = 'ro' | 'pin' | 'mask-dir' | 'mask-file'

const ProtectedSchema = z
  .object({
    inside: z.string().startsWith('/').describe('path inside the agent container'),
    host: z.string().startsWith('/').describe('the host path under the mount (seen inside through the enclosing bind)'),
    kind: z
      .enum(['ro', 'pin', 'mask-dir', 'mask-file'])
      .describe('read-only bind of the path itself, a pin (read-write bind onto itself), or a mask'),
    dev: z.number().describe('device of the host path the mount was made on (0: absent)'),
    ino: z.number().describe('inode of the host path the mount was made on (0: absent)'),
    birth: z.number().optional().describe('birth time (ms) of the host path the mount was made on (0: absent or not reported)'),
  })
  .strict()
export type Protected = z.infer<typeof ProtectedSchema>
const ProtectedList = z.array(ProtectedSchema).max(20_000)

export interface Protection {
  inside: string
  host: string
  kind: ProtectionKind
}

function within(p: string, dir: string): boolean {
  return dir === '/' ? p.startsWith('/') : p === dir || p.startsWith(dir + '/')
}

/**
 * The protections a set of agent mounts and masks makes that the host can detach: read-only binds
 * of a path onto itself and pins nested in a read-write bind, socket masks (`isMaskFile`) and
 * directory masks nested in any bind (the enclosing bind's source is the host directory the path
 * lives in). Other nested binds (a different host directory mounted inside the workdir) protect
 * nothing and are left out. Sorted so that a parent comes before what is inside it (a pin is made
 * again before the protections on top of it). Pure.
 */
export function protectedMounts(
  mounts: readonly MountSpec[],
  masks: readonly string[],
  isMaskFile: (m: MountSpec) => boolean,
): Protection[] {
  const enclosing = (p: string): MountSpec | undefined => {
    let best: MountSpec | undefined
    for (const m of mounts) {
      if (m.target !== p && within(p, m.target) && (!best || m.target.length > best.target.length)) best = m
    }
    return best
  }
  const out = new Map<string, Protection>()
  for (const m of mounts) {
    const e = enclosing(m.target)
    if (!e) continue
    const host = e.source + m.target.slice(e.target.length)
    if (isMaskFile(m)) out.set(m.target, { inside: m.target, host, kind: 'mask-file' })
    else if (host === m.source && e.mode === 'rw') out.set(m.target, { inside: m.target, host, kind: m.mode === 'ro' ? 'ro' : 'pin' })
  }
  for (const t of masks) {
    const e = enclosing(t)
    if (!e) continue
    out.set(t, { inside: t, host: e.source + t.slice(e.target.length), kind: 'mask-dir' })
  }
  return [...out.values()].sort((a, b) => (a.inside < b.inside ? -1 : a.inside > b.inside ? 1 : 0))
}

/**
 * The identity of a host path: device, inode and birth time. The inode number alone is not
 * enough: ext4 hands a just-freed inode number to the next file (`rm -rf d; mkdir d` often gets d
 * its old number back — measured here); the birth time (statx) tells them apart. 0: absent or
 * not reported by the filesystem.
 */
export function identity(p: string): { dev: number; ino: number; birth: number } {
  try {
    const st = lstatSync(p)
    return { dev: st.dev, ino: st.ino, birth: Math.round(st.birthtimeMs) || 0 }
  } catch {
    return { dev: 0, ino: 0, birth: 0 }
  }
}

export const sameId = (p: Protected, id: { dev: number; ino: number; birth: number }) =>
  p.dev === id.dev && p.ino === id.ino && (p.birth ?? id.birth) === id.birth

/** Unescapes a mountinfo field (\040 for a space, \011, \012, \134). */
const unescapeMountinfo = (f: string) => f.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))

/**
 * The mount points of a process's mount namespace, as paths from its root (the container's view),
 * or undefined. A protection whose mount is gone from here was detached, whatever its host path's
 * identity says.
 */
export function mountPoints(pid: number): Set<string> | undefined {
  try {
    const out = new Set<string>()
    for (const line of readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n')) {
      const f = line.split(' ')
      if (f.length > 4) out.add(unescapeMountinfo(f[4]!))
    }
    return out
  } catch {
    return undefined
  }
}

/**
 * Records the protections with the identity of their host paths now (create, and every start:
 * the container mounts the current paths). A start also clears a "held" mark: its mounts are new.
 */
export function recordProtections(dataDir: string, name: string, list: readonly Protection[]): void {
  writeWatchFile(
    protectedFile(dataDir, name),
    JSON.stringify(list.map(p => ({ inside: p.inside, host: p.host, kind: p.kind, ...identity(p.host) }))) + '\n',
  )
  rmSync(sentinelHeldFile(dataDir, name), { force: true })
}

/**
 * The lifecycle's one call (create: the plan's mounts and masks; start: the stored agent
 * description's, which a restart renders again). A sandbox without a description keeps its list.
 */
export function recordSandboxProtections(
  dataDir: string,
  name: string,
  from?: { mounts: readonly MountSpec[]; masks: readonly string[] },
  say?: (line: string) => void,
): void {
  let src = from
  if (!src) {
    try {
      src = readAgentDescription(dataDir, name)
    } catch {
      src = undefined
    }
  }
  try {
    const list = src ? protectedMounts(src.mounts, src.masks, m => isSocketMaskMount(m, dataDir)) : loadProtections(dataDir, name)
    recordProtections(dataDir, name, list)
  } catch (e) {
    say?.(
      `warning: the mount sentinel of ${name} could not record its protections (${(e as Error).message.split('\n')[0]}): protections the host replaces stay detached until the sandbox restarts`,
    )
  }
}

/** The recorded protections, or [] (none, or a sandbox made before the sentinel). */
export function loadProtections(dataDir: string, name: string): Protected[] {
  try {
    return ProtectedList.parse(JSON.parse(readFileSync(protectedFile(dataDir, name), 'utf8')))
  } catch {
    return []
  }
}

const SAFE_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' }
const MOUNT = 'mount -n --no-canonicalize'

/** The shell script that makes one protection again; `$1` is the target, `$2` the container's root. */
export function remountScript(kind: ProtectionKind): string {
  switch (kind) {
    case 'ro':
      // A flag the enclosing mount has locked (nosuid/nodev from the host's mount) must be kept.
      return `${MOUNT} --bind "$1" "$1" && { ${MOUNT} -o remount,bind,ro "$1" || ${MOUNT} -o remount,bind,ro,nosuid,nodev "$1"; }`
    case 'pin':
      return `${MOUNT} --bind "$1" "$1"`
    case 'mask-dir':
      return `${MOUNT} -t tmpfs -o ro,nosuid,nodev,noexec,mode=000,size=4k tmpfs "$1"`
    case 'mask-file':
      return `${MOUNT} --bind "$2/dev/null" "$1" && ${MOUNT} -o remount,bind,ro,nosuid,nodev,noexec "$1"`
  }
}

/**
 * Makes one protection again inside the mount namespace of `pid` (the agent container's init):
 * the host's sh and mount (nsenter's --root=/ keeps the host's root directory), in the container's
 * user and mount namespaces, on `/proc/<pid>/root/<inside>`. Returns an error line, or undefined.
 */
export function remount(pid: number, p: Protected): string | undefined {
  const root = `/proc/${pid}/root`
  const r = spawnSync(
    'nsenter',
    ['-t', String(pid), '-U', '-m', '--root=/', '--wd=/', '--', '/bin/sh', '-c', remountScript(p.kind), 'sh', root + p.inside, root],
    {
      env: SAFE_ENV,
      encoding: 'utf8',
      timeout: 10_000,
    },
  )
  if (r.error) return r.error.message
  if (r.status !== 0) return (r.stderr || r.stdout || `exit ${r.status}`).trim().split('\n')[0]
  return undefined
}
