#!/usr/bin/env node
// Host memory of idle sandboxes: what each sandbox adds beyond its agent's own processes.
//
//   node bench/memory.mjs            10 idle sandboxes (N=10)
//   node bench/memory.mjs --n 50     50 (the target: 50 Ready at once, each answering exec
//                                    and egress)
//
// Every process of this user is read from /proc/PID/smaps_rollup (PSS: shared pages divided among
// the processes that map them; USS: private pages) and put in one category: per sandbox its
// conmons, infra (catatonit), bridge and agent container processes; shared ones: the gateway (its
// container, conmon, slirp4netns/pasta, rootlessport), podshell's watcher daemon, podman's pause
// process. The per-sandbox figure is the growth between 1 and N sandboxes divided by N-1, so the
// shared processes' growth (the gateway's per-sandbox state, the daemon's per-sandbox watch) is
// counted in it. Then every sandbox runs `sandbox exec -- true` and an allowed GET through the
// gateway to an upstream on this host. Written to bench/results/memory.json.
//
// Run as an unprivileged user with rootless podman, inside the test network namespace (the upstream
// listens on PODSHELL_TEST_ADDR, default 198.18.0.2).
import { execFile, spawnSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { homedir, loadavg } from 'node:os'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const CLI = join(ROOT, 'dist', 'cli', 'main.js')
const args = process.argv.slice(2)
const N = Number(args[args.indexOf('--n') + 1]) || 10
const HOST = process.env.PODSHELL_TEST_ADDR ?? '198.18.0.2'
const DATA = process.env.PODSHELL_BENCH_HOME ?? join(homedir(), '.local', 'share', 'podshell-bench')
const env = { ...process.env, PODSHELL_HOME: DATA }
const UID = process.getuid()

function ps(...a) {
  const r = spawnSync(process.execPath, [CLI, ...a], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.status !== 0) throw new Error(`podshell ${a.join(' ')} failed: ${r.stderr}`)
  return r.stdout.toString()
}

/** Every process of this user: pid, ppid, comm, cmdline, PSS/USS/RSS in kB. */
function processes() {
  const out = new Map()
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue
    try {
      const status = readFileSync(`/proc/${p}/status`, 'utf8')
      if (Number(/^Uid:\s+(\d+)/m.exec(status)[1]) !== UID) continue
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const roll = readFileSync(`/proc/${p}/smaps_rollup`, 'utf8')
      const kb = k => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(roll)?.[1] ?? 0)
      out.set(Number(p), {
        pid: Number(p),
        ppid: Number(rest[1]),
        comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
        cmd: readFileSync(`/proc/${p}/cmdline`, 'latin1').split('\0'),
        pss: kb('Pss'),
        uss: kb('Private_Clean') + kb('Private_Dirty'),
        rss: kb('Rss'),
      })
    } catch {
      // gone meanwhile, or a kernel thread
    }
  }
  return out
}

// Only this run's processes are counted (the machine may run other podshell data dirs, e.g. the
// e2e suite): sandboxes named mem-<tag>-*, this data dir's gateway and its helper, this data dir's
// watcher daemon; everything else is `other:`.
const { gatewayContainerName } = await import(join(ROOT, 'dist', 'gateway', 'lifecycle.js'))
const GATEWAY = gatewayContainerName(DATA, env)
let gatewayNetns = ''
const TAG = process.pid.toString(36)
const ours = c => c === GATEWAY || c.includes(`.mem-${TAG}-`) || c.includes(`mem-${TAG}-`)

/** Category of each process: `sandbox:<part>` or `shared:<part>`. */
function classify(procs) {
  const byConmon = new Map() // conmon pid → container name
  for (const p of procs.values()) {
    if (p.comm !== 'conmon') continue
    const i = p.cmd.indexOf('-n')
    byConmon.set(p.pid, i >= 0 ? p.cmd[i + 1] : '?')
  }
  const containerOf = p => {
    for (let q = p, hops = 0; q && hops < 64; q = procs.get(q.ppid), hops++) if (byConmon.has(q.pid)) return byConmon.get(q.pid)
    return undefined
  }
  const part = c => {
    if (/^podshell\.[^.]+\.agent$/.test(c)) return 'agent'
    if (/^podshell\.[^.]+\.bridge$/.test(c)) return 'bridge'
    if (/-infra$|^podshell\.[^.]+\.infra$/.test(c) || !c.startsWith('podshell')) return 'infra'
    return 'gateway'
  }
  const sum = new Map()
  const add = (k, p) => {
    const s = sum.get(k) ?? { pss: 0, uss: 0, rss: 0, n: 0 }
    s.pss += p.pss
    s.uss += p.uss
    s.rss += p.rss
    s.n++
    sum.set(k, s)
  }
  for (const p of procs.values()) {
    if (p.pid === process.pid) continue
    const line = p.cmd.join(' ')
    if (p.comm === 'conmon') {
      const c = byConmon.get(p.pid)
      if (!ours(c)) add('other:foreign conmon', p)
      else add(c === GATEWAY ? 'shared:gateway conmon' : 'sandbox:conmon', p)
      continue
    }
    const c = containerOf(p)
    if (c) {
      if (!ours(c)) add('other:foreign container', p)
      else add(c === GATEWAY ? 'shared:gateway container' : `sandbox:${part(c)}`, p)
    } else if (line.includes(' _watch ')) add(line.includes(`--data ${DATA} `) ? 'shared:watcher daemon' : 'other:foreign watcher', p)
    else if (p.comm === 'slirp4netns' || p.comm === 'pasta' || p.comm === 'pasta.avx2') add(gatewayNetns && p.cmd.includes(gatewayNetns) ? 'shared:gateway slirp4netns/pasta' : 'other:foreign helper', p)
    else if (p.comm === 'rootlessport' || p.comm === 'exe') add('shared:gateway rootlessport', p)
    else if (/catatonit/.test(line) && line.includes('-P')) add('shared:podman pause', p)
    else add(`other:${p.comm}`, p)
  }
  return sum
}

