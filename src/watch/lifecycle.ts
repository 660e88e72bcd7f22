import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, rmSync, watch, writeSync, type FSWatcher } from 'node:fs'
import { join } from 'node:path'
import { sandboxDir, sandboxHomeDir } from '../config/paths.js'
import { cliMain, internalArgs } from '../util/self.js'
import { creatorAlive, selfCreatorId } from '../util/process.js'
import { recordFinding } from './quarantine.js'
import { baselineFile, daemonPidFile, degradedFile, pidFile, readyFile, rootsFile, wantDir, wantFile, watchdDir, watcherIdentity, watcherMissing, writeWatchFile } from './paths.js'
import { SANDBOX_NAME_RE } from '../util/patterns.js'
export { watcherIdentity } from './paths.js'
import { extraPatternsFromEnv, hostExecRules } from './rules.js'
import { loadEffectiveConfig } from '../config/enterprise.js'
import { DiskGuard, DISK_GUARD_TICK_MS, filesystems, isLow, parseDiskReserve, type DiskReserve } from './disk-guard.js'
import { Podman, containerPid } from '../podman/podman.js'
import { agentContainer } from '../sandbox/naming.js'
import { recordSandboxProtections, startSentinel } from './mount-sentinel.js'
import type { MountSpec } from '../sandbox/types.js'
import { COMMAND_SCAN, HostExecWatcher, loadBaseline, saveBaseline, writableRoots, type ScanBudget } from './watcher.js'

/**
 * The watcher's place in a sandbox's life (called by the runtime, src/sandbox/runtime.ts, at one
 * call site per verb, and by the fast exec path):
 *   - create: the writable mount roots are recorded, the sandbox is handed to the data dir's watcher
 *     daemon (one detached process per user and data dir serving every sandbox; started when none
 *     runs) and awaited until it has taken the baseline and set its watches — BEFORE the agent
 *     container starts, so the baseline is what the user had;
 *   - start: the sandbox is handed to the daemon again (it rescans everything when it takes one);
 *   - every command touching the sandbox (exec, connect, start): when the watcher is not running
 *     (killed, crashed, the machine rebooted), a bounded full rescan in the command's own process,
 *     then the daemon again (a new one if it died: it rescans every sandbox it takes); while it runs, its unbroken watch and its own periodic rescans cover it;
 *   - stop / delete: after the containers are down (nothing can change any more), a final full
 *     rescan, then the daemon drops the sandbox (and exits when it serves none).
 * None of this may fail a launch: every failure is a warning on stderr and an audit record.
 */

export type WatchEvent = 'create' | 'start' | 'command' | 'stop' | 'delete'

export interface WatchHookOptions {
  /** The agent's bind mounts (create only). */
  mounts?: readonly MountSpec[]
  /** The agent's masked paths (create only): with `mounts`, the mount sentinel's list. */
  masks?: readonly string[]
  say?: (msg: string) => void
  env?: { readonly [k: string]: string | undefined }
  /** How long create/start wait for the watcher's first scan (default 15 s). */
  readyTimeoutMs?: number
}



/** The one entry point for the runtime. Never throws. */
export async function watchHook(dataDir: string, name: string, event: WatchEvent, o: WatchHookOptions = {}): Promise<void> {
  const say = o.say ?? (() => undefined)
  try {
    if (event === 'create') {
      const roots = writableRoots(o.mounts ?? [])
      writeWatchFile(rootsFile(dataDir, name), JSON.stringify(roots) + '\n')
      recordSandboxProtections(dataDir, name, { mounts: o.mounts ?? [], masks: o.masks ?? [] }, say) // mount sentinel
      // Even with nothing writable mounted the watcher runs: its disk guard keeps the home from
      // filling the host's disk (src/watch/disk-guard.ts). With no baseline to take, create need
      // not wait for it (the agent's first writes take longer than the watcher's start).
      await spawnWatcher(dataDir, name, o, roots.length > 0)
      // A disk already under the reserve pauses the agent at its first tick: say so now.
      const low = filesystems([...roots, sandboxHomeDir(dataDir, name)], diskReserve(o.env ?? process.env, say)).find(isLow)
      if (low) say(`warning: ${name}'s agent will be paused by the disk guard: ${Math.round(low.avail / 1024 ** 2)} MiB free on the filesystem of ${low.path}, under the reserve of ${Math.round(low.reserve / 1024 ** 2)} MiB (free space, or set resources.disk_reserve)`)
      return
    }
    if (!existsSync(rootsFile(dataDir, name))) return // created before the watcher existed, or nothing writable
    const roots = JSON.parse(readFileSync(rootsFile(dataDir, name), 'utf8')) as string[]
    if (event === 'stop' || event === 'delete') {
      rescan(dataDir, name, roots, o)
      await stopWatcher(dataDir, name)
      return
    }
    if (event === 'start') recordSandboxProtections(dataDir, name, undefined, say) // mount sentinel: the mounts about to be made
    if (!watcherMissing(dataDir, name)) return
    // No watcher (or one without its inotify watch): what happened is found now, before the command.
    const r = rescan(dataDir, name, roots, o)
    if (r && r.findings) say(`host-executed files found while the watcher was not running: ${r.findings} quarantined (see podshell logs ${name})`)
    await spawnWatcher(dataDir, name, o)
  } catch (e) {
    say(`warning: the host-executed-file watcher of ${name}: ${(e as Error).message.split('\n')[0]}`)
  }
}

