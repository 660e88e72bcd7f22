import { appendFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, statSync, watch, type FSWatcher } from 'node:fs'
import { dirname } from 'node:path'
import { AuditLog, type Rendered } from '../gateway/audit.js'
import { watcherFindingJson } from './finding.js'
import { sandboxDir } from '../config/paths.js'
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
import { identity, loadProtections, mountPoints, remount, sameId, type Protected } from './protections.js'

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

/** How long an agent stays stopped while a protected path is absent on the host. */
export const ABSENT_GRACE_MS = 3_000
export const SENTINEL_TICK_MS = 1_000
/** How often the agent's pid is looked up while unknown (podman inspect): from 1 s, doubling to 30 s. */
const RESOLVE_MIN_MS = 1_000
const RESOLVE_MAX_MS = 30_000

/** The pid namespace (`pid:[inode]`) of a process, or undefined. */
function pidNs(pid: number | string): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`)
  } catch {
    return undefined
  }
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

type Identity = ReturnType<typeof identity>

/** Changed on the host, or its mount gone from the agent's namespace while the path is there. */
function changed(p: Protected, id: Identity, mounted: Set<string> | undefined): boolean {
  return !sameId(p, id) || (mounted !== undefined && !mounted.has(p.inside) && id.ino !== 0)
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

  /** One pass: detect what changed, stop the agent, make each protection again, resume. */
  private async once(): Promise<void> {
    if (this.closed) return
    if (this.held) return this.keepHeld()
    const seen = this.list.map(p => identity(p.host))
    const known = this.cachedAgent()
    const hits = this.list.filter((p, i) => changed(p, seen[i]!, known ? mountPoints(known.pid) : undefined))
    // A path still within its absent grace keeps the agent stopped; one past it costs nothing.
    if (hits.length === 0 && ![...this.absentSince.values()].some(since => since >= 0)) return
    const agent = await this.stopAgent(seen)
    if (!agent) return
    const mounted = mountPoints(agent.pid)
    const t0 = this.o.now?.() ?? Date.now()
    let holdForAbsent = false
    let rearm = false
    for (const p of this.list) {
      const r = this.restore(p, agent.pid, mounted, t0)
      if (r === 'unchanged') continue
      rearm = true
      if (r === 'held') return
      if (r === 'absent-hold') holdForAbsent = true
    }
    this.save()
    if (rearm) this.arm()
    if (holdForAbsent) {
      this.again = true
      await new Promise(r => setTimeout(r, 50))
      return
    }
    this.noteLongAbsent(t0)
    // The disk guard may hold the agent for its own reason: then it resumes it.
    if (!diskPaused(this.o.dataDir, this.o.name)) signalNamespace(agent.ns, 'SIGCONT')
  }

  /** Fail closed while held: processes an exec started meanwhile are stopped too. */
  private async keepHeld(): Promise<void> {
    const a = this.cachedAgent() ?? (await this.lookup())
    if (a && a !== 'stopped') signalNamespace(a.ns, 'SIGSTOP')
  }

  /**
   * Stops every process of the agent's pid namespace: the cached pid first (the stop must not wait
   * for podman), else after asking podman. Undefined when there is nothing to restore now: podman
   * could not say (asked again later), or the agent is not running (the next start mounts the paths
   * as they are; their identity, read before podman answered, is recorded).
   */
  private async stopAgent(seen: readonly Identity[]): Promise<{ pid: number; ns: string } | undefined> {
    const cached = this.cachedAgent()
    if (cached) {
      this.stopAll(cached.ns)
      return cached
    }
    const r = await this.lookup()
    if (r === undefined) {
      this.o.say?.('mount sentinel: a protected path changed on the host, but podman could not say whether the agent runs; asking again')
      return undefined
    }
    if (r === 'stopped') {
      this.list.forEach((p, i) => Object.assign(p, seen[i]))
      this.absentSince.clear()
      this.save()
      return undefined
    }
    this.stopAll(r.ns)
    return r
  }

  /**
   * Makes one protection again if its host path changed, with the agent stopped. 'absent-hold':
   * removed on the host and within its grace (the agent stays stopped: a re-create right after is
   * protected before it runs again); 'absent': past the grace (it resumes; protected again when the
   * path reappears); 'held': could not be made again (fail closed, recorded).
   */
  private restore(
    p: Protected,
    pid: number,
    mounted: Set<string> | undefined,
    t0: number,
  ): 'unchanged' | 'absent' | 'absent-hold' | 'retry' | 'held' | 'restored' {
    const id = identity(p.host)
    const wasAbsent = this.absentSince.has(p.host)
    if (!wasAbsent && !changed(p, id, mounted)) return 'unchanged'
    if (id.ino === 0) {
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
      return since >= 0 && t0 - since < ABSENT_GRACE_MS ? 'absent-hold' : 'absent'
    }
    let st
    try {
      st = lstatSync(p.host)
    } catch {
      this.again = true // removed in between: the next pass sees it absent
      return 'retry'
    }
    const fits =
      p.kind === 'mask-dir' || p.kind === 'pin'
        ? st.isDirectory()
        : p.kind === 'ro'
          ? st.isFile() || st.isDirectory()
          : !st.isSymbolicLink() && !st.isDirectory()
    const t1 = Date.now()
    const err = fits
      ? (this.o.remount ?? remount)(pid, p)
      : `the new ${p.host} is ${st.isSymbolicLink() ? 'a symlink' : 'a different kind of file'}`
    if (err) {
      this.held = `protection of ${p.inside} could not be made again after the host replaced it (${err}): the agent stays stopped; restart the sandbox (podshell sandbox stop, then start) to mount it again`
      this.finding('failed', p, this.held)
      try {
        writeWatchFile(sentinelHeldFile(this.o.dataDir, this.o.name), this.held + '\n')
      } catch {
        // the in-memory mark holds the agent stopped while this process runs
      }
      return 'held'
    }
    this.absentSince.delete(p.host)
    Object.assign(p, id)
    const what = p.kind === 'ro' ? 'read-only bind' : p.kind === 'pin' ? 'pin (bind onto itself)' : 'mask'
    this.finding(
      'restored',
      p,
      `protection of ${p.inside} made again after the host replaced it (${what} mounted again in ${Date.now() - t1} ms; the agent was stopped meanwhile)`,
    )
    return 'restored'
  }

  /** Says once per path that it stayed absent past the grace and the agent resumed. */
  private noteLongAbsent(t0: number): void {
    for (const [host, since] of this.absentSince) {
      if (since >= 0 && t0 - since >= ABSENT_GRACE_MS) {
        this.absentSince.set(host, -1) // said once
        this.o.say?.(
          `mount sentinel: ${host} still absent after ${ABSENT_GRACE_MS / 1000} s; agent resumed, protected again when it reappears`,
        )
      }
    }
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
