// Bundles the CLI (dist/cli/run.js and everything it imports, dependencies included) into
// dist/bundle/: run.js plus chunks, split at run.js's dynamic imports. The fast `sandbox exec`
// path (src/cli/fast-exec.ts) is built apart as one file, dist/bundle/fast-exec.js: split, it
// was ten modules (each resolved, read and linked in turn) for 26 kB of code. Its two rarer
// branches load the split bundle's entries program.js and audit.js. dist/cli/main.js loads
// dist/bundle/run.js when present.
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
const common = {
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
}
const dist = new URL('../dist/', import.meta.url).pathname
// Modules the one-file fast path imports dynamically: entries of the split bundle, same dir.
const fastExecDynamic = { './program.js': './program.js', '../gateway/audit.js': './audit.js' }
await build({
  ...common,
  entryPoints: [entry, `${dist}cli/program.js`, `${dist}gateway/audit.js`, worker],
  // Two levels below the package root like every dist/<dir>/ module, so the paths modules compute
  // from import.meta.url (../../package.json, ../../seccomp, ../../policies) hold in the bundle too.
  outdir,
  entryNames: '[name]',
  splitting: true,
  chunkNames: 'chunk-[hash]',
  plugins: [
    {
      name: 'fast-exec-apart',
      setup(b) {
        b.onResolve({ filter: /^\.\/fast-exec\.js$/ }, () => ({ path: './fast-exec.js', external: true }))
      },
    },
  ],
})
await build({
  ...common,
  entryPoints: [`${dist}cli/fast-exec.js`],
  outfile: `${outdir}/fast-exec.js`,
  plugins: [
    {
      name: 'fast-exec-dynamic',
      setup(b) {
        b.onResolve({ filter: /^\./ }, a => {
          if (a.kind !== 'dynamic-import') return undefined
          const to = fastExecDynamic[a.path]
          // Inlined, a dynamic import would put its whole module graph into every exec's load.
          if (!to) return { errors: [{ text: `${a.path} (imported by ${a.importer}) is not an entry of the split bundle: add it to fastExecDynamic and to the first build's entries` }] }
          return { path: to, external: true }
        })
      },
    },
  ],
})
