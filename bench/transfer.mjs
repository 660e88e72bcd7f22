#!/usr/bin/env node
// Upload and download throughput of `podshell sandbox upload|download` against `podman cp` of the
// same tree into/out of the same sandbox's agent container, in the same run. Not a test.
//
//   node bench/transfer.mjs [--runs 3] [--files 10000] [--mb 200]
//
// Must run as an unprivileged user with rootless podman (like the tests). Target: >= 0.8x podman cp.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync, rmSync, mkdtempSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { homedir } from 'node:os'
import { randomBytes } from 'node:crypto'
import { median, opt } from './lib.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const CLI = join(ROOT, 'dist', 'cli', 'main.js')
const RUNS = opt('--runs', 3)
const FILES = opt('--files', 10000)
const MB = opt('--mb', 200)
const env = { ...process.env, PODSHELL_HOME: process.env.PODSHELL_BENCH_HOME ?? join(homedir(), '.local', 'share', 'podshell-bench') }
const { Podman } = await import(join(ROOT, 'dist', 'podman', 'podman.js'))
const runtime = (await Podman.detect({ env })).runtime.runtime

const podman = (...a) => execFileSync('podman', ['--runtime', runtime, ...a], { stdio: ['ignore', 'pipe', 'pipe'] }).toString()
function ps(...a) {
  const r = spawnSync(process.execPath, [CLI, ...a], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.status !== 0) throw new Error(`podshell ${a.join(' ')} failed: ${r.stderr}`)
  return r.stdout.toString()
}
const timed = fn => {
  const t0 = process.hrtime.bigint()
  fn()
  return Number(process.hrtime.bigint() - t0) / 1e9
}

const base = mkdtempSync(join(homedir(), 'podshell-bench-xfer-'))
const src = join(base, 'tree')
const per = Math.floor((MB * 1024 * 1024) / FILES)
const chunk = randomBytes(per) // incompressible, same bytes in every file (neither side compresses)
for (let i = 0; i < FILES; i++) {
  const d = join(src, `d${i % 100}`)
  if (i < 100) mkdirSync(d, { recursive: true })
  writeFileSync(join(d, `f${i}`), chunk)
}
const bytes = per * FILES
const name = `bxfer-${process.pid.toString(36)}`
ps('sandbox', 'create', '--name', name, '--detach')
const agent = `podshell.${name}.agent`
const home = homedir()
const res = { up: [], upCp: [], down: [], downCp: [] }
try {
  for (let r = 0; r < RUNS; r++) {
    res.up.push(timed(() => ps('sandbox', 'upload', name, src, `${home}/up${r}`)))
    res.upCp.push(timed(() => podman('cp', src, `${agent}:${home}/cp${r}`)))
    const d1 = join(base, `down${r}`)
    const d2 = join(base, `downcp${r}`)
    res.down.push(timed(() => ps('sandbox', 'download', name, `${home}/up${r}/tree`, d1)))
    res.downCp.push(timed(() => podman('cp', `${agent}:${home}/cp${r}`, d2)))
    ps('sandbox', 'exec', '-n', name, '--', 'rm', '-rf', `${home}/up${r}`, `${home}/cp${r}`)
    rmSync(d1, { recursive: true, force: true })
    rmSync(d2, { recursive: true, force: true })
  }
} finally {
  ps('sandbox', 'delete', name)
  rmSync(base, { recursive: true, force: true })
}
const mbs = s => bytes / 1024 / 1024 / s
const out = {
  tree: { files: FILES, bytes },
  runs: RUNS,
  upload_MBps: mbs(median(res.up)),
  upload_podman_cp_MBps: mbs(median(res.upCp)),
  download_MBps: mbs(median(res.down)),
  download_podman_cp_MBps: mbs(median(res.downCp)),
}
out.upload_ratio = out.upload_MBps / out.upload_podman_cp_MBps
out.download_ratio = out.download_MBps / out.download_podman_cp_MBps
for (const [k, v] of Object.entries(out)) console.log(`${k}: ${typeof v === 'number' ? v.toFixed(2) : JSON.stringify(v)}`)
