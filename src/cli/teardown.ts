import { Podman } from '../podman/podman.js'
import { SandboxRuntime } from '../sandbox/runtime.js'
import { defaultDeps } from '../sandbox/deps.js'
import { teardownArgs } from '../sandbox/teardown.js'

/**
 * `podshell _teardown --data DIR NAME`: the runtime's ordinary delete of a `--no-keep` sandbox,
 * in the detached process src/sandbox/teardown.ts spawns. Quiet (no terminal); a failure leaves the
 * sandbox to gc, which the operation marker points at.
 */
export async function teardownMain(argv: readonly string[]): Promise<number> {
  const a = teardownArgs(argv)
  if (!a) {
    process.stderr.write('usage: podshell _teardown --data DIR NAME\n')
    return 2
  }
  try {
    const podman = await Podman.detect({ env: process.env })
    const rt = new SandboxRuntime({ podman, dataDir: a.dataDir, env: process.env, deps: defaultDeps(a.dataDir, process.env), say: () => undefined })
    await rt.delete([a.name], { quiet: true })
    return 0
  } catch {
    return 1
  }
}
