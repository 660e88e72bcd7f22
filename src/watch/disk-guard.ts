import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, statfsSync } from 'node:fs'
import { PodshellError } from '../errors.js'
import { parseSize } from '../sandbox/resources.js'
import { AuditLog, type Rendered } from '../gateway/audit.js'
import { watcherFindingJson } from './finding.js'
import { sandboxDir } from '../config/paths.js'
import { diskPaused, frozenFile, writeWatchFile } from './paths.js'
export { diskPaused } from './paths.js'

/**
 * The disk guard: an agent must not fill the disk the HOST works on.
 *
 * The sandbox home (`<data>/sandboxes/<name>/home`) and every read-write mount are bind mounts of
 * host directories. Rootless Podman cannot size them (no project quota on ext4, no loop or tmpfs
 * mounts without root: docs/architecture.md "Limits"), so without this an agent writes until the
 * user's filesystem is full, and the host's own tools (editors saving, git, the shell's history,
 * the desktop session) fail with it.
 *
 * What podshell does instead, from the watcher process that lives as long as the sandbox: it keeps
 * a RESERVE of free space on every filesystem the agent can write to. Every 250 ms (every 50 ms
 * within 2 GiB of the reserve) it reads each one's free space (statfs(2), one syscall); when a
 * filesystem falls below its reserve, every process in the agent's pid namespace is stopped with SIGSTOP, from the host (the user owns them;
 * SIGSTOP cannot be caught or ignored, and a stopped process cannot fork), and the event is
 * recorded (watch.log, an OCSF Detection Finding in the audit log). `sandbox exec`/`connect` refuse
 * in one line while it lasts. When the user has freed space (free ≥ reserve + RESUME_SLACK) the
 * processes get SIGCONT and the agent goes on where it stopped: nothing is lost, no write failed.
 *
 * The bound: the agent writes for at most one tick past the reserve before it is stopped (50 ms
 * near it: ~250 MB even at 5 GB/s into the page cache), which the default reserve (5% of the
 * filesystem, at least 512 MiB, at most 4 GiB) holds. fallocate(2), which would reserve any amount
 * in one call, is denied by the seccomp profile (EOPNOTSUPP: libc then writes the blocks). It is a
 * watcher's bound, not the kernel's: a watcher killed with -9 stops guarding until the next
 * podshell command restarts it (as for host-executed files).
 */

/** `resources.disk_reserve`: a size ("2Gi") or a share of the filesystem ("5%"); "0" turns the guard off. */
export type DiskReserve = { readonly bytes: number } | { readonly percent: number; readonly bounded?: true }

/**
 * The default: 5%, bounded (below). Marked by a field, not by identity: a reserve travels to the
 * watcher daemon as JSON (src/watch/lifecycle.ts), where an identity check would lose the bounds.
 */
export const DEFAULT_DISK_RESERVE: DiskReserve = { percent: 5, bounded: true }
const DEFAULT_MIN = 512 * 1024 ** 2
const DEFAULT_MAX = 4 * 1024 ** 3
/** Free space above the reserve at which a paused agent resumes (no flapping at the boundary). */
export const RESUME_SLACK = 32 * 1024 ** 2
export const RESUME_INODES = 1024
export const DISK_GUARD_TICK_MS = 250
export const DISK_GUARD_NEAR_TICK_MS = 50
const NEAR = 2 * 1024 ** 3

export function parseDiskReserve(v: string | undefined): DiskReserve {
  if (v === undefined) return DEFAULT_DISK_RESERVE
  const s = v.trim()
  if (s === '0') return { bytes: 0 }
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(s)
  if (pct) {
    const p = Number(pct[1])
    if (!(p > 0 && p <= 50)) throw new PodshellError(`invalid resources.disk_reserve ${JSON.stringify(v)}`, { hint: 'use a share from 0.1% to 50% ("5%"), a size ("2Gi"), or "0" to turn the disk guard off', exitCode: 2, code: 'INVALID_INPUT' })
    return { percent: p }
  }
  return { bytes: parseSize(s, 'resources.disk_reserve') }
}

/** The reserve in bytes on a filesystem of `total` bytes. */
export function reserveBytes(r: DiskReserve, total: number): number {
  if ('bytes' in r) return r.bytes
  const share = Math.floor((total * r.percent) / 100)
  // The default is bounded both ways: 5% of a 4 TB disk need not stay free, 5% of 8 GB is too little.
  if (r.bounded === true) return Math.min(DEFAULT_MAX, Math.max(DEFAULT_MIN, share))
  return share
}

