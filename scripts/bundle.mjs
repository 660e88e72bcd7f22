// Bundles the CLI (dist/cli/run.js and everything it imports, dependencies included) into
// dist/bundle/: run.js plus chunks, split at run.js's dynamic imports so the fast `sandbox exec`
// path loads only its own small chunk. dist/cli/main.js loads dist/bundle/run.js when present.
//
// Why: every podshell command pays Node's module loading before it can call podman. Unbundled,
// that is ~300 files (execa alone pulls in ~60) resolved, read and linked one by one: about 120 ms
// on this project's machines. One file cuts the CLI's start-up (figures in docs/architecture.md).
// The library entry (dist/index.js) and the gateway server stay unbundled.
import { build } from 'esbuild'
import { existsSync, rmSync } from 'node:fs'

const entry = new URL('../dist/cli/run.js', import.meta.url).pathname
if (!existsSync(entry)) throw new Error('run tsc first: dist/cli/run.js is missing')
const outdir = new URL('../dist/bundle', import.meta.url).pathname
// Stale chunks from an earlier build would only take space (and the gateway image's hash).
rmSync(outdir, { recursive: true, force: true })
// The gateway's sandbox worker thread (src/gateway/fairness.ts) runs in the gateway image too,
// which has no node_modules: bundled as its own entry (dist/bundle/sandbox-worker.js).
const worker = new URL('../dist/gateway/sandbox-worker.js', import.meta.url).pathname
await build({
  entryPoints: { run: entry, 'sandbox-worker': worker },
  // Two levels below the package root like every dist/<dir>/ module, so the paths modules compute
  // from import.meta.url (../../package.json, ../../seccomp, ../../policies) hold in the bundle too.
  outdir,
  splitting: true,
  chunkNames: 'chunk-[hash]',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  // Dependencies written as CommonJS call require(); an ES module has none of its own.
  // Made on first use: most chunks (the fast exec path's among them) never call it.
  banner: { js: "import { createRequire as __podshellCreateRequire } from 'node:module'; let __podshellRequire; const require = id => (__podshellRequire ??= __podshellCreateRequire(import.meta.url))(id);" },
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
})
