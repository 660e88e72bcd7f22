import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { MountMode, MountSpec } from './types.js'

/**
 * OpenShell's `filesystem_policy` mapped onto container mounts.
 *
 * OpenShell enforces it with Landlock inside the container: listed paths get read or read-write
 * access, everything else none. podshell has no supervisor inside the sandbox; its filesystem
 * boundary is the mount table (the image read-only, the user's directories bind-mounted). So:
 *
 *   include_workdir: false  → the workdir is mounted read-only (whatever else asked for rw);
 *                   true   → read-write unless a session type made it read-only.
 *   read_write: [P]         → P writable: inside a read-only podshell mount, P is bound read-write
 *                             on top (when it exists on the host); elsewhere in the image, an empty
 *                             writable tmpfs owned by the agent (e.g. OpenShell's /sandbox).
 *   read_only: [P]          → P read-only: inside a read-write podshell mount, P is bound read-only
 *                             on top (when it exists); elsewhere the image is read-only already.
 *
 * What cannot be mapped is reported, never silent: paths the policy does not list stay readable
 * (the image is the agent's root filesystem); `unenforcedWarnings` in src/policy/schema.ts says so.
 */
export interface FsPolicy {
  include_workdir?: boolean | undefined
  read_only?: string[] | undefined
  read_write?: string[] | undefined
}

export interface FsMapping {
  workdirMode: MountMode | undefined
  mounts: MountSpec[]
  tmpfsDirs: string[]
}

/** Paths the runtime provides itself or that are not directories to mount over. */
const SKIP = ['/proc', '/sys', '/dev', '/run/podshell']
const within = (p: string, dir: string) => p === dir || p.startsWith(dir.endsWith('/') ? dir : dir + '/')

export function mapFilesystemPolicy(
  fs: FsPolicy | undefined,
  o: { workdir: string | null; workdirMode: MountMode | undefined; mounts: MountSpec[]; home: string; writable: string[] },
): FsMapping {
  const out: FsMapping = { workdirMode: o.workdirMode, mounts: [], tmpfsDirs: [] }
  if (!fs) return out
  // include_workdir: false always wins (it only narrows); true applies when nothing else decided.
  if (o.workdir !== null && fs.include_workdir === false) out.workdirMode = 'ro'
  else if (o.workdir !== null && fs.include_workdir === true && o.workdirMode === undefined) out.workdirMode = 'rw'
  const modeOf = (m: MountSpec) => (o.workdir !== null && m.target === o.workdir && out.workdirMode ? out.workdirMode : m.mode)
  const containing = (p: string) =>
    o.mounts
      .filter(m => within(p, m.target))
      .sort((a, b) => b.target.length - a.target.length)[0]
  const add = (p: string, want: MountMode) => {
    if (SKIP.some(s => within(p, s))) return
    const m = containing(p)
    if (m) {
      if (modeOf(m) === want || p === m.target) return
      const source = join(m.source, p.slice(m.target.length))
      if (existsSync(source) && !out.mounts.some(x => x.target === p)) out.mounts.push({ source, target: p, mode: want })
      return
    }
    if (want === 'rw' && !o.writable.some(w => within(p, w)) && !within(p, o.home) && !out.tmpfsDirs.includes(p)) out.tmpfsDirs.push(p)
  }
  for (const p of fs.read_write ?? []) add(p, 'rw')
  for (const p of fs.read_only ?? []) add(p, 'ro')
  return out
}
