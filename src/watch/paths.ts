import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { dirname, join } from 'node:path'
import { sandboxDir } from '../config/paths.js'
import { creatorAlive } from '../util/process.js'

/**
 * Where the host-executed-file watcher keeps its files, and the cheap "is it running" check the
 * fast exec path uses (no other module loaded: `sandbox exec` stays light).
 */

/**
 * `<data>/quarantine/<sandbox>/`: outside the sandbox's state dir on purpose, so `sandbox delete`
 * does not delete the evidence; the user inspects and removes it. watch.log lives there too.
 */
export const quarantineDir = (data: string, name: string) => join(data, 'quarantine', name)
export const watchLogFile = (data: string, name: string) => join(quarantineDir(data, name), 'watch.log')
/** The watcher's own state (baseline, roots, pid): in the sandbox's state dir, gone with it. */
export const watchDir = (data: string, name: string) => join(sandboxDir(data, name), 'watch')
export const baselineFile = (data: string, name: string) => join(watchDir(data, name), 'baseline.json')
export const rootsFile = (data: string, name: string) => join(watchDir(data, name), 'roots.json')
export const pidFile = (data: string, name: string) => join(watchDir(data, name), 'watcher.pid')
export const readyFile = (data: string, name: string) => join(watchDir(data, name), 'ready')
/**
 * The watcher daemon of a data dir (one process serves every sandbox of the user and data dir):
 * `<data>/watchd/pid` (its `pid:start-time`, created exclusively), `<data>/watchd/want/<sandbox>`
 * (one per sandbox to watch: JSON of what the command that asked resolved from its environment),
 * `<data>/watchd/watchd.log` (its stderr).
 */
export const watchdDir = (data: string) => join(data, 'watchd')
export const daemonPidFile = (data: string) => join(watchdDir(data), 'pid')
export const wantDir = (data: string) => join(watchdDir(data), 'want')
export const wantFile = (data: string, name: string) => join(wantDir(data), name)
/** Written by a watcher whose inotify watch failed (e.g. the user's max_user_watches is exhausted). */
export const degradedFile = (data: string, name: string) => join(watchDir(data, name), 'degraded')

/** The mount sentinel's list of protections (src/watch/mount-sentinel.ts); no container mounts it. */
export const protectedFile = (data: string, name: string) => join(watchDir(data, name), 'protected.json')
/** Written while the mount sentinel holds the agent stopped for good (a protection it could not make again). */
export const sentinelHeldFile = (data: string, name: string) => join(watchDir(data, name), 'protection-broken')

/** Why the mount sentinel holds the sandbox's agent stopped, or undefined. Cheap (one read). */
export function sentinelHeld(data: string, name: string): string | undefined {
  try {
    return readFileSync(sentinelHeldFile(data, name), 'utf8').trim() || undefined
  } catch {
    return undefined
  }
}

/** Written while the disk guard (src/watch/disk-guard.ts) holds the agent paused: why, in one line. */
export const frozenFile = (data: string, name: string) => join(watchDir(data, name), 'disk-paused')

/** Why the sandbox's agent is paused by the disk guard, or undefined. Cheap (one read). */
export function diskPaused(data: string, name: string): string | undefined {
  try {
    return readFileSync(frozenFile(data, name), 'utf8').trim() || undefined
  } catch {
    return undefined
  }
}

/** `pid:start-time` of the running watcher, or undefined. */
export function watcherIdentity(data: string, name: string): string | undefined {
  try {
    const id = readFileSync(pidFile(data, name), 'utf8').trim()
    if (!creatorAlive(id)) return undefined
    // A killed watcher not yet reaped (a zombie) is not watching.
    const stat = readFileSync(`/proc/${id.split(':')[0]}/stat`, 'utf8')
    return /\) [ZX] /.test(stat) ? undefined : id
  } catch {
    return undefined
  }
}

/**
 * True when the sandbox should have a watcher (host-executed files, disk guard) but none runs, or the running one lost
 * its inotify watch (degraded): a rescan is due before the command.
 */
export function watcherMissing(data: string, name: string): boolean {
  // Every sandbox made since the disk guard has a watcher (it guards the home even with no
  // writable mount); an older one without roots.json has none.
  if (!existsSync(rootsFile(data, name))) return false
  return watcherIdentity(data, name) === undefined || existsSync(degradedFile(data, name))
}

/**
 * Writes a file of the watcher's own state (temp + rename). Never creates the sandbox's state dir:
 * a watcher outliving a sandbox that gc or delete just removed must not resurrect it (ENOENT then).
 */
export function writeWatchFile(file: string, content: string): void {
  try {
    mkdirSync(dirname(file), { mode: 0o700 })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
  }
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`
  writeFileSync(tmp, content, { mode: 0o600 })
  renameSync(tmp, file)
}
