import { spawn } from 'node:child_process'
import { existsSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { sandboxDir, sandboxHomeDir } from '../config/paths.js'
import { cliMain, internalArgs } from '../util/self.js'
import { creatorAlive, selfCreatorId } from '../util/process.js'
import { recordFinding } from './quarantine.js'
import { baselineFile, degradedFile, pidFile, readyFile, rootsFile, watchDir, watcherIdentity, watcherMissing, writeWatchFile } from './paths.js'
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
 *   - create: the writable mount roots are recorded, the watcher process is spawned (detached, as
 *     the user) and awaited until it has taken the baseline and set its watches — BEFORE the agent
 *     container starts, so the baseline is what the user had;
 *   - start: a watcher is spawned again (it rescans everything at its start);
 *   - every command touching the sandbox (exec, connect, start): when the watcher is not running
 *     (killed, crashed, the machine rebooted), a bounded full rescan in the command's own process,
 *     then a new watcher; while it runs, its unbroken watch and its own periodic rescans cover it;
 *   - stop / delete: after the containers are down (nothing can change any more), a final full
 *     rescan, then the watcher is stopped.
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

async function spawnWatcher(dataDir: string, name: string, o: WatchHookOptions, wait = true): Promise<void> {
  if (watcherIdentity(dataDir, name)) return
  if (!existsSync(sandboxDir(dataDir, name))) return
  rmSync(readyFile(dataDir, name), { force: true })
  // The quarantine dir is made by the first quarantine only: a sandbox that never had one leaves
  // nothing outside its state dir.
  const log = openSync(join(watchDir(dataDir, name), 'watcher.log'), 'a', 0o600)
  try {
    const child = spawn(process.execPath, [cliMain(), '_watch', '--data', dataDir, name], {
      detached: true,
      stdio: ['ignore', 'ignore', log],
      env: { ...(o.env ?? process.env) } as NodeJS.ProcessEnv,
      cwd: '/',
    })
    child.unref()
  } finally {
    closeSync(log)
  }
  if (!wait) return
  const deadline = Date.now() + (o.readyTimeoutMs ?? 15_000)
  while (Date.now() < deadline) {
    if (existsSync(readyFile(dataDir, name))) return
    await new Promise(r => setTimeout(r, 10))
  }
  o.say?.(`warning: the host-executed-file watcher of ${name} is not ready yet; continuing (it keeps starting)`)
}

export async function stopWatcher(dataDir: string, name: string): Promise<void> {
  const id = watcherIdentity(dataDir, name)
  if (!id) return
  const pid = Number(id.split(':')[0])
  try {
    process.kill(pid, 'SIGTERM')
  } catch {
    return
  }
  for (let i = 0; i < 100 && creatorAlive(id); i++) await new Promise(r => setTimeout(r, 10))
  if (creatorAlive(id)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone
    }
  }
}

/**
 * The watcher process (`podshell _watch --data DIR NAME`): baseline (first start only), full
 * rescan, live watch until stop() or the sandbox's state dir disappears, a full rescan every
 * RESCAN_MS as a backstop for anything inotify did not report. The CLI entry (src/cli/run.ts)
 * wires stop() to SIGTERM/SIGINT; `done` resolves with the exit code.
 */
export async function watchMain(argv: readonly string[]): Promise<{ done: Promise<number>; stop: () => void }> {
  const args = internalArgs(argv)
  const finished = (code: number) => ({ done: Promise.resolve(code), stop: () => undefined })
  if (!args) {
    process.stderr.write('usage: podshell _watch --data DIR NAME\n')
    return finished(2)
  }
  const { dataDir, name } = args
  if (watcherIdentity(dataDir, name)) return finished(0) // one watcher per sandbox
  writeWatchFile(pidFile(dataDir, name), selfCreatorId() + '\n')
  const roots = JSON.parse(readFileSync(rootsFile(dataDir, name), 'utf8')) as string[]
  const extra = extraPatterns(process.env)
  for (const err of extra.errors) process.stderr.write(`podshell watch: ${err}\n`)
  const rules = hostExecRules(extra.patterns)
  let baseline = loadBaseline(baselineFile(dataDir, name))
  const fresh = !baseline
  const say = (l: string) => process.stderr.write(`${new Date().toISOString()} ${l}\n`)
  const q = { dataDir, name, say }
  if (!baseline) {
    // First start (create): the agent's container has not started yet (the runtime waits for
    // `ready`), so the tree IS the user's.
    baseline = HostExecWatcher.takeBaseline(roots, rules)
    saveBaseline(baselineFile(dataDir, name), baseline)
  }
  const w = new HostExecWatcher({ q, roots, rules, baseline })
  // Mount sentinel: protections the host detaches are made again while this watcher serves the sandbox.
  const sentinel = startSentinel({ dataDir, name, say })
  const guard = new DiskGuard({ dataDir, name, paths: [...roots, sandboxHomeDir(dataDir, name)], reserve: diskReserve(process.env, say), agentPid: () => agentInitPid(name, process.env), say })
  // Watches first, then the scan: anything created meanwhile is seen by one or the other. Right
  // after the baseline walk (create: the agent not started yet) the scan would find nothing.
  let rescanMs = RESCAN_MS
  w.watch(e => {
    // Lost watch (ENOSPC: the user's inotify watches exhausted — an agent can make directories
    // until they are): say so where commands look, rescan now and every 5 s from here on.
    say(`watch error: ${e.message}; rescanning every 5 s, and at every command`)
    try {
      writeWatchFile(degradedFile(dataDir, name), `${e.message}\n`)
    } catch {
      // the rescans below still run
    }
    rescanMs = 5_000
    w.scan()
  })
  if (!fresh) w.scan()
  writeWatchFile(readyFile(dataDir, name), selfCreatorId() + '\n')
  let stop: () => void = () => undefined
  const done = new Promise<number>(resolve => {
    let last = Date.now()
    const timer = setInterval(() => {
      if (!existsSync(sandboxDir(dataDir, name))) return stop()
      if (Date.now() - last >= rescanMs) {
        last = Date.now()
        w.scan()
      }
    }, 1000)
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
    let stopped = false
    if (guard.enabled) guardLoop()
    stop = () => {
      stopped = true
      if (guarding) clearTimeout(guarding)
      clearInterval(timer)
      sentinel.close()
      w.close()
      resolve(0)
    }
  })
  return { done, stop: () => stop() }
}

export const RESCAN_MS = 60_000

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
