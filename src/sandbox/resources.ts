import { PodshellError } from '../errors.js'

/**
 * OpenShell's resource notation → podman's. `--cpu 500m` → `--cpus 0.5`; `--memory 4Gi` → `4g`.
 */
export function parseCpu(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(v.trim())
  const n = m ? Number(m[1]) / (m[2] ? 1000 : 1) : NaN
  if (!m || !(n > 0) || n > 1024) {
    throw new PodshellError(`invalid --cpu ${JSON.stringify(v)}`, { hint: 'use cores ("2", "0.5") or millicores ("500m")', exitCode: 2, code: 'INVALID_INPUT' })
  }
  return Math.round(n * 1000) / 1000
}

const UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3, ti: 1024 ** 4 }

export function parseMemory(v: string): string {
  const m = /^(\d+(?:\.\d+)?)([kmgt]i?)?b?$/i.exec(v.trim())
  const unit = (m?.[2] ?? '').toLowerCase()
  const bytes = m ? Number(m[1]) * (UNITS[unit] ?? NaN) : NaN
  if (!m || !(bytes >= 6 * 1024 * 1024) || bytes > 2 ** 50) {
    throw new PodshellError(`invalid --memory ${JSON.stringify(v)}`, { hint: 'use a size of at least 6Mi like "512Mi" or "4Gi"', exitCode: 2, code: 'INVALID_INPUT' })
  }
  return String(Math.floor(bytes))
}

/** A size in OpenShell/Kubernetes notation ("1Gi", "64Mi", "512M") → bytes; `what` names the key. */
export function parseSize(v: string, what: string, min = 1024 * 1024): number {
  const m = /^(\d+(?:\.\d+)?)([kmgt]i?)?b?$/i.exec(v.trim())
  const unit = (m?.[2] ?? '').toLowerCase()
  const bytes = m ? Math.floor(Number(m[1]) * (UNITS[unit] ?? NaN)) : NaN
  if (!m || !(bytes >= min) || bytes > 2 ** 50) {
    throw new PodshellError(`invalid ${what} ${JSON.stringify(v)}`, { hint: `use a size of at least ${min / 1024 / 1024}Mi like "64Mi" or "1Gi"`, exitCode: 2, code: 'INVALID_INPUT' })
  }
  return bytes
}

/** What resources.* in the configuration may set (src/config/config.ts ResourcesSchema). */
export interface ResourceConfig {
  pids?: number
  nproc?: number
  tmp_size?: string
  var_tmp_size?: string
  run_size?: string
  log_max_size?: string
}

/**
 * The limits every sandbox gets, whatever the host (the defaults answer issue 9's "one sandbox
 * starves all": 3,000 processes and 36 GiB of RAM-backed tmpfs were possible before):
 *  - nproc: RLIMIT_NPROC, counted per (user namespace, uid) on Linux >= 5.14; each sandbox pod has
 *    its own user namespace (keep-id), so this bounds one sandbox, not the user's whole session;
 *  - tmpfs sizes of /tmp, /var/tmp and /run (RAM-backed: a write past the bound is ENOSPC inside);
 *  - the container log file (k8s-file, rotated by conmon at max-size).
 * The pids cgroup (`pids`) is separate: it needs cgroup v2 (see pidsLimit).
 */
export interface SandboxLimits {
  nproc: number
  tmpBytes: number
  varTmpBytes: number
  runBytes: number
  logMaxBytes: number
}

export const DEFAULT_LIMITS: SandboxLimits = {
  nproc: 4096,
  tmpBytes: 1024 ** 3,
  varTmpBytes: 256 * 1024 ** 2,
  runBytes: 64 * 1024 ** 2,
  logMaxBytes: 10 * 1024 ** 2,
}

export function sandboxLimits(r: ResourceConfig = {}): SandboxLimits {
  return {
    nproc: r.nproc ?? DEFAULT_LIMITS.nproc,
    tmpBytes: r.tmp_size !== undefined ? parseSize(r.tmp_size, 'resources.tmp_size') : DEFAULT_LIMITS.tmpBytes,
    varTmpBytes: r.var_tmp_size !== undefined ? parseSize(r.var_tmp_size, 'resources.var_tmp_size') : DEFAULT_LIMITS.varTmpBytes,
    runBytes: r.run_size !== undefined ? parseSize(r.run_size, 'resources.run_size') : DEFAULT_LIMITS.runBytes,
    logMaxBytes: r.log_max_size !== undefined ? parseSize(r.log_max_size, 'resources.log_max_size', 64 * 1024) : DEFAULT_LIMITS.logMaxBytes,
  }
}

/** Default pids cgroup limit where the host enforces it. */
export const DEFAULT_PIDS = 4096

/**
 * The pids cgroup limit: an explicit value (config resources.pids, or CreateOptions.pids) needs a
 * host that enforces cgroup limits for rootless containers (cgroup v2); elsewhere it is refused
 * like --cpu/--memory, never silently dropped. Without an explicit value the default applies only
 * where it is enforced (RLIMIT_NPROC bounds the processes everywhere).
 */
export function pidsLimit(explicit: number | undefined, cgroupLimits: boolean): number | undefined {
  if (explicit !== undefined) {
    if (!Number.isInteger(explicit) || explicit < 32 || explicit > 4_194_304) {
      throw new PodshellError(`invalid pids limit ${explicit}`, { hint: 'use a whole number from 32 to 4194304', exitCode: 2, code: 'INVALID_INPUT' })
    }
    if (!cgroupLimits) {
      throw new PodshellError('resources.pids needs cgroup v2: rootless Podman ignores the pids cgroup on this cgroup v1/hybrid host', {
        hint: 'boot with systemd.unified_cgroup_hierarchy=1, or drop resources.pids (resources.nproc bounds processes on any host)',
        exitCode: 2,
        code: 'LIMITS_UNSUPPORTED',
      })
    }
    return explicit
  }
  return cgroupLimits ? DEFAULT_PIDS : undefined
}
