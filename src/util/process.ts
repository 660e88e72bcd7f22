import { readFileSync } from 'node:fs'

/**
 * Identity of this process: pid plus kernel start time, so a recycled pid is not mistaken for a
 * process that is gone. Used for the creator label of pods, operation markers and lock files.
 */
export function selfCreatorId(): string {
  return creatorIdOf(process.pid)
}

/** The identity of another process (a child just spawned); `pid:0` (never alive) if it is gone. */
export function creatorIdOf(pid: number): string {
  return `${pid}:${processStartTime(pid) ?? '0'}`
}

/** Whether the process an identity from selfCreatorId() names is still running. */
export function creatorAlive(id: string | undefined): boolean {
  if (!id) return false
  const [pidS, start] = id.split(':')
  const pid = Number(pidS)
  if (!Number.isInteger(pid) || pid <= 0) return false
  const actual = processStartTime(pid, { live: true })
  return actual !== undefined && actual === start
}

/**
 * Field 22 of /proc/PID/stat (start time). With `live`, a zombie counts as gone: a killed detached
 * process (the `--no-keep` teardown) is reparented and stays a zombie until its new parent reaps
 * it, and it is not doing its job any more.
 */
function processStartTime(pid: number, opts: { live?: boolean } = {}): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The comm field (2) may contain spaces, so split after the last ')': [0] is field 3 (state).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (opts.live && (rest[0] === 'Z' || rest[0] === 'X')) return undefined
    return rest[19]
  } catch {
    return undefined
  }
}
