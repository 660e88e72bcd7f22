import { readdirSync, readFileSync } from 'node:fs'

/**
 * Sends `sig` to every process of this user whose initial environment carries
 * PODSHELL_EXEC_ID=<marker>: the processes of one `sandbox exec` session (children inherit the
 * variable, so this reaches the session like a process-group signal does).
 *
 * Why not `podman exec`? It does not proxy signals: a SIGTERM to podman exec leaves the command
 * running inside (measured on Podman 4.3.1). Under keep-id the sandbox's processes run as the
 * user's own uid on the host, so podshell may signal them directly; /proc of other users' processes
 * is unreadable, so nothing else can match.
 */
export function killMarkedProcesses(marker: string, sig: NodeJS.Signals): number {
  const needle = Buffer.from(`PODSHELL_EXEC_ID=${marker}\0`)
  let n = 0
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return 0
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue
    const pid = Number(e)
    if (pid === process.pid) continue
    let environ: Buffer
    try {
      environ = readFileSync(`/proc/${pid}/environ`)
    } catch {
      continue
    }
    if (environ.indexOf(needle) === -1) continue
    try {
      process.kill(pid, sig)
      n++
    } catch {
      // exited meanwhile
    }
  }
  return n
}
