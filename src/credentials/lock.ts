import { join } from 'node:path'
import { PodshellError } from '../errors.js'
import { providersDir } from '../config/paths.js'
import { mkdirp } from '../util/fs.js'
import { acquireLock, releaseLock, tryLock } from '../util/lockfile.js'

/**
 * One lock for every change to provider secrets and metadata (create, update, delete, gc).
 *
 * Without it, garbage collection could not tell a secret whose `provider create` was killed
 * before it wrote the metadata (an orphan) from one whose create is still running in another
 * podshell process. With it the rule is exact: while nobody holds the lock, a podshell-labelled
 * secret that no provider's metadata lists is an orphan.
 *
 * A lock file (src/util/lockfile.ts). Should two takers race over the same stale lock, the
 * consequence is bounded: a provider create racing a gc can lose a secret and then fails with
 * "secret for VAR is missing" at sandbox create.
 */
export class ProviderLock {
  private constructor(private readonly path: string) {}

  static lockPath(dataDir: string): string {
    return join(providersDir(dataDir), '.lock')
  }

  /** Waits up to `timeoutMs` for the lock. */
  static async acquire(dataDir: string, timeoutMs = 15_000): Promise<ProviderLock> {
    const path = ProviderLock.lockPath(dataDir)
    mkdirp(providersDir(dataDir))
    await acquireLock(path, {
      waitMs: timeoutMs,
      pollMs: 50,
      busy: () => new PodshellError('another podshell process is changing providers', {
        hint: `wait for it to finish; if none is running, remove ${path}`,
        code: 'PROVIDERS_LOCKED',
      }),
    })
    return new ProviderLock(path)
  }

  /** Takes the lock if it is free or stale; undefined when a live process holds it. */
  static tryAcquire(dataDir: string): ProviderLock | undefined {
    const path = ProviderLock.lockPath(dataDir)
    mkdirp(providersDir(dataDir))
    return tryLock(path).taken ? new ProviderLock(path) : undefined
  }

  release(): void {
    releaseLock(this.path)
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
