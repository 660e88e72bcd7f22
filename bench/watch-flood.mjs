#!/usr/bin/env node
// One sandbox flooding the watcher must not stop it from protecting another: time from a host
// write of `core.fsmonitor` into sandbox B's `.git/config` to the watcher having removed it, while
// sandbox A's tree gets files created (and removed) in a tight loop, and without the flood.
//
//   shared:   A and B in ONE data dir: one watcher daemon serves both (what podshell does);
//   separate: A and B in two data dirs: one watcher process each (what it did before the daemon).
// Modes interleaved per round; p50/p99 of T trials each (default 40). The watcher is the real one
// (dist/, started through the runtime's own hook); no container is needed: a write on the host
// tree is the same inotify event as the agent's write through the bind mount. Every fix must be
// recorded in B's own quarantine log, never A's. Written to bench/results/watch-flood.json.
//
//   node bench/watch-flood.mjs [--trials 40] [--flood files|dirs] [--flooders 2] [--warm-ms 1000]
// (flooders: processes creating files in A at once; warm-ms: how long they run before the plant)
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { homedir, loadavg } from 'node:os'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const arg = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d)
const T = Number(arg('--trials', 40))
const FLOOD = arg('--flood', 'files')
const FLOODERS = Number(arg('--flooders', 2))
const WARM_MS = Number(arg('--warm-ms', 1000))
const { watchHook } = await import(pathToFileURL(join(ROOT, 'dist', 'watch', 'lifecycle.js')).href)

mkdirSync(join(homedir(), 'podshell-bench'), { recursive: true })
const base = mkdtempSync(join(homedir(), 'podshell-bench', 'flood-'))
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}
const round = x => Math.round(x * 100) / 100

/** A sandbox as the watcher sees it: a state dir and one writable root (a git repo for B). */
async function sandbox(data, name, git) {
  const root = join(base, `${name}-tree`)
  mkdirSync(root, { recursive: true })
  if (git) spawnSync('git', ['init', '-q', root])
  mkdirSync(join(data, 'sandboxes', name), { recursive: true })
  await watchHook(data, name, 'create', { mounts: [{ source: root, mode: 'rw' }], env: { ...process.env, PODSHELL_HOME: data } })
  return root
}

const PLANT = `[core]\n\trepositoryformatversion = 0\n\tfsmonitor = touch /tmp/podshell-flood-ran #\n`
/** One trial: plant, then poll (0.2 ms) until the watcher has rewritten the file. */
async function trial(bRoot) {
  const cfg = join(bRoot, '.git', 'config')
  const t0 = performance.now()
  writeFileSync(cfg, PLANT)
  for (;;) {
    if (!readFileSync(cfg, 'utf8').includes('fsmonitor')) return performance.now() - t0
    if (performance.now() - t0 > 60_000) return Infinity
    await new Promise(r => setTimeout(r, 0.2))
  }
}

const FLOODER = `
const fs = require('fs'); const d = process.argv[1]; let i = 0
for (;;) {
  const p = d + '/f' + (i % 4096)
  if (${JSON.stringify(FLOOD)} === 'dirs') { try { fs.mkdirSync(p) } catch { fs.rmdirSync(p) } }
  else { fs.writeFileSync(p, 'x'); if (i % 2) fs.unlinkSync(p) }
  i++
}`

const setups = {}
const results = { date: new Date().toISOString(), trials: T, flood: FLOOD, flooders: FLOODERS, warm_ms: WARM_MS, load_before: loadavg().map(round) }
try {
  for (const mode of ['shared', 'separate']) {
    const dA = join(base, `${mode}-data`)
    const dB = mode === 'shared' ? dA : join(base, `${mode}-data-b`)
    const a = await sandbox(dA, `${mode}-a`, false)
    const b = await sandbox(dB, `${mode}-b`, true)
    mkdirSync(join(a, 'flood'))
    setups[mode] = { dA, dB, a, b }
  }
  const lat = { shared: { idle: [], flood: [] }, separate: { idle: [], flood: [] } }
  let floodRate
  for (let i = 0; i < T; i++) {
    for (const mode of i % 2 ? ['separate', 'shared'] : ['shared', 'separate']) {
      const s = setups[mode]
      lat[mode].idle.push(await trial(s.b))
      const fs = Array.from({ length: FLOODERS }, (_, k) => {
        mkdirSync(join(s.a, 'flood', String(k)), { recursive: true })
        return spawn(process.execPath, ['-e', FLOODER, join(s.a, 'flood', String(k))], { stdio: 'ignore' })
      })
      await new Promise(r => setTimeout(r, WARM_MS)) // the flood under way (a backlog builds up)
      lat[mode].flood.push(await trial(s.b))
      for (const f of fs) f.kill('SIGKILL')
      await Promise.all(fs.map(f => new Promise(r => f.on('exit', r))))
      await new Promise(r => setTimeout(r, 200)) // the backlog drained
    }
  }
  // How fast the flooder goes here (events per second the watcher must absorb).
  {
    const dir = join(base, 'rate')
    mkdirSync(dir)
    const f = spawn(process.execPath, ['-e', FLOODER.replace('for (;;) {', 'const end = Date.now() + 1000; for (; Date.now() < end;) {') + ';console.log(i)', dir], { stdio: ['ignore', 'pipe', 'ignore'] })
    let o = ''
    f.stdout.on('data', d => (o += d))
    await new Promise(r => f.on('exit', r))
    floodRate = Number(o.trim())
  }
  for (const mode of ['shared', 'separate']) {
    results[mode] = {}
    for (const k of ['idle', 'flood']) {
      const xs = lat[mode][k]
      results[mode][k] = { p50_ms: round(pct(xs, 50)), p99_ms: round(pct(xs, 99)), max_ms: round(Math.max(...xs)), never: xs.filter(x => x === Infinity).length }
    }
    // Every fix in B's own log, none in A's.
    const s = setups[mode]
    const log = (d, n) => (existsSync(join(d, 'quarantine', n, 'watch.log')) ? readFileSync(join(d, 'quarantine', n, 'watch.log'), 'utf8') : '')
    results[mode].fixes_in_b_log = log(s.dB, `${mode}-b`).split('\n').filter(l => l.includes('fsmonitor')).length
    results[mode].fixes_in_a_log = log(s.dA, `${mode}-a`).split('\n').filter(l => l.includes('fsmonitor')).length
  }
  results.flood_operations_per_s = floodRate
  results.load_after = loadavg().map(round)
} finally {
  for (const mode of Object.keys(setups)) {
    const s = setups[mode]
    await watchHook(s.dA, `${mode}-a`, 'delete', {})
    await watchHook(s.dB, `${mode}-b`, 'delete', {})
  }
  rmSync(base, { recursive: true, force: true })
}
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
writeFileSync(join(ROOT, 'bench', 'results', 'watch-flood.json'), JSON.stringify(results, null, 2) + '\n')
console.log(JSON.stringify(results, null, 2))
