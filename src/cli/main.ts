#!/usr/bin/env node
import module from 'node:module'
import { existsSync } from 'node:fs'
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
// The bundled CLI (scripts/bundle.mjs: dist/bundle/, dependencies included) when the build made
// one: a handful of files to load instead of ~300 modules. A tsc-only build (or a checkout
// mid-development) runs the modules as they are; both run the same code, src/cli/run.ts.
const bundle = new URL('../bundle/run.js', import.meta.url)
await (existsSync(bundle) ? import(bundle.href) : import('./run.js'))