const mb = kb => Math.round((kb / 1024) * 100) / 100
const snapshot = () => {
  const s = classify(processes())
  return Object.fromEntries([...s.entries()].sort().map(([k, v]) => [k, { pss_mb: mb(v.pss), uss_mb: mb(v.uss), rss_mb: mb(v.rss), processes: v.n }]))
}

// An upstream on this host the sandboxes may reach (allowed by their policy).
const server = createServer((_q, r) => r.end('upstream-ok'))
await new Promise(res => server.listen(0, HOST, res))
const port = server.address().port
mkdirSync(join(homedir(), 'podshell-bench'), { recursive: true })
const dir = mkdtempSync(join(homedir(), 'podshell-bench', 'mem-'))
const policy = join(dir, 'policy.yaml')
writeFileSync(policy, `version: 1\nnetwork_policies:\n  up:\n    name: up\n    endpoints:\n      - host: ${HOST}\n        port: ${port}\n`)

const tag = TAG
const names = []
const results = { date: new Date().toISOString(), sandboxes: N, load_before: loadavg().map(x => Math.round(x * 100) / 100) }
const settle = () => spawnSync('sleep', ['3'])
try {
  const create = i => {
    const name = `mem-${tag}-${i}`
    ps('sandbox', 'create', '--name', name, '--detach', '--no-tty', '--policy', policy, '--workdir', dir)
    names.push(name)
  }
  create(0)
  gatewayNetns = spawnSync('podman', ['container', 'inspect', '--format', '{{.NetworkSettings.SandboxKey}}', GATEWAY], { env }).stdout.toString().trim()
  settle()
  const one = snapshot()
  for (let i = 1; i < N; i++) create(i)
  settle()
  const many = snapshot()
  const per = {}
  for (const k of new Set([...Object.keys(one), ...Object.keys(many)])) {
    if (k.startsWith('other:')) continue
    const a = one[k]?.pss_mb ?? 0
    const b = many[k]?.pss_mb ?? 0
    const ua = one[k]?.uss_mb ?? 0
    const ub = many[k]?.uss_mb ?? 0
    per[k] = { pss_mb: Math.round(((b - a) / (N - 1)) * 100) / 100, uss_mb: Math.round(((ub - ua) / (N - 1)) * 100) / 100 }
  }
  const beyond = Object.entries(per).filter(([k]) => k !== 'sandbox:agent')
  results.at_1 = one
  results[`at_${N}`] = many
  results.per_sandbox = per
  results.per_sandbox_beyond_agent_pss_mb = Math.round(beyond.reduce((s, [, v]) => s + v.pss_mb, 0) * 100) / 100
  results.per_sandbox_beyond_agent_uss_mb = Math.round(beyond.reduce((s, [, v]) => s + v.uss_mb, 0) * 100) / 100
  // Each sandbox still answers exec and egress.
  let execOk = 0
  let egressOk = 0
  const get = `import http.client; p = http.client.HTTPConnection('127.0.0.1', 3128, timeout=15); p.request('GET', 'http://${HOST}:${port}/ok'); r = p.getresponse(); print(r.status, r.read().decode())`
  // Asynchronous: the upstream is served by this process's event loop.
  const run = promisify(execFile)
  for (const name of names) {
    if (await run(process.execPath, [CLI, 'sandbox', 'exec', '-n', name, '--no-tty', '--', 'true'], { env }).then(() => true, () => false)) execOk++
    const g = await run(process.execPath, [CLI, 'sandbox', 'exec', '-n', name, '--no-tty', '--', 'python3', '-c', get], { env }).catch(e => e)
    if (String(g.stdout).includes('200 upstream-ok')) egressOk++
    else if (results.egress_errors === undefined) results.egress_errors = String(g.stderr ?? g).slice(0, 300)
  }
  results.exec_ok = execOk
  results.egress_ok = egressOk
  const slirp = Object.entries(snapshot()).find(([k]) => k.includes('slirp'))
  results.gateway_helper_after_egress = slirp?.[1]
  results.load_after = loadavg().map(x => Math.round(x * 100) / 100)
} finally {
  for (let i = 0; i < names.length; i += 10) spawnSync(process.execPath, [CLI, 'sandbox', 'delete', ...names.slice(i, i + 10)], { env, stdio: 'ignore' })
  server.close()
}
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
writeFileSync(join(ROOT, 'bench', 'results', 'memory.json'), JSON.stringify(results, null, 2) + '\n')
console.log(JSON.stringify(results, null, 2))
