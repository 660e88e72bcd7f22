import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import type { PodshellError } from '../errors.js'
import { fsError } from './fs.js'
import { creatorAlive, selfCreatorId } from './process.js'

/**
 * Lock files, the one mechanism behind podshell's locks (policy revisions, provider secrets, image
 * builds). A lock is a file created with O_EXCL holding "<pid>:<start time>" of its holder
 * (selfCreatorId). A holder that died (kill -9) leaves a stale lock that the next taker removes;
 * the start time keeps a recycled pid from passing for the holder. An empty file is a holder
 * writing right now, or one killed between open and write: it is stale only once it is older than
 * any write could take. Two takers racing over the same stale lock can, in a window of
 * microseconds, both proceed; every caller's consequence of that is bounded (documented there),
 * so a simple O_EXCL file is used rather than a platform-specific flock.
 */
export type LockAttempt = { taken: true } | { taken: false; holder: string }

const EMPTY_GRACE_MS = 5_000

/** Takes the lock if it is free or stale. */
export function tryLock(path: string): LockAttempt {
  let holder = ''
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600)
      try {
        writeSync(fd, selfCreatorId() + '\n')
      } finally {
        closeSync(fd)
      }
      return { taken: true }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(`cannot create ${path}`, e)
    }
    try {
      holder = readFileSync(path, 'utf8').trim()
    } catch {
      continue // released between our open and read: try again
    }
    if (holder === '' ? !olderThan(path, EMPTY_GRACE_MS) : creatorAlive(holder)) return { taken: false, holder }
    rmSync(path, { force: true })
  }
  return { taken: false, holder }
}

/** Whether a lock file is there and its holder is gone (a killed holder: its work may need undoing). */
export function lockStale(path: string): boolean {
  try {
    return !creatorAlive(readFileSync(path, 'utf8').trim())
  } catch {
    return false
  }
}

export function releaseLock(path: string): void {
  rmSync(path, { force: true })
}

export interface WaitOptions {
  /** How long to wait for a live holder before giving up. */
  waitMs: number
  pollMs: number
  /** The error when the wait is over; `holder` is the holder's pid. */
  busy: (holder: string) => PodshellError
  /** Called once, when the lock is found held (e.g. to say that we wait). */
  onWait?: (holder: string) => void
}

/** Runs `fn` holding the lock; synchronous callers (the policy store) wait by blocking. */
export function withLockSync<T>(path: string, o: WaitOptions, fn: () => T): T {
  const deadline = Date.now() + o.waitMs
  let told = false
  for (;;) {
    const a = tryLock(path)
    if (a.taken) break
    if (!told) o.onWait?.(pidOf(a.holder))
    told = true
    if (Date.now() > deadline) throw o.busy(pidOf(a.holder))
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, o.pollMs)
  }
  try {
    return fn()
  } finally {
    releaseLock(path)
  }
}

/** Waits for the lock without blocking the event loop; the caller releases it. */
export async function acquireLock(path: string, o: WaitOptions): Promise<void> {
  const deadline = Date.now() + o.waitMs
  let told = false
  for (;;) {
    const a = tryLock(path)
    if (a.taken) return
    if (!told) o.onWait?.(pidOf(a.holder))
    told = true
    if (Date.now() > deadline) throw o.busy(pidOf(a.holder))
    await sleep(o.pollMs)
  }
}

/** Runs `fn` holding the lock, waiting for it without blocking the event loop. */
export async function withLock<T>(path: string, o: WaitOptions, fn: () => Promise<T>): Promise<T> {
  await acquireLock(path, o)
  try {
    return await fn()
  } finally {
    releaseLock(path)
  }
}

const pidOf = (holder: string) => holder.split(':')[0] || 'unknown'

function olderThan(path: string, ms: number): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs > ms
  } catch {
    return true
  }
}