export interface FsState {
  /** A path on this filesystem (the first guarded path found on it). */
  readonly path: string
  readonly avail: number
  readonly total: number
  readonly reserve: number
  /** Free inodes and the inodes kept free: millions of empty files exhaust a filesystem too. */
  readonly availInodes: number
  readonly inodeReserve: number
}

/**
 * Inodes kept free: the reserve's share of the filesystem's inodes (1% for a size reserve), none on
 * filesystems that report no inode count (btrfs allocates them dynamically).
 */
export function inodeReserve(r: DiskReserve, totalInodes: number): number {
  if (!(totalInodes > 0) || ('bytes' in r && r.bytes === 0)) return 0
  return Math.floor((totalInodes * ('percent' in r ? r.percent : 1)) / 100)
}

/** Below the reserve of space or of inodes. */
export const isLow = (f: FsState) => f.avail < f.reserve || f.availInodes < f.inodeReserve
/** Back above both with slack: a paused agent may resume. */
export const isClear = (f: FsState) => f.avail >= f.reserve + RESUME_SLACK && f.availInodes >= f.inodeReserve + RESUME_INODES

/** Free space of each distinct filesystem holding one of `paths` (missing paths are skipped). */
export function filesystems(paths: readonly string[], r: DiskReserve): FsState[] {
  const seen = new Map<number, FsState>()
  for (const p of paths) {
    try {
      const dev = statSync(p).dev
      if (seen.has(dev)) continue
      const s = statfsSync(p)
      const total = Number(s.blocks) * Number(s.bsize)
      seen.set(dev, { path: p, avail: Number(s.bavail) * Number(s.bsize), total, reserve: reserveBytes(r, total), availInodes: Number(s.ffree), inodeReserve: inodeReserve(r, Number(s.files)) })
    } catch {
      // gone (a mount source the user removed): nothing of the agent can be written there
    }
  }
  return [...seen.values()]
}

/** The error `exec`/`connect` raise while the agent is paused. */
export function diskPausedError(name: string, why: string): PodshellError {
  return new PodshellError(`sandbox ${name} is paused by the disk guard: ${why}`, {
    hint: 'free space on that filesystem and the agent resumes by itself (or delete the sandbox); the reserve is resources.disk_reserve',
    exitCode: 1,
    code: 'DISK_RESERVE',
  })
}

const human = (b: number) => (b >= 1024 ** 3 ? `${(b / 1024 ** 3).toFixed(1)} GiB` : `${Math.round(b / 1024 ** 2)} MiB`)

