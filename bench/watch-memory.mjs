#!/usr/bin/env node
// Host memory of the host-executed-file watcher for N sandboxes, this tree's watcher daemon (one
// process per data dir) against another build's (--before DIR: a built checkout of an earlier
// commit, e.g. one watcher process per sandbox), in the same run. The watchers are started through
// each build's own runtime hook on sandboxes as the watcher sees them (a state dir, a writable git
// repo with a few hundred files); no container is needed, the watcher never talks to one while idle.
// PSS/USS/RSS of every `_watch --data <dir>` process from /proc/PID/smaps_rollup, 3 s after the
// last start. Written to bench/results/watch-memory.json.
//
//   node bench/watch-memory.mjs --n 10 --before /tmp/before
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { homedir, loadavg } from 'node:os'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const arg = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d)
const N = Number(arg('--n', 10))
const BEFORE = arg('--before', undefined)
const builds = { after: ROOT, ...(BEFORE ? { before: BEFORE } : {}) }

mkdirSync(join(homedir(), 'podshell-bench'), { recursive: true })
const base = mkdtempSync(join(homedir(), 'podshell-bench', 'wmem-'))
const round = x => Math.round(x * 100) / 100

function watchers(data) {
  let pss = 0
  let uss = 0
  let rss = 0
  let n = 0
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'latin1').split('\0')
      const i = cmd.indexOf('_watch')
      if (i < 0 || cmd[i + 2] !== data) continue
      const roll = readFileSync(`/proc/${p}/smaps_rollup`, 'utf8')
      const kb = k => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(roll)?.[1] ?? 0)
      pss += kb('Pss')
      uss += kb('Private_Clean') + kb('Private_Dirty')
      rss += kb('Rss')
      n++
    } catch {
      // gone
    }
  }
  return { processes: n, pss_mb: round(pss / 1024), uss_mb: round(uss / 1024), rss_mb: round(rss / 1024) }
}

const results = { date: new Date().toISOString(), sandboxes: N, load_before: loadavg().map(round) }
const made = []
try {
  for (const [label, root] of Object.entries(builds)) {
    const { watchHook } = await import(pathToFileURL(join(root, 'dist', 'watch', 'lifecycle.js')).href)
    const data = join(base, `${label}-data`)
    for (let i = 0; i < N; i++) {
      const name = `wm-${label}-${i}`
      const tree = join(base, `${name}-tree`)
      mkdirSync(join(tree, 'src'), { recursive: true })
      spawnSync('git', ['init', '-q', tree])
      for (let f = 0; f < 300; f++) writeFileSync(join(tree, 'src', `f${f}.ts`), `export const x${f} = ${f}\n`)
      mkdirSync(join(data, 'sandboxes', name), { recursive: true })
      await watchHook(data, name, 'create', { mounts: [{ source: tree, mode: 'rw' }], env: { ...process.env, PODSHELL_HOME: data } })
      made.push({ watchHook, data, name })
    }
    spawnSync('sleep', ['3'])
    const w = watchers(data)
    results[label] = { ...w, per_sandbox_pss_mb: round(w.pss_mb / N), per_sandbox_uss_mb: round(w.uss_mb / N) }
  }
  results.load_after = loadavg().map(round)
} finally {
  for (const m of made) await m.watchHook(m.data, m.name, 'delete', {})
  rmSync(base, { recursive: true, force: true })
}
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
writeFileSync(join(ROOT, 'bench', 'results', 'watch-memory.json'), JSON.stringify(results, null, 2) + '\n')
console.log(JSON.stringify(results, null, 2))
