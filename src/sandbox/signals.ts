import { readdirSync, readFileSync } from 'node:fs'

/**
 * Signalling every process of one `sandbox exec` session from the host.
 *
 * Why not `podman exec`? It does not proxy signals: a SIGTERM to podman exec leaves the command
 * running inside (measured on Podman 4.3.1). Under keep-id the sandbox's processes run as the
 * user's own uid on the host, so podshell may signal them directly; /proc of other users' processes
 * is unreadable, so nothing else can match.
 *
 * Which processes: the marker variable PODSHELL_EXEC_ID alone is not enough — a child that drops
 * its environment (`env -i sleep 1000 &`, or the command itself `exec env -i …`) carried no marker
 * and escaped `--timeout` (red team, issue 9 finding 10). runc makes every exec'd command the
 * leader of a NEW SESSION (measured: sid = pid of the exec'd process, with and without -t), and a
 * process cannot leave its session without setsid(2). So the session is the unit:
 *   1. the exec's root is found as soon as it appears — a marked session leader — and its parent,
 *      the exec session's own conmon, is remembered (`anchor`): the root keeps its pid through any
 *      exec(2), so later the conmon's children ARE the root, marker or not;
 *   2. if the root re-exec'd without the marker before it was seen, the anchor is the exec conmon of
 *      this sandbox's agent container that was not there before the exec started (when exactly one
 *      such conmon is new; concurrent execs of one sandbox fall back to the marker);
 *   3. at signal time: every process in the sessions of the roots and of every marked process, and
 *      every descendant of those (a child that called setsid but is still a child).
 * What still escapes: a process that calls setsid(2) AND is orphaned (double fork) before the
 * signal — it is reparented to the container's init, outside every session and tree of the exec.
 * It dies with the sandbox (stop/delete); a pid namespace per exec would be needed to catch it, and
 * unshare is denied to the agent by seccomp.
 */

interface Proc {
  pid: number
  ppid: number
  sid: number
  start: string
  comm: string
}

function readStat(pid: number): Proc | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const close = s.lastIndexOf(')')
    const rest = s.slice(close + 2).split(' ')
    return { pid, comm: s.slice(s.indexOf('(') + 1, close), ppid: Number(rest[1]), sid: Number(rest[3]), start: rest[19] ?? '' }
  } catch {
    return undefined
  }
}

function procTable(): Proc[] {
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return []
  }
  const out: Proc[] = []
  for (const e of entries) {
    if (e.charCodeAt(0) < 48 || e.charCodeAt(0) > 57) continue
    const p = readStat(Number(e))
    if (p) out.push(p)
  }
  return out
}

function hasMarker(pid: number, needle: Buffer): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`).indexOf(needle) !== -1
  } catch {
    return false
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1')
  } catch {
    return ''
  }
}

/** Exec-session conmons of one container (podman passes `-n <container>` and `--exec-attach`/`-e`). */
function execConmons(table: Proc[], container: string | undefined): Set<string> {
  const out = new Set<string>()
  if (!container) return out
  for (const p of table) {
    if (p.comm !== 'conmon') continue
    const c = cmdline(p.pid)
    if (c.includes(`\0-n\0${container}\0`) && c.includes('\0--exec-process-spec\0')) out.add(`${p.pid}:${p.start}`)
  }
  return out
}

export class ExecSessionProcesses {
  private readonly needle: Buffer
  private readonly container: string | undefined
  private readonly before: Set<string>
  /** `pid:start` of the exec session's conmon, once known. */
  private anchor: string | undefined
  private timer: NodeJS.Timeout | undefined
  /** Sessions seen so far: still signalled after their root died (orphans keep their session). */
  private readonly sessions = new Set<number>()

  constructor(marker: string, container?: string) {
    this.needle = Buffer.from(`PODSHELL_EXEC_ID=${marker}\0`)
    this.container = container
    this.before = execConmons(procTable(), container)
  }

  /** Looks for the root every `everyMs` until found or `forMs` passed (unref'd: never holds the process). */
  track(everyMs = 20, forMs = 5000): void {
    const until = Date.now() + forMs
    this.timer = setInterval(() => {
      if (this.anchor || Date.now() > until) return this.stop()
      this.discover(procTable())
    }, everyMs)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  private discover(table: Proc[]): void {
    if (this.anchor) return
    for (const p of table) {
      if (p.sid !== p.pid || !hasMarker(p.pid, this.needle)) continue
      const parent = table.find(q => q.pid === p.ppid)
      if (parent && parent.comm === 'conmon') {
        this.anchor = `${parent.pid}:${parent.start}`
        return
      }
    }
  }

  /** The processes of the session (see the module comment), excluding this process and its session. */
  members(): number[] {
    const table = procTable()
    this.discover(table)
    const byPid = new Map(table.map(p => [p.pid, p]))
    const alive = (id: string | undefined) => {
      if (!id) return undefined
      const [pid, start] = id.split(':')
      const p = byPid.get(Number(pid))
      return p && p.start === start ? p : undefined
    }
    let anchor = alive(this.anchor)
    if (!anchor) {
      const fresh = [...execConmons(table, this.container)].filter(c => !this.before.has(c))
      if (fresh.length === 1) anchor = alive(fresh[0])
    }
    const roots = new Set<number>()
    for (const p of table) {
      if ((anchor && p.ppid === anchor.pid) || hasMarker(p.pid, this.needle)) roots.add(p.pid)
    }
    const self = readStat(process.pid)
    const sessions = this.sessions
    for (const r of roots) {
      const s = byPid.get(r)?.sid
      if (s && s > 1 && s !== self?.sid) sessions.add(s)
    }
    const children = new Map<number, number[]>()
    for (const p of table) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid])
    const out = new Set<number>()
    const addTree = (pid: number) => {
      if (out.has(pid) || pid === process.pid || pid <= 1) return
      out.add(pid)
      for (const c of children.get(pid) ?? []) addTree(c)
    }
    for (const p of table) if (sessions.has(p.sid)) addTree(p.pid)
    for (const r of roots) addTree(r)
    if (anchor) out.delete(anchor.pid)
    return [...out]
  }

  /**
   * The timeout: SIGTERM to every member now, SIGKILL to whatever is left after `graceMs`. The
   * timer is NOT unref'd: podshell stays (at most graceMs) after podman exec returned, since the
   * root dying first is what makes podman return, and orphans of the session are still to kill.
   */
  terminate(graceMs = 2000): void {
    this.signal('SIGTERM')
    const until = Date.now() + graceMs
    const t = setInterval(() => {
      if (this.members().length === 0) return clearInterval(t)
      if (Date.now() >= until) {
        this.signal('SIGKILL')
        clearInterval(t)
      }
    }, 100)
  }

  /** Sends `sig` to every member; returns how many were signalled. */
  signal(sig: NodeJS.Signals): number {
    let n = 0
    for (const pid of this.members()) {
      try {
        process.kill(pid, sig)
        n++
      } catch {
        // exited meanwhile
      }
    }
    return n
  }
}

/**
 * Sends `sig` to every process of this user whose initial environment carries
 * PODSHELL_EXEC_ID=<marker>, and to their sessions and descendants (see ExecSessionProcesses).
 */
export function killMarkedProcesses(marker: string, sig: NodeJS.Signals): number {
  return new ExecSessionProcesses(marker).signal(sig)
}
