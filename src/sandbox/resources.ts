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
