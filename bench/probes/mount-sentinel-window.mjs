// (node bench/probes/mount-sentinel-window.mjs [runs], from the repository root, as the unprivileged
// user, after `npm run build`.) How long a protection the HOST detaches stays detached while the
// mount sentinel (src/watch/mount-sentinel.ts) is running: a development sandbox on a repo whose
// `.mcp.json` is a read-only bind; the host saves `.mcp.json` the way its tools do (temp file +
// rename; same content), which detaches the bind. Measured per run, from just before the rename:
//   stop  — until the agent's main process is in state T (polled from the host in a tight loop):
//           the window in which the agent runs with the protection gone;
//   fixed — until the sentinel's watch.log line says the bind was made again (ms resolution).
// Prints median/p90/p99/max and the load average. Uses its own PODSHELL_HOME under the tmp dir.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, mkdirSync, readFileSync, renameSync, writeFileSync, rmSync } from 'node:fs'
import { homedir, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'

const runs = Number(process.argv[2] ?? 30)
const cli = join(process.cwd(), 'dist', 'cli', 'main.js')
const env = { ...process.env, PODSHELL_HOME: process.env.PODSHELL_HOME ?? join(homedir(), '.local', 'share', 'podshell-test') }
const run = (args, o = {}) =>
  execFileSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...o })
mkdirSync(join(homedir(), 'podshell-e2e'), { recursive: true })
const repo = mkdtempSync(join(homedir(), 'podshell-e2e', 'window-'))
writeFileSync(join(repo, '.mcp.json'), '{"mcpServers":{}}\n')
const name = `window-${process.pid.toString(36)}`
void tmpdir
run(['sandbox', 'create', '--name', name, '--workdir', repo, '--session-type', 'development', '--detach'])
const log = join(env.PODSHELL_HOME, 'quarantine', name, 'watch.log')
const lines = () => {
  try {
    return readFileSync(log, 'utf8')
      .split('\n')
      .filter(l => l.includes('mount sentinel') && l.includes('made again'))
  } catch {
    return []
  }
}
const podman = args => execFileSync('podman', ['--runtime', process.env.PODSHELL_RUNTIME ?? 'runc', ...args], { encoding: 'utf8' }).trim()
const state = pid => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1][0]
const stops = []
const fixes = []
const sleep = ms => new Promise(r => setTimeout(r, ms))
try {
  const pid = Number(podman(['container', 'inspect', '--format', '{{.State.Pid}}', `podshell.${name}.agent`]))
  await sleep(8000) // the sentinel looks the agent's pid up ahead of time (backoff from 1 s)
  for (let i = 0; i < runs; i++) {
    const seen = lines().length
    const f = join(repo, '.mcp.json')
    // The agent must be running before the replace (the previous round resumed it).
    for (let w = 0; w < 500 && state(pid) === 'T'; w++) await sleep(10)
    // Same content: the watcher's quarantine (which restores a CHANGED .mcp.json) stays out of it.
    writeFileSync(`${f}.tmp`, '{"mcpServers":{}}\n')
    // Taken before the rename: a probe preempted right after it (the watcher waking up) would
    // otherwise start its clock late and measure ~0.
    const t0 = performance.now()
    const e0 = Date.now()
    renameSync(`${f}.tmp`, f)
    let stop
    while (performance.now() - t0 < 3000) {
      if (state(pid) === 'T') {
        stop = performance.now() - t0
        break
      }
    }
    let fixed
    for (let w = 0; w < 250 && fixed === undefined; w++) {
      const l = lines()
      if (l.length > seen) fixed = Date.parse(l[l.length - 1].split(' ')[0]) - e0
      else await sleep(20)
    }
    if (stop !== undefined) stops.push(stop)
    if (fixed !== undefined) fixes.push(fixed)
    await sleep(400)
  }
} finally {
  try {
    run(['sandbox', 'delete', name])
  } catch {
    // reported by podshell
  }
  rmSync(repo, { recursive: true, force: true })
}
const q = (a, p) => {
  const s = [...a].sort((x, y) => x - y)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const fmt = a =>
  a.length
    ? `n=${a.length} p50 ${q(a, 50).toFixed(1)} ms, p90 ${q(a, 90).toFixed(1)}, p99 ${q(a, 99).toFixed(1)}, max ${Math.max(...a).toFixed(1)}`
    : 'n=0'
console.log(
  `load average ${loadavg()
    .map(x => x.toFixed(2))
    .join(' ')}; ${runs} host replaces of .mcp.json`,
)
console.log(`host rename → agent stopped (the window): ${fmt(stops)}`)
console.log(`host rename → read-only bind made again (logged): ${fmt(fixes)}`)