/** A bounded full rescan in this process. Undefined when there is no baseline to compare against. */
export function rescan(dataDir: string, name: string, roots: string[], o: WatchHookOptions = {}, budget: ScanBudget = COMMAND_SCAN): { findings: number; complete: boolean } | undefined {
  const baseline = loadBaseline(baselineFile(dataDir, name))
  if (!baseline) return undefined
  const w = new HostExecWatcher({ q: { dataDir, name, say: o.say ? l => o.say!(l) : undefined }, roots, rules: hostExecRules(extraPatterns(o.env ?? process.env).patterns), baseline })
  const r = w.scan(budget)
  if (!r.complete) {
    recordFinding({ dataDir, name }, { path: roots.join(','), rule: 'rescan', reason: `rescan stopped after ${r.entries} entries (budget): the live watcher covers the rest`, action: 'quarantined' })
  }
  return r
}

/** Extra patterns: config.yaml's and enterprise.yaml's `host_exec_files`, and PODSHELL_HOST_EXEC_FILES. */
function extraPatterns(env: { readonly [k: string]: string | undefined }): { patterns: string[]; errors: string[] } {
  const fromEnv = extraPatternsFromEnv(env)
  try {
    const c = loadEffectiveConfig(env)
    return { patterns: [...(c.user.host_exec_files ?? []), ...(c.enterprise?.host_exec_files ?? []), ...fromEnv.patterns], errors: fromEnv.errors }
  } catch (e) {
    // An invalid config fails the command that reads it, with its one line; here: the defaults.
    return { patterns: fromEnv.patterns, errors: [...fromEnv.errors, (e as Error).message] }
  }
}

/**
 * What the command that asks for a sandbox's watching resolved from its own environment (config,
 * enterprise config, PODSHELL_HOST_EXEC_FILES): the daemon serves sandboxes created under
 * different environments, so each sandbox carries its own.
 */
interface WantSpec {
  patterns: string[]
  errors: string[]
  reserve: DiskReserve
}

async function spawnWatcher(dataDir: string, name: string, o: WatchHookOptions, wait = true): Promise<void> {
  if (watcherIdentity(dataDir, name) && existsSync(wantFile(dataDir, name))) return
  if (!existsSync(sandboxDir(dataDir, name))) return
  rmSync(readyFile(dataDir, name), { force: true })
  const env = o.env ?? process.env
  const extra = extraPatterns(env)
  const spec: WantSpec = { patterns: extra.patterns, errors: extra.errors, reserve: diskReserve(env, o.say ?? (() => undefined)) }
  mkdirSync(wantDir(dataDir), { recursive: true, mode: 0o700 })
  // The want file first, then the daemon check: a daemon about to exit idle re-reads the wants
  // after giving up its pid file (watchMain), so one of the two always serves this sandbox.
  writeWatchFile(wantFile(dataDir, name), JSON.stringify(spec) + '\n')
  ensureDaemon(dataDir, name, env)
  if (!wait) return
  const deadline = Date.now() + (o.readyTimeoutMs ?? 15_000)
  let check = Date.now() + 500
  while (Date.now() < deadline) {
    if (existsSync(readyFile(dataDir, name))) return
    await new Promise(r => setTimeout(r, 10))
    // A daemon that died before serving it (killed, crashed): another one.
    if (Date.now() >= check) {
      check = Date.now() + 500
      ensureDaemon(dataDir, name, env)
    }
  }
  o.say?.(`warning: the host-executed-file watcher of ${name} is not ready yet; continuing (it keeps starting)`)
}

