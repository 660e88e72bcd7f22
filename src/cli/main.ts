#!/usr/bin/env node
import module from 'node:module'
import { join } from 'node:path'
import { cacheDir } from '../config/paths.js'

// V8's compile cache (Node >= 22.1) cuts podshell's start-up: every sandbox command pays it, and
// `sandbox exec` is meant to cost little more than `podman exec`. Kept in podshell's own cache
// dir (a shared /tmp dir may belong to another user). Failure to enable it only costs speed.
try {
  module.enableCompileCache?.(join(cacheDir(), 'node-compile-cache'))
} catch {
  // no cache: slower start, same behaviour
}
// `sandbox exec` in its plain form skips the CLI framework (see fast-exec.ts).
const { fastExec } = await import('./fast-exec.js')
const code = await fastExec(process.argv)
if (code !== undefined) process.exitCode = code
else {
  const { main } = await import('./program.js')
  await main()
}
