// What `podshell` does once Node is set up (src/cli/main.ts): the fast `sandbox exec` path, else the
// full command layer. Both are loaded on demand, so a plain exec never loads the CLI framework.

// `sandbox exec` in its plain form skips the CLI framework (see fast-exec.ts).
const { fastExec } = await import('./fast-exec.js')
const code = await fastExec(process.argv)
if (code !== undefined) process.exitCode = code
else {
  const { main } = await import('./program.js')
  await main()
}

export {}