/** The pid:start-time of the data dir's running watcher daemon, or undefined. */
function daemonIdentity(dataDir: string): string | undefined {
  try {
    const id = readFileSync(daemonPidFile(dataDir), 'utf8').trim()
    return creatorAlive(id) ? id : undefined
  } catch {
    return undefined
  }
}

/** Starts the data dir's watcher daemon unless one runs (it picks new want files up by itself). */
function ensureDaemon(dataDir: string, name: string, env: { readonly [k: string]: string | undefined }): void {
  if (daemonIdentity(dataDir)) return
  const log = openSync(join(watchdDir(dataDir), 'watchd.log'), 'a', 0o600)
  try {
    const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, cliMain(), '_watch', '--data', dataDir, name], {
      detached: true,
      stdio: ['ignore', 'ignore', log],
      env: { ...env } as NodeJS.ProcessEnv,
      cwd: '/',
    })
    child.unref()
  } finally {
    closeSync(log)
  }
}

/**
 * V8 settings of the daemon: a small young generation (the default semi-space grows to 16 MB
 * per half under allocation bursts such as a rescan) and a low old-space limit; it holds only
 * the baselines and the watch tables.
 */
const DAEMON_NODE_FLAGS = ['--max-semi-space-size=1', '--max-old-space-size=256']

/** Stops watching a sandbox: its want file goes, the daemon drops it (bounded wait). */
export async function stopWatcher(dataDir: string, name: string): Promise<void> {
  rmSync(wantFile(dataDir, name), { force: true })
  for (let i = 0; i < 200 && watcherIdentity(dataDir, name); i++) await new Promise(r => setTimeout(r, 10))
}

/**
 * One sandbox the daemon serves. Its watching starts in serve() (baseline or rescan, live watch,
 * disk guard) and stops in its close() (the want file went, the state dir went, or the daemon
 * stops): per-sandbox work that must start and stop with the watching hooks in there.
 */
interface Served {
  w: HostExecWatcher
  close: () => void
  rescanMs: number
  last: number
}

/** How long the daemon stays with nothing to serve before it exits. */
export const DAEMON_IDLE_MS = 5_000

/** Takes the daemon's pid file (exclusive create; a dead holder's file is replaced). */
function acquireDaemon(dataDir: string): boolean {
  mkdirSync(wantDir(dataDir), { recursive: true, mode: 0o700 })
  for (let i = 0; i < 2; i++) {
    try {
      const fd = openSync(daemonPidFile(dataDir), 'wx', 0o600)
      writeSync(fd, selfCreatorId() + '\n')
      closeSync(fd)
      return true
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      if (daemonIdentity(dataDir)) return false
      rmSync(daemonPidFile(dataDir), { force: true })
    }
  }
  return false
}

function releaseDaemon(dataDir: string): void {
  try {
    if (readFileSync(daemonPidFile(dataDir), 'utf8').trim() === selfCreatorId()) rmSync(daemonPidFile(dataDir), { force: true })
  } catch {
    // gone already
  }
}

/** Sandboxes with a want file (names only; a malformed entry is ignored). */
function wanted(dataDir: string): Set<string> {
  try {
    return new Set(readdirSync(wantDir(dataDir)).filter(n => SANDBOX_NAME_RE.test(n)))
  } catch {
    return new Set()
  }
}

/**
 * The watcher daemon (`podshell _watch --data DIR NAME`): one process per user and data dir that
 * serves every sandbox with a want file (`<data>/watchd/want/<name>`, written by create/start and
 * by every command that found the sandbox unwatched). Per sandbox: baseline (first time only), full
 * rescan, live watch, a full rescan every RESCAN_MS as a backstop, the disk guard; until its want
 * file goes (stop/delete) or its state dir disappears. It exits DAEMON_IDLE_MS after serving
 * nothing. Its identity is written into every served sandbox's watcher.pid, so a dead daemon is a
 * missing watcher for each of them (src/watch/paths.ts watcherMissing): the next command rescans
 * and starts a new daemon, which rescans every sandbox it takes over.
 * The CLI entry (src/cli/run.ts) wires stop() to SIGTERM/SIGINT; `done` resolves with the exit code.
 */
