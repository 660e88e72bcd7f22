import { appendFileSync, statSync } from 'node:fs'
import { Podman } from '../podman/podman.js'
import { SandboxRuntime } from '../sandbox/runtime.js'
import { defaultDeps } from '../sandbox/deps.js'
import { teardownArgs } from '../sandbox/teardown.js'
import { teardownLogFile } from '../config/paths.js'

/** Attempts and the pause before each retry: a busy podman (Podman 5's sqlite state under
 * concurrent commands, a pod still stopping) usually answers the second time. */
const RETRY_DELAYS_MS = [500, 2_000, 5_000]

/**
 * `podshell _teardown --data DIR NAME`: the runtime's ordinary delete of a `--no-keep` sandbox,
 * in the detached process src/sandbox/teardown.ts spawns. It has no terminal, so a failure is
 * retried, then written as one line to `<data>/teardown.log`; the sandbox is left to gc, which
 * the operation marker points at.
 */
export async function teardownMain(argv: readonly string[]): Promise<number> {
  const a = teardownArgs(argv)
  if (!a) {
    process.stderr.write('usage: podshell _teardown --data DIR NAME\n')
    return 2
  }
  let last: unknown
  for (let attempt = 0; attempt <= RETRY_DELAYS_MS.length; attempt++) {
    if (attempt > 0) await new Promise(r => setTimeout(r, RETRY_DELAYS_MS[attempt - 1]))
    try {
      const podman = await Podman.detect({ env: process.env })
      const rt = new SandboxRuntime({
        podman,
        dataDir: a.dataDir,
        env: process.env,
        deps: defaultDeps(a.dataDir, process.env),
        say: () => undefined,
      })
      await rt.delete([a.name], { quiet: true })
      return 0
    } catch (e) {
      last = e
    }
  }
  record(
    a.dataDir,
    `${new Date().toISOString()} ${a.name}: teardown gave up after ${RETRY_DELAYS_MS.length + 1} attempts, left to gc: ${String((last as Error)?.message ?? last).split('\n')[0]}`,
  )
  return 1
}

/** Appends one line, keeping the file small (it is a diagnostic, not a log to keep). */
function record(dataDir: string, line: string): void {
  const f = teardownLogFile(dataDir)
  try {
    const big = statSync(f, { throwIfNoEntry: false })?.size ?? 0
    if (big < 64 * 1024) appendFileSync(f, line + '\n', { mode: 0o600 })
  } catch {
    // nothing else to tell: gc still finds the sandbox through its operation marker
  }
}
