#!/usr/bin/env node
// `ssh -F <ssh-config> HOST true` (ProxyCommand podshell → podman exec -i → sshd -i) against
// `podman exec` of the same command in the same sandbox, and `podshell sandbox exec`, all measured
// in this run: medians of --runs N (default 10). Prints a JSON line. Run as an unprivileged user
// with rootless podman, after `npm run build`:   node bench/ssh.mjs [--runs N]
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { homedir, tmpdir, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { median } from './lib.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const CLI = join(ROOT, 'dist', 'cli', 'main.js')
const args = process.argv.slice(2)
const RUNS = Number(args[args.indexOf('--runs') + 1]) || 10
const env = { ...process.env, PODSHELL_HOME: process.env.PODSHELL_BENCH_HOME ?? join(homedir(), '.local', 'share', 'podshell-bench') }
const name = `sshbench-${process.pid.toString(36)}`
function ps(...a) {
  const r = spawnSync(process.execPath, [CLI, ...a], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.status !== 0) throw new Error(`podshell ${a.join(' ')} failed: ${r.stderr}`)
  return r.stdout.toString()
}
function timeMs(argv) {
  const t = process.hrtime.bigint()
  const r = spawnSync(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`)
  return Number(process.hrtime.bigint() - t) / 1e6
}
const dir = mkdtempSync(join(tmpdir(), 'podshell-sshbench-'))
ps('sandbox', 'create', '--name', name, '--detach')
try {
  const conf = join(dir, 'ssh_config')
  writeFileSync(conf, ps('sandbox', 'ssh-config', name))
  const runtime = JSON.parse(execFileSync('podman', ['info', '--format', 'json']).toString()).host.ociRuntime.name
  const cases = {
    podman_exec: ['podman', '--runtime', runtime, 'exec', `podshell.${name}.agent`, 'true'],
    podshell_exec: [process.execPath, CLI, 'sandbox', 'exec', '-n', name, '--', 'true'],
    ssh: ['ssh', '-F', conf, `openshell-${name}.default`, 'true'],
  }
  for (const argv of Object.values(cases)) timeMs(argv) // warm-up
  const t = Object.fromEntries(Object.keys(cases).map(k => [k, []]))
  for (let i = 0; i < RUNS; i++) for (const [k, argv] of Object.entries(cases)) t[k].push(timeMs(argv))
  const m = Object.fromEntries(Object.entries(t).map(([k, xs]) => [k, Math.round(median(xs))]))
  console.log(JSON.stringify({ runs: RUNS, loadavg: loadavg().map(x => x.toFixed(2)), median_ms: m, ssh_over_podman_exec: (m.ssh / m.podman_exec).toFixed(2) }))
} finally {
  ps('sandbox', 'delete', name)
  rmSync(dir, { recursive: true, force: true })
}