export async function watchMain(argv: readonly string[]): Promise<{ done: Promise<number>; stop: () => void }> {
  const args = internalArgs(argv)
  const finished = (code: number) => ({ done: Promise.resolve(code), stop: () => undefined })
  if (!args) {
    process.stderr.write('usage: podshell _watch --data DIR NAME\n')
    return finished(2)
  }
  const { dataDir } = args
  if (!acquireDaemon(dataDir)) return finished(0) // one daemon per data dir
  const me = selfCreatorId()
  const say = (l: string) => process.stderr.write(`${new Date().toISOString()} ${l}\n`)
  const served = new Map<string, Served>()
  const failed = new Map<string, string>() // name → the want file content that failed (retried when it changes)

  const drop = (name: string): void => {
    served.get(name)?.close()
    served.delete(name)
    try {
      if (readFileSync(pidFile(dataDir, name), 'utf8').trim() === me) rmSync(pidFile(dataDir, name), { force: true })
    } catch {
      // not ours, or gone with the sandbox
    }
  }

  const reconcile = (): void => {
    const want = wanted(dataDir)
    for (const name of [...served.keys()]) if (!want.has(name)) drop(name)
    for (const name of want) {
      if (!existsSync(sandboxDir(dataDir, name))) {
        // Removed without a delete (gc, by hand): nothing left to watch.
        drop(name)
        rmSync(wantFile(dataDir, name), { force: true })
        continue
      }
      if (served.has(name)) continue
      let raw = ''
      try {
        raw = readFileSync(wantFile(dataDir, name), 'utf8')
        if (failed.get(name) === raw) continue
        served.set(name, serve(dataDir, name, JSON.parse(raw) as WantSpec, me, say))
        failed.delete(name)
      } catch (e) {
        failed.set(name, raw)
        say(`${name}: not watched: ${(e as Error).message.split('\n')[0]}`)
      }
    }
  }

  reconcile()
  let stop: () => void = () => undefined
  const done = new Promise<number>(resolve => {
    let pending = false
    const soon = (): void => {
      if (pending) return
      pending = true
      setImmediate(() => {
        pending = false
        reconcile()
      })
    }
    // A new want file is served at once (create waits for `ready`); the 1 s tick is the backstop.
    let wantWatch: FSWatcher | undefined
    try {
      wantWatch = watch(wantDir(dataDir), soon)
      wantWatch.on('error', () => undefined)
    } catch {
      // the tick still reconciles
    }
    let idleSince = Date.now()
    let floodUntil = 0
    const timer = setInterval(() => {
      reconcile()
      const now = Date.now()
      // One inotify queue serves every sandbox of the daemon; when it overflows the kernel drops
      // events (libuv ignores IN_Q_OVERFLOW), so a sandbox flooding it could hide another's plant
      // until the next rescan. While the events of all sandboxes exceed FLOOD_EVENTS_PER_S, and
      // FLOOD_HOLD_MS after, every sandbox is rescanned every FLOOD_RESCAN_MS instead of RESCAN_MS.
      let events = 0
      for (const s of served.values()) {
        events += s.w.events
        s.w.events = 0
      }
      if (events >= FLOOD_EVENTS_PER_S) {
        if (now >= floodUntil) say(`${events} watch events in 1 s: rescanning every sandbox every ${FLOOD_RESCAN_MS / 1000} s while it lasts`)
        floodUntil = now + FLOOD_HOLD_MS
      }
      const flooded = now < floodUntil
      for (const s of served.values()) {
        if (now - s.last >= (flooded ? Math.min(s.rescanMs, FLOOD_RESCAN_MS) : s.rescanMs)) {
          s.last = now
          s.w.scan()
        }
      }
      if (served.size > 0) idleSince = now
      else if (now - idleSince >= DAEMON_IDLE_MS) {
        // Give up the pid file first, then look again: a want written meanwhile saw no daemon
        // and started one, or is seen here.
        releaseDaemon(dataDir)
        if (wanted(dataDir).size === 0 || !acquireDaemon(dataDir)) return stop()
        idleSince = now
      }
    }, 1000)
    stop = () => {
      clearInterval(timer)
      wantWatch?.close()
      for (const name of [...served.keys()]) drop(name)
      releaseDaemon(dataDir)
      resolve(0)
    }
  })
  return { done, stop: () => stop() }
}

