import { SandboxRuntime } from '../sandbox/runtime.js'
import { defaultDeps } from '../sandbox/deps.js'
import type { CliContext } from './context.js'

/** The runtime every sandbox command uses: this context's podman, data dir and environment. */
export async function openRuntime(ctx: CliContext): Promise<SandboxRuntime> {
  const podman = await ctx.podman()
  return new SandboxRuntime({
    podman,
    dataDir: ctx.dataDir,
    env: ctx.env,
    deps: defaultDeps(ctx.dataDir, ctx.env),
    say: msg => ctx.out.note(msg),
    // The CLI owns the process: its signals reach create's cleanup and foreground commands.
    signals: process,
  })
}
