#!/usr/bin/env node
// The host-executed-file watcher's residual window: time from the agent creating a file that host
// tools run (inside a real rootless sandbox) to the watcher having moved it aside. p50/p99 over
// N creations (default 200) of `.envrc` and `.git` files, spaced (an agent writing files one by one)
// and in a burst (a loop as fast as bash goes). Written to bench/results/watch.json.
//
// Creation time: bash's $EPOCHREALTIME (µs, no fork) written INTO the file as it is created, by the
// agent inside the sandbox; quarantine time: the OCSF finding's `time` (ms, written right after the
// rename). Container and host share the kernel's realtime clock. Resolution: 1 ms.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { homedir } from 'node:os'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const CLI = join(ROOT, 'dist', 'cli', 'main.js')
const args = process.argv.slice(2)
const N = Number(args[args.indexOf('--n') + 1]) || 200
const DATA = process.env.PODSHELL_BENCH_HOME ?? join(homedir(), '.local', 'share', 'podshell-bench')
const env = { ...process.env, PODSHELL_HOME: DATA }

function ps(...a) {
  const r = spawnSync(process.execPath, [CLI, ...a], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.status !== 0) throw new Error(`podshell ${a.join(' ')} failed: ${r.stderr}`)
  return r.stdout.toString()
}
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]
}

mkdirSync(join(homedir(), 'podshell-bench'), { recursive: true })
const repo = mkdtempSync(join(homedir(), 'podshell-bench', 'watch-'))
spawnSync('git', ['init', '-q', repo])
const name = `bench-watch-${process.pid.toString(36)}`.slice(0, 19)
ps('sandbox', 'create', '--name', name, '--detach', '--no-tty', '--workdir', repo)
const results = { date: new Date().toISOString(), creations_per_mode: N }
try {
  for (const mode of ['spaced', 'burst']) {
    const pause = mode === 'spaced' ? 'sleep 0.02;' : ''
    // Directories first (not host-executed), so only the file creation is timed.
    const script = `cd ${repo} && mkdir -p ${mode} && cd ${mode} && for i in $(seq 1 ${N}); do mkdir d$i; done; ` +
      `for i in $(seq 1 ${N}); do ${pause} if [ $((i % 2)) = 0 ]; then printf '%s' "$EPOCHREALTIME" > d$i/.envrc; else printf 'gitdir: %s' "$EPOCHREALTIME" > d$i/.git; fi; done; echo done`
    const r = spawnSync(process.execPath, [CLI, 'sandbox', 'exec', '-n', name, '--no-tty', '--', 'bash', '-c', script], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    if (!r.stdout.toString().includes('done')) throw new Error('the creating loop failed')
    // Let the watcher finish, then pair each finding with the creation time in the saved file.
    spawnSync('sleep', ['2'])
    const audit = readFileSync(join(DATA, 'gateway', 'sandboxes', name, 'audit', 'ocsf.jsonl'), 'utf8').trim().split('\n').map(l => JSON.parse(l))
    const lat = []
    let missed = 0
    for (const f of audit) {
      if (f.class_uid !== 2004 || !f.resources?.[0]?.name?.includes(`/${mode}/d`)) continue
      const saved = f.unmapped?.saved_to
      if (!saved) continue
      const t = Number(readFileSync(saved, 'utf8').replace('gitdir: ', '').trim().replace(',', '.'))
      lat.push(f.time - t * 1000)
    }
    const left = readdirSync(join(repo, mode)).filter(d => readdirSync(join(repo, mode, d)).length > 0)
    missed = left.length
    results[mode] = {
      quarantined: lat.length,
      not_quarantined: missed,
      p50_ms: pct(lat, 50),
      p90_ms: pct(lat, 90),
      p99_ms: pct(lat, 99),
      max_ms: Math.max(...lat),
    }
    process.stderr.write(`watch ${mode}: ${JSON.stringify(results[mode])}\n`)
  }
} finally {
  spawnSync(process.execPath, [CLI, 'sandbox', 'delete', name], { env })
  rmSync(repo, { recursive: true, force: true })
  rmSync(join(DATA, 'quarantine', name), { recursive: true, force: true })
}
const round = o => JSON.parse(JSON.stringify(o, (_, v) => (typeof v === 'number' ? Math.round(v * 100) / 100 : v)))
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
writeFileSync(join(ROOT, 'bench', 'results', 'watch.json'), JSON.stringify(round(results), null, 2) + '\n')
console.log(JSON.stringify(round(results), null, 2))