/** Starts serving one sandbox; throws when it cannot (the daemon says so in its log). */
function serve(dataDir: string, name: string, spec: WantSpec, me: string, daemonSay: (l: string) => void): Served {
  const say = (l: string) => daemonSay(`${name}: ${l}`)
  for (const err of spec.errors) say(err)
  const roots = JSON.parse(readFileSync(rootsFile(dataDir, name), 'utf8')) as string[]
  writeWatchFile(pidFile(dataDir, name), me + '\n')
  const rules = hostExecRules(spec.patterns)
  let baseline = loadBaseline(baselineFile(dataDir, name))
  const fresh = !baseline
  const q = { dataDir, name, say }
  if (!baseline) {
    // First start (create): the agent's container has not started yet (the runtime waits for
    // `ready`), so the tree IS the user's.
    baseline = HostExecWatcher.takeBaseline(roots, rules)
    saveBaseline(baselineFile(dataDir, name), baseline)
  }
  const w = new HostExecWatcher({ q, roots, rules, baseline })
  // Mount sentinel: protections the host detaches are made again while the daemon serves the sandbox.
  const sentinel = startSentinel({ dataDir, name, say })
  const guard = new DiskGuard({ dataDir, name, paths: [...roots, sandboxHomeDir(dataDir, name)], reserve: spec.reserve, agentPid: () => agentInitPid(name, process.env), say })
  const s: Served = { w, close: () => undefined, rescanMs: RESCAN_MS, last: Date.now() }
  // Watches first, then the scan: anything created meanwhile is seen by one or the other. Right
  // after the baseline walk (create: the agent not started yet) the scan would find nothing.
  w.watch(e => {
    // Lost watch (ENOSPC: the user's inotify watches exhausted — an agent can make directories
    // until they are): say so where commands look, rescan now and every 5 s from here on.
    say(`watch error: ${e.message}; rescanning every 5 s, and at every command`)
    try {
      writeWatchFile(degradedFile(dataDir, name), `${e.message}\n`)
    } catch {
      // the rescans still run
    }
    s.rescanMs = 5_000
    w.scan()
  })
  if (!fresh) w.scan()
  writeWatchFile(readyFile(dataDir, name), me + '\n')
  let stopped = false
  let guarding: NodeJS.Timeout | undefined
  const guardLoop = (): void => {
    void guard
      .tick()
      .catch((e: unknown) => {
        say(`disk guard: ${(e as Error).message}`)
        return DISK_GUARD_TICK_MS
      })
      .then(next => {
        if (!stopped) guarding = setTimeout(guardLoop, next)
      })
  }
  if (guard.enabled) guardLoop()
  s.close = () => {
    stopped = true
    if (guarding) clearTimeout(guarding)
    sentinel.close()
    w.close()
  }
  return s
}

export const RESCAN_MS = 60_000
/**
 * Flood: events per second (all sandboxes of the daemon together) above which the shared inotify
 * queue (16,384 events by default, fs.inotify.max_queued_events) may overflow behind a busy loop.
 */
export const FLOOD_EVENTS_PER_S = 5_000
export const FLOOD_RESCAN_MS = 5_000
const FLOOD_HOLD_MS = 10_000

/** resources.disk_reserve of the effective config; an unreadable config: the default, said once. */
function diskReserve(env: { readonly [k: string]: string | undefined }, say: (l: string) => void): DiskReserve {
  try {
    return parseDiskReserve(loadEffectiveConfig(env).effective.resources.disk_reserve)
  } catch (e) {
    say(`disk guard: ${(e as Error).message.split('\n')[0]}; using the default reserve`)
    return parseDiskReserve(undefined)
  }
}

/** The host pid of the agent container's init (its pid namespace is the agent's), or undefined. */
async function agentInitPid(name: string, env: { readonly [k: string]: string | undefined }): Promise<number | undefined> {
  const podman = await Podman.detect({ env })
  return containerPid(podman, agentContainer(name))
}
