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
  const actual = processStartTime(pid)
  return actual !== undefined && actual === start
}

function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Field 22 (starttime); the comm field (2) may contain spaces, so split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return rest[19]
  } catch {
    return undefined
  }
}