/** The pid namespace (`pid:[inode]`) of a process, or undefined. */
function pidNs(pid: number | string): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`)
  } catch {
    return undefined
  }
}

/**
 * Sends `sig` to every process in the pid namespace `ns` (the agent container's), repeating until
 * a pass finds none left to stop (a process forked during a pass is caught by the next; stopped
 * processes cannot fork). Returns the number of processes signalled in the first pass.
 */
export function signalNamespace(ns: string, sig: 'SIGSTOP' | 'SIGCONT'): number {
  let first = -1
  for (let pass = 0; pass < 20; pass++) {
    let pending = 0
    let signalled = 0
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e) || pidNs(e) !== ns) continue
      if (sig === 'SIGSTOP') {
        let state: string
        try {
          state = readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1]?.[0] ?? ''
        } catch {
          continue
        }
        if (state === 'T' || state === 't' || state === 'Z' || state === 'X') continue
        pending++
      }
      try {
        process.kill(Number(e), sig)
        signalled++
      } catch {
        // exited meanwhile
      }
    }
    if (first < 0) first = signalled
    if (sig === 'SIGCONT' || pending === 0) break
  }
  return first
}

export interface DiskGuardOptions {
  dataDir: string
  name: string
  /** Paths whose filesystems are guarded: the sandbox home and the writable mount roots. */
  paths: readonly string[]
  reserve: DiskReserve
  /** The agent's init process as the host sees it (resolved when the guard first acts). */
  agentPid: () => Promise<number | undefined>
  say?: (line: string) => void
  now?: () => number
}

/** One sandbox's guard: call tick() periodically (the watcher process does, every DISK_GUARD_TICK_MS). */
export class DiskGuard {
  private paused: { ns: string; why: string } | undefined
  private busy = false

  constructor(private readonly o: DiskGuardOptions) {
    // A watcher that died while the agent was paused: the file says so; the first tick decides again.
    const why = diskPaused(o.dataDir, o.name)
    if (why) this.paused = { ns: '', why }
  }

  get enabled(): boolean {
    return !('bytes' in this.o.reserve && this.o.reserve.bytes === 0)
  }

  /** One check; resolves with the delay until the next (shorter near the reserve). */
  async tick(): Promise<number> {
    if (!this.enabled || this.busy) return DISK_GUARD_TICK_MS
    this.busy = true
    try {
      const fss = filesystems(this.o.paths, this.o.reserve)
      const low = fss.find(isLow)
      if (low && !this.paused?.ns) await this.pause(low)
      else if (!low && this.paused && fss.every(isClear)) await this.resume(fss)
      else if (this.paused?.ns) signalNamespace(this.paused.ns, 'SIGSTOP') // an exec started meanwhile
      // Page-cache writes run at GB/s: within NEAR of the reserve, look five times as often.
      return fss.some(f => f.avail < f.reserve + NEAR) ? DISK_GUARD_NEAR_TICK_MS : DISK_GUARD_TICK_MS
    } finally {
      this.busy = false
    }
  }

  private async pause(f: FsState): Promise<void> {
    const pid = await this.o.agentPid()
    const ns = pid !== undefined ? pidNs(pid) : undefined
    if (!ns || ns === pidNs(process.pid)) return // not running (stopped sandbox): nothing writes
    const n = signalNamespace(ns, 'SIGSTOP')
    const why =
      f.avail < f.reserve
        ? `${human(f.avail)} free on the filesystem of ${f.path}, under the reserve of ${human(f.reserve)}`
        : `${f.availInodes} inodes free on the filesystem of ${f.path}, under the reserve of ${f.inodeReserve}`
    this.paused = { ns, why }
    writeWatchFile(frozenFile(this.o.dataDir, this.o.name), why + '\n')
    this.record('paused', `agent paused (${n} processes stopped): ${why}`, f.path)
  }

  private async resume(fss: FsState[]): Promise<void> {
    let ns = this.paused?.ns
    if (!ns) {
      const pid = await this.o.agentPid()
      ns = pid !== undefined ? pidNs(pid) : undefined
    }
    const n = ns && ns !== pidNs(process.pid) ? signalNamespace(ns, 'SIGCONT') : 0
    this.paused = undefined
    rmSync(frozenFile(this.o.dataDir, this.o.name), { force: true })
    this.record('resumed', `agent resumed (${n} processes continued): ${fss.map(f => `${human(f.avail)} free on the filesystem of ${f.path}`).join(', ')}`, fss[0]?.path ?? '')
  }

  private record(action: 'paused' | 'resumed', line: string, path: string): void {
    const now = this.o.now?.() ?? Date.now()
    this.o.say?.(`disk guard: ${line}`)
    try {
      if (existsSync(sandboxDir(this.o.dataDir, this.o.name))) AuditLog.forSandbox(this.o.dataDir, this.o.name).write(renderDiskEvent(this.o.name, action, line, path, now))
    } catch {
      // AuditLog.write never throws; defensive
    }
  }
}

/** OCSF Detection Finding (class 2004) for a pause (High) or a resume (Informational). */
export function renderDiskEvent(sandbox: string, action: 'paused' | 'resumed', line: string, path: string, time: number): Rendered {
  const high = action === 'paused'
  const json = watcherFindingJson({
    sandbox,
    time,
    close: !high,
    severity: high ? 'High' : 'Informational',
    message: line,
    title: 'Disk reserve reached by the agent',
    desc: line,
    types: ['disk_reserve'],
    resource: { name: path, type: 'filesystem' },
    allowed: !high,
    unmapped: { action },
  })
  const shorthand = `FINDING:${high ? 'CREATE [HIGH] PAUSED' : 'CLOSE [INFO] RESUMED'} ${path.replace(/\s/g, '_')} [rule:disk_reserve] [reason:${line.slice(0, 200)}]`
  return { json, shorthand }
}
