import { spawnSync } from 'node:child_process'
import {
  appendFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  watch,
  type FSWatcher,
} from 'node:fs'
import { dirname } from 'node:path'
import { z } from 'zod'
import { AuditLog, type Rendered } from '../gateway/audit.js'
import { watcherFindingJson } from './finding.js'
import { sandboxDir } from '../config/paths.js'
import type { MountSpec } from '../sandbox/types.js'
import { readAgentDescription } from '../sandbox/description.js'
import { isSocketMaskMount } from '../sandbox/sockets.js'
import { agentContainer } from '../sandbox/naming.js'
import { Podman, containerPidOrStopped } from '../podman/podman.js'
import { signalNamespace } from './disk-guard.js'
import {
  diskPaused,
  protectedFile,
  quarantineDir,
  sentinelHeld,
  sentinelHeldFile,
  watchDir,
  watchLogFile,
  writeWatchFile,
} from './paths.js'

/**
 * The mount sentinel: protections nested in a bind mount survive the HOST replacing their path.
 *
 * Every read-only bind nested in a read-write bind (`.git/config`, hooks, submodule `.git`
 * pointers, `.claude/settings.json`, …), every mount-guard pin (src/sandbox/mount-guard.ts) and
 * every mask (`.ai-read-deny` directories under an empty tmpfs, host sockets under an empty file)
 * is a mount on a host dentry. The agent cannot move them (EBUSY; the pins keep their ancestors in
 * place), but when the host removes the path or renames a new file over it — git writes
 * `.git/config` as `config.lock` + rename, editors and settings writers do the same, a branch
 * switch re-creates a directory — Linux detaches that mount in every mount namespace, and the
 * running agent sees (and can write) the host's path through the read-write bind
 * (bench/probes/ro-file-replace.sh, mask-dir-recreate.sh).
 *
 * The watcher (host side, as the user, as long as it serves the sandbox) therefore knows every
 * protection: its path inside, the host path under it, its kind, and the device/inode the mount
 * was made on — `protected.json` in the sandbox's watch state dir, written by podshell at create
 * (from the plan) and at every start (from the stored agent description), in a directory no
 * container mounts. inotify on each protected path's parent directory, and a check every second,
 * compare the host path's identity with the recorded one. When it changed:
 *   1. every process of the agent's pid namespace is stopped (SIGSTOP, as the disk guard does;
 *      the agent's pid is resolved ahead of time, so the stop does not wait for podman);
 *   2. the protection is made again inside the agent container's mount namespace:
 *      `nsenter -t <agent pid> -U -m --root=/` joins the container's user namespace (the user
 *      owns the rootless user namespace, and keep-id's nested one below it, so it has
 *      CAP_SYS_ADMIN there) and its mount namespace, with the HOST's root directory as its root:
 *      the host's own `/bin/sh` and util-linux `mount` run — nothing of the container image is
 *      executed — and they reach the container's tree through `/proc/<pid>/root/…`. A read-only
 *      bind: the new host path bound onto itself and remounted read-only; a pin: bound onto
 *      itself; a masked directory: an empty read-only tmpfs (mode 000); a masked socket:
 *      /dev/null, read-only, nodev (as an empty file it exposes nothing; connect() gets
 *      ECONNREFUSED);
 *   3. the agent is continued (unless the disk guard holds it), and a finding is recorded (an OCSF
 *      Detection Finding in the audit log, a line in watch.log).
 * A path the host removed (not replaced): the agent stays stopped while it is absent, for at most
 * ABSENT_GRACE_MS (a re-create right after a removal — a branch switch, a regenerated secrets
 * directory — is masked before the agent runs again); after that it runs, and the path is
 * protected again when it reappears. When the protection cannot be made again, the agent stays
 * stopped (fail closed: re-stopped at every tick, `sandbox exec` refuses) and the finding says to
 * restart the sandbox.
 *
 * The agent cannot point the sentinel elsewhere: the list is podshell's, from the plan or the
 * stored description (validated), kept where the agent has no mount; the sentinel signals only
 * the pid namespace of this sandbox's agent container and mounts only over paths of that list,
 * after an lstat on the host showed a real file or directory of the expected kind (never a
 * symlink) — while the agent is stopped, so it cannot swap one in between.
 *
 * What remains is the window between the host's replace and the stop: inotify delivers the event
 * within milliseconds, so the agent runs unprotected for that long (docs/security.md measures it).
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

/** How long an agent stays stopped while a protected path is absent on the host. */
export const ABSENT_GRACE_MS = 3_000
export const SENTINEL_TICK_MS = 1_000
/** How often the agent's pid is looked up while unknown (podman inspect): from 1 s, doubling to 30 s. */
const RESOLVE_MIN_MS = 1_000
const RESOLVE_MAX_MS = 30_000

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
function identity(p: string): { dev: number; ino: number; birth: number } {
  try {
    const st = lstatSync(p)
    return { dev: st.dev, ino: st.ino, birth: Math.round(st.birthtimeMs) || 0 }
  } catch {
    return { dev: 0, ino: 0, birth: 0 }
  }
}

