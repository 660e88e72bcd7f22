import { statSync, readFileSync, accessSync, constants } from 'node:fs'
import { join, delimiter } from 'node:path'
import { cacheDir, type Env } from '../config/paths.js'

/**
 * The cached OCI-runtime choice (see Podman.detect), readable without loading execa: the fast
 * `sandbox exec` path needs the podman binary and its runtime, nothing else.
 */
export interface RuntimeChoice {
  /** The OCI runtime podshell passes with --runtime ("crun", "runc", ...). */
  runtime: string
  /** Why: e.g. "crun failed: cgroups in hybrid mode not supported; runc works". */
  reason: string
  /** Runtimes that were tried and failed, with their error line. */
  failed: { runtime: string; error: string }[]
}

export interface RuntimeCache extends RuntimeChoice {
  key: string
  version: string
}

export const runtimeCacheFile = (env: Env) => join(cacheDir(env), 'runtime.json')

/** The podman binary and its cached runtime, when the cache matches this binary. */
export function cachedRuntime(env: Env): { bin: string; runtime: string } | undefined {
  if (env.PODSHELL_RUNTIME !== undefined) return undefined
  const bin = env.PODSHELL_PODMAN ?? findOnPath('podman', env)
  if (!bin) return undefined
  const c = readCache(runtimeCacheFile(env))
  return c && c.key === binaryKey(bin) ? { bin, runtime: c.runtime } : undefined
}

export function findOnPath(name: string, env: Env): string | undefined {
  for (const dir of (env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter)) {
    if (!dir) continue
    const p = join(dir, name)
    try {
      accessSync(p, constants.X_OK)
      if (statSync(p).isFile()) return p
    } catch {
      // not here
    }
  }
  return undefined
}

export function binaryKey(bin: string): string {
  try {
    const s = statSync(bin)
    return `${bin}:${s.ino}:${s.size}:${s.mtimeMs}`
  } catch {
    return bin
  }
}

export function readCache(file: string): RuntimeCache | undefined {
  try {
    const c = JSON.parse(readFileSync(file, 'utf8')) as RuntimeCache
    return typeof c.runtime === 'string' && typeof c.key === 'string' ? c : undefined
  } catch {
    return undefined
  }
}
