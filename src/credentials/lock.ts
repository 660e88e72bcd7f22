import { openSync, writeSync, closeSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { PodshellError } from '../errors.js'
import { providersDir } from '../config/paths.js'
import { mkdirp, fsError } from '../util/fs.js'
import { selfCreatorId, creatorAlive } from '../sandbox/state.js'

/**
 * One lock for every change to provider secrets and metadata (create, update, delete, gc).
 *
 * Without it, garbage collection could not tell a secret whose `provider create` was killed
 * before it wrote the metadata (an orphan) from one whose create is still running in another
 * podshell process. With it the rule is exact: while nobody holds the lock, a podshell-labelled
 * secret that no provider's metadata lists is an orphan.
 *
 * The lock file holds "<pid>:<start time>" of its holder; a holder that has died (kill -9) leaves
 * a stale lock that the next taker removes. Two takers racing over the same stale lock can, in a
 * window of microseconds, both proceed; the consequence is bounded (a provider create racing a gc
 * can lose a secret and then fails with "secret for VAR is missing" at sandbox create), so a
 * simple O_EXCL file is used rather than a platform-specific flock.
 */
export class ProviderLock {
  private constructor(private readonly path: string) {}

  static lockPath(dataDir: string): string {
    return join(providersDir(dataDir), '.lock')
  }

  /** Waits up to `timeoutMs` for the lock. */
  static async acquire(dataDir: string, timeoutMs = 15_000): Promise<ProviderLock> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const l = ProviderLock.tryAcquire(dataDir)
      if (l) return l
      if (Date.now() > deadline) {
        throw new PodshellError('another podshell process is changing providers', {
          hint: `wait for it to finish; if none is running, remove ${ProviderLock.lockPath(dataDir)}`,
          code: 'PROVIDERS_LOCKED',
        })
      }
      await sleep(50)
    }
  }

  /** Takes the lock if it is free or stale; undefined when a live process holds it. */
  static tryAcquire(dataDir: string): ProviderLock | undefined {
    const path = ProviderLock.lockPath(dataDir)
    mkdirp(providersDir(dataDir))
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o600)
        try {
          writeSync(fd, selfCreatorId() + '\n')
        } finally {
          closeSync(fd)
        }
        return new ProviderLock(path)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(`cannot create ${path}`, e)
      }
      let holder = ''
      try {
        holder = readFileSync(path, 'utf8').trim()
      } catch {
        continue // released between our open and read: try again
      }
      // An empty file is a holder writing right now, or one killed between open and write: it is
      // stale only once it is older than any write could take.
      if (holder === '' ? !olderThan(path, 5_000) : creatorAlive(holder)) return undefined
      rmSync(path, { force: true })
    }
    return undefined
  }

  release(): void {
    rmSync(this.path, { force: true })
  }

  /** Runs `fn` holding the lock. */
  static async with<T>(dataDir: string, fn: () => Promise<T>): Promise<T> {
    const lock = await ProviderLock.acquire(dataDir)
    try {
      return await fn()
    } finally {
      lock.release()
    }
  }
}

function olderThan(path: string, ms: number): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs > ms
  } catch {
    return true
  }
}
