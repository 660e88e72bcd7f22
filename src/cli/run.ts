// What `podshell` does once Node is set up (src/cli/main.ts): the fast `sandbox exec` path, else the
// full command layer. Both are loaded on demand, so a plain exec never loads the CLI framework.

// `sandbox exec` in its plain form skips the CLI framework (see fast-exec.ts).
const { fastExec } = await import('./fast-exec.js')
const internal = process.argv[2] === '_watch' || process.argv[2] === '_teardown'
const code = internal ? undefined : await fastExec(process.argv)
if (code !== undefined) process.exitCode = code
else if (process.argv[2] === '_teardown') {
  // The detached removal of a `create --no-keep` sandbox (src/sandbox/teardown.ts).
  const { teardownMain } = await import('./teardown.js')
  process.exitCode = await teardownMain(process.argv.slice(3))
} else if (process.argv[2] === '_watch') {
  // The host-executed-file watcher of one sandbox (src/watch/lifecycle.ts), spawned by the runtime.
  const { watchMain } = await import('../watch/lifecycle.js')
  const { surviveRecursiveWatchErrors } = await import('../watch/watch-errors.js')
  surviveRecursiveWatchErrors(l => process.stderr.write(`${new Date().toISOString()} ${l}\n`))
  const w = await watchMain(process.argv.slice(3))
  process.once('SIGTERM', w.stop)
  process.once('SIGINT', w.stop)
  process.exitCode = await w.done
  process.exit()
} else {
  const { main } = await import('./program.js')
  await main()
}

export {}
