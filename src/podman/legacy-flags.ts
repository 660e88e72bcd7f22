/**
 * Reads the podman flags an older release stored in a sandbox's agent.json (before descriptions,
 * src/sandbox/description.ts fromLegacy). Reading podman argv is podman knowledge, so it lives here
 * next to the renderer; the caller turns the result into a sandbox description. Hardening, names,
 * labels, limits and scratch tmpfs are skipped: the new release renders its own.
 */
export interface LegacyFlags {
  mounts: { type: 'bind' | 'tmpfs'; source: string; target: string; readOnly: boolean }[]
  seccomp?: string
  cpus?: number
  memory?: string
  workdir?: string
  user?: { uid: number; gid: number }
  /** `--env` values as written: `NAME=VALUE` (in argv) or `NAME` (value was in podman's environment). */
  env: string[]
}

/** Flags with a value that fromLegacy does not need (skipped together with their value). */
const SKIPPED_WITH_VALUE = new Set(['--pod', '--name', '--label', '--tmpfs', '--pids-limit', '--ulimit', '--secret'])

export function readLegacyFlags(f: readonly string[]): LegacyFlags {
  const out: LegacyFlags = { mounts: [], env: [] }
  for (let i = 0; i < f.length; i++) {
    const flag = f[i]!
    const val = f[i + 1] ?? ''
    switch (flag) {
      case '--mount': {
        i++
        const o = Object.fromEntries(val.split(',').map(kv => [kv.split('=')[0]!, kv.slice(kv.indexOf('=') + 1)]))
        if ((o.type === 'bind' && o.source) || o.type === 'tmpfs') {
          if (o.destination) out.mounts.push({ type: o.type, source: o.source ?? '', target: o.destination, readOnly: o.ro === 'true' })
        }
        break
      }
      case '--security-opt':
        i++
        if (val.startsWith('seccomp=')) out.seccomp = val.slice('seccomp='.length)
        break
      case '--cpus':
        i++
        out.cpus = Number(val)
        break
      case '--memory':
        i++
        out.memory = val
        break
      case '--workdir':
        i++
        out.workdir = val
        break
      case '--user': {
        i++
        const [u, g] = val.split(':').map(Number)
        out.user = { uid: u ?? 0, gid: g ?? 0 }
        break
      }
      case '--env':
        i++
        out.env.push(val)
        break
      default:
        if (SKIPPED_WITH_VALUE.has(flag)) i++
    }
  }
  return out
}