const sameId = (p: Protected, id: { dev: number; ino: number; birth: number }) => p.dev === id.dev && p.ino === id.ino && (p.birth ?? id.birth) === id.birth

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

/** The pid namespace (`pid:[inode]`) of a process, or undefined. */
function pidNs(pid: number | string): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`)
  } catch {
    return undefined
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

export interface SentinelOptions {
  dataDir: string
  name: string
  /**
   * The agent container's init as the host sees it: a pid; 0 when the container is not running;
   * undefined when that could not be told (ask again later).
   */
  agentPid: () => Promise<number | undefined>
  say?: (line: string) => void
  now?: () => number
  /** Replaceable for tests. */
  remount?: (pid: number, p: Protected) => string | undefined
}

/** One sandbox's sentinel: start() watches until close(). */
export class MountSentinel {
  private list: Protected[]
  private listIno = -1
  private watchers: FSWatcher[] = []
  private timer: NodeJS.Timeout | undefined
  private busy: Promise<void> | undefined
  private again = false
  private agent: { pid: number; ns: string } | undefined
  private resolving = false
  private resolveAt = 0
  private resolveDelay = RESOLVE_MIN_MS
  /** Paths the host removed: protected again when they reappear (the agent resumed after the grace). */
  private absentSince = new Map<string, number>()
  private held: string | undefined
  private closed = false
  private knownPids: number[] = []
  private insideKey = ''
  private pidsNs = ''

  constructor(private readonly o: SentinelOptions) {
    this.list = []
    this.reload()
    this.held = sentinelHeld(o.dataDir, o.name)
  }

  get size(): number {
    return this.list.length
  }

  /** inotify on each protected path's parent directory, and a check every SENTINEL_TICK_MS. */
  start(): void {
    this.arm()
    this.timer = setInterval(() => this.tick(), SENTINEL_TICK_MS)
    this.timer.unref()
    this.tick()
  }

  close(): void {
    this.closed = true
    this.disarm()
    if (this.timer) clearInterval(this.timer)
  }

  private tick(): void {
    if (this.closed) return
    if (this.reload()) this.arm()
    if (this.list.length === 0) return
    const a = this.cachedAgent()
    if (!a) void this.resolveAhead()
    else this.refreshPids(a)
    void this.check()
  }

  /**
   * The host pids of the agent's pid namespace, kept so that a stop signals them at once: a pass
   * over the host's /proc (signalNamespace) took 80-120 ms on this loaded host — most of the
   * window. Redone only when the set of pids inside changed (one readdir of the container's own
   * /proc per tick); the full pass still follows every stop, for processes started since.
   */
  private refreshPids(a: { pid: number; ns: string }): void {
    let inside: string
    try {
      inside = readdirSync(`/proc/${a.pid}/root/proc`)
        .filter(e => /^\d+$/.test(e))
        .join(',')
    } catch {
      return
    }
    if (inside === this.insideKey && this.pidsNs === a.ns) return
    const pids: number[] = []
    for (const e of readdirSync('/proc')) {
      if (/^\d+$/.test(e) && pidNs(e) === a.ns) pids.push(Number(e))
    }
    this.insideKey = inside
    this.pidsNs = a.ns
    this.knownPids = pids
  }

  /** SIGSTOP to the pids known from the last refresh (still in the namespace), then the full pass. */
  private stopAll(ns: string): void {
    if (this.pidsNs === ns) {
      for (const pid of this.knownPids) {
        try {
          if (pidNs(pid) === ns) process.kill(pid, 'SIGSTOP')
        } catch {
          // exited meanwhile
        }
      }
    }
    signalNamespace(ns, 'SIGSTOP')
  }

  /** Re-reads protected.json when podshell rewrote it (a start). True when it did. */
  private reload(): boolean {
    let ino: number
    try {
      ino = statSync(protectedFile(this.o.dataDir, this.o.name)).ino
    } catch {
      ino = 0
    }
    if (ino === this.listIno) return false
    this.listIno = ino
    this.list = loadProtections(this.o.dataDir, this.o.name)
    this.absentSince.clear()
    this.held = sentinelHeld(this.o.dataDir, this.o.name)
    return true
  }

  private arm(): void {
    this.disarm()
    if (this.closed) return
    for (const dir of new Set(this.list.map(p => dirname(p.host)))) {
      try {
        const w = watch(dir, { persistent: false }, () => void this.check())
        w.on('error', () => undefined) // the directory went away: the periodic check covers it
        this.watchers.push(w)
      } catch {
        // absent now: the periodic check covers it
      }
    }
  }

  private disarm(): void {
    for (const w of this.watchers) w.close()
    this.watchers = []
  }

  /** The agent's pid and pid namespace, when known and still the same process. No podman call. */
  private cachedAgent(): { pid: number; ns: string } | undefined {
    if (this.agent && pidNs(this.agent.pid) === this.agent.ns) return this.agent
    this.agent = undefined
    return undefined
  }

  /** Looks the agent's pid up (podman) before any change needs it, with backoff. */
  private async resolveAhead(): Promise<void> {
    const now = Date.now()
    if (this.resolving || now < this.resolveAt) return
    this.resolving = true
    try {
      const r = await this.lookup()
      if (r === 'stopped' || r === undefined) {
        this.resolveAt = Date.now() + this.resolveDelay
        this.resolveDelay = Math.min(RESOLVE_MAX_MS, this.resolveDelay * 2)
      } else this.resolveDelay = RESOLVE_MIN_MS
    } finally {
      this.resolving = false
    }
  }

  private async lookup(): Promise<{ pid: number; ns: string } | 'stopped' | undefined> {
    const pid = await this.o.agentPid()
    if (pid === undefined) return undefined
    const ns = pid > 0 ? pidNs(pid) : undefined
    if (pid === 0 || !ns || ns === pidNs(process.pid)) return 'stopped'
    this.agent = { pid, ns }
    return this.agent
  }

  /** Compares every protected path with its record; acts on the changed ones. Never throws. */
  check(): Promise<void> {
    if (this.busy) {
      this.again = true
      return this.busy
    }
    this.busy = (async () => {
      do {
        this.again = false
        try {
          await this.once()
        } catch (e) {
          this.o.say?.(`mount sentinel: ${(e as Error).message}`)
        }
      } while (this.again && !this.closed)
    })().finally(() => {
      this.busy = undefined
    })
    return this.busy
  }

  private async once(): Promise<void> {
    if (this.closed) return
    if (this.held) {
      // Fail closed: processes an exec started meanwhile are stopped too.
      const a = this.cachedAgent() ?? (await this.lookup())
      if (a && a !== 'stopped') signalNamespace(a.ns, 'SIGSTOP')
      return
    }
    const seen = this.list.map(p => identity(p.host))
    const known = this.cachedAgent()
    let mounted = known ? mountPoints(known.pid) : undefined
    // Changed on the host, or its mount gone from the agent's namespace while the path is there.
    const hits = this.list.filter((p, i) => !sameId(p, seen[i]!) || (mounted !== undefined && !mounted.has(p.inside) && seen[i]!.ino !== 0))
    // A path still within its absent grace keeps the agent stopped; one past it costs nothing.
    if (hits.length === 0 && ![...this.absentSince.values()].some(since => since >= 0)) return
    // The cached pid first: the stop must not wait for podman.
    let agent = this.cachedAgent()
    if (agent) this.stopAll(agent.ns)
    if (!agent) {
      const r = await this.lookup()
      if (r === undefined) {
        this.o.say?.('mount sentinel: a protected path changed on the host, but podman could not say whether the agent runs; asking again')
        return
      }
      if (r === 'stopped') {
        // Not running: nothing is mounted now; the next start mounts the paths as they are (their
        // identity was read above, before podman said so).
        this.list.forEach((p, i) => Object.assign(p, seen[i]))
        this.absentSince.clear()
        this.save()
        return
      }
      agent = r
      this.stopAll(agent.ns)
      mounted = mountPoints(agent.pid)
    }
    const t0 = this.o.now?.() ?? Date.now()
    let holdForAbsent = false
    let rearm = false
    for (const p of this.list) {
      const id = identity(p.host)
      const wasAbsent = this.absentSince.has(p.host)
      const gone = mounted !== undefined && !mounted.has(p.inside) && id.ino !== 0
      if (!wasAbsent && sameId(p, id) && !gone) continue
      rearm = true
      if (id.ino === 0) {
        // Removed on the host: stay stopped for a while (a re-create right after is protected
        // before the agent runs again), then resume; it is protected again when it reappears.
        if (!wasAbsent) {
          this.absentSince.set(p.host, t0)
          this.finding(
            'paused',
            p,
            `${p.host} was removed on the host: the agent is stopped while it is absent (up to ${ABSENT_GRACE_MS / 1000} s); it is protected again when it reappears`,
          )
        }
        if (p.ino !== 0) Object.assign(p, id)
        const since = this.absentSince.get(p.host) ?? t0
        if (since >= 0 && t0 - since < ABSENT_GRACE_MS) holdForAbsent = true
        continue
      }
      let st
      try {
        st = lstatSync(p.host)
      } catch {
        this.again = true // removed in between: the next pass sees it absent
        continue
      }
      const fits =
        p.kind === 'mask-dir' || p.kind === 'pin'
          ? st.isDirectory()
          : p.kind === 'ro'
            ? st.isFile() || st.isDirectory()
            : !st.isSymbolicLink() && !st.isDirectory()
      const t1 = Date.now()
      const err = fits
        ? (this.o.remount ?? remount)(agent.pid, p)
        : `the new ${p.host} is ${st.isSymbolicLink() ? 'a symlink' : 'a different kind of file'}`
      if (err) {
        this.held = `protection of ${p.inside} could not be made again after the host replaced it (${err}): the agent stays stopped; restart the sandbox (podshell sandbox stop, then start) to mount it again`
        this.finding('failed', p, this.held)
        try {
          writeWatchFile(sentinelHeldFile(this.o.dataDir, this.o.name), this.held + '\n')
        } catch {
          // the in-memory mark holds the agent stopped while this process runs
        }
        return
      }
      this.absentSince.delete(p.host)
      Object.assign(p, id)
      const what = p.kind === 'ro' ? 'read-only bind' : p.kind === 'pin' ? 'pin (bind onto itself)' : 'mask'
      this.finding(
        'restored',
        p,
        `protection of ${p.inside} made again after the host replaced it (${what} mounted again in ${Date.now() - t1} ms; the agent was stopped meanwhile)`,
      )
    }
    this.save()
    if (rearm) this.arm()
    if (holdForAbsent) {
      this.again = true
      await new Promise(r => setTimeout(r, 50))
      return
    }
    for (const [host, since] of this.absentSince) {
      if (since >= 0 && t0 - since >= ABSENT_GRACE_MS) {
        this.absentSince.set(host, -1) // said once
        this.o.say?.(
          `mount sentinel: ${host} still absent after ${ABSENT_GRACE_MS / 1000} s; agent resumed, protected again when it reappears`,
        )
      }
    }
    // The disk guard may hold the agent for its own reason: then it resumes it.
    if (!diskPaused(this.o.dataDir, this.o.name)) signalNamespace(agent.ns, 'SIGCONT')
  }

  private save(): void {
    try {
      if (!existsSync(watchDir(this.o.dataDir, this.o.name))) return
      writeWatchFile(protectedFile(this.o.dataDir, this.o.name), JSON.stringify(this.list) + '\n')
      this.listIno = statSync(protectedFile(this.o.dataDir, this.o.name)).ino
    } catch {
      // the in-memory list is what this process checks against
    }
  }

  private finding(action: 'restored' | 'paused' | 'failed', p: Protected, line: string): void {
    const now = this.o.now?.() ?? Date.now()
    this.o.say?.(`mount sentinel: ${line}`)
    try {
      mkdirSync(quarantineDir(this.o.dataDir, this.o.name), { recursive: true, mode: 0o700 })
      appendFileSync(watchLogFile(this.o.dataDir, this.o.name), `${new Date(now).toISOString()} mount sentinel: ${line}\n`, { mode: 0o600 })
    } catch {
      // the audit record below is the authoritative one
    }
    try {
      if (existsSync(sandboxDir(this.o.dataDir, this.o.name)))
        AuditLog.forSandbox(this.o.dataDir, this.o.name).write(renderSentinelEvent(this.o.name, action, line, p, now))
    } catch {
      // AuditLog.write never throws; defensive
    }
  }
}

/**
 * The watcher's one call: a started sentinel for the sandbox (close() it when the watching ends).
 * The agent's pid comes from podman (container inspect), looked up ahead of any change.
 */
export function startSentinel(o: {
  dataDir: string
  name: string
  say?: (line: string) => void
  env?: { readonly [k: string]: string | undefined }
}): MountSentinel {
  let podman: Promise<Podman> | undefined
  const agentPid = async (): Promise<number | undefined> => {
    try {
      podman ??= Podman.detect({ env: o.env ?? process.env })
      return await containerPidOrStopped(await podman, agentContainer(o.name))
    } catch {
      podman = undefined
      return undefined
    }
  }
  const s = new MountSentinel({ dataDir: o.dataDir, name: o.name, say: o.say, agentPid })
  s.start()
  return s
}

/** OCSF Detection Finding (class 2004): a protection the host detached, and what was done. */
export function renderSentinelEvent(
  sandbox: string,
  action: 'restored' | 'paused' | 'failed',
  line: string,
  p: Protected,
  time: number,
): Rendered {
  const json = watcherFindingJson({
    sandbox,
    time,
    severity: action === 'failed' ? 'Critical' : 'High',
    message: line,
    title: 'Protected mount detached by the host',
    desc: line,
    types: ['mount_detached'],
    analytic: 'mount_sentinel',
    resource: { name: p.host, type: 'file' },
    unmapped: { action, kind: p.kind, inside: p.inside },
  })
  const tag = action === 'restored' ? 'CREATE [HIGH] REMOUNTED' : action === 'paused' ? 'CREATE [HIGH] PAUSED' : 'CREATE [CRIT] PAUSED'
  const shorthand = `FINDING:${tag} ${p.host.replace(/\s/g, '_')} [rule:mount_sentinel] [reason:${line.slice(0, 200)}]`
  return { json, shorthand }
}
