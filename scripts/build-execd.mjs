// Builds the sandbox exec server (native/execd.c) as a static binary: dist/podshell-execd.
// It is bind-mounted read-only into each agent container, so it must need nothing from the image.
// Without a C compiler (gcc + libc6-dev: scripts/host-setup.sh, .ci/run) podshell still works:
// every `sandbox exec` then goes through `podman exec` (docs/architecture.md, "Exec server").
import { spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'

const src = new URL('../native/execd.c', import.meta.url).pathname
const out = new URL('../dist/podshell-execd', import.meta.url).pathname
mkdirSync(new URL('../dist', import.meta.url).pathname, { recursive: true })
const cc = process.env.CC ?? 'cc'
const r = spawnSync(cc, ['-static', '-O2', '-Wall', '-Wextra', '-Werror', '-o', out, src], { stdio: 'inherit' })
if (r.status !== 0) {
  const why = r.error ? r.error.message : `exit ${r.status}`
  if (process.env.PODSHELL_REQUIRE_EXECD) {
    console.error(`build-execd: ${cc} failed (${why})`)
    process.exit(1)
  }
  console.warn(`build-execd: ${cc} failed (${why}); sandbox exec will use podman exec (install gcc and libc6-dev for the exec server)`)
}
