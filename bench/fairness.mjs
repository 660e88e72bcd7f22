#!/usr/bin/env node
// Per-sandbox fairness of the gateway (not a test: prints medians, writes bench/results/fairness.json).
//
//   npm run build && node bench/fairness.mjs [--samples 300] [--runs 3] [--flood 64] [--in-flight N] [--contended N] [--no-contention]
//
// No podman: two sandboxes' proxies (SandboxProxy, default limits, so each has its own admission:
// src/gateway/http/admission.ts) on the main thread, alone on its event loop as in the gateway
// container; the upstream (127.0.0.1), sandbox A's flooding client and sandbox B's client each run
// in their own worker thread, so client work never sits on the gateway's loop. Measured in the
// same run:
//
//   alone    sandbox B's normal request (GET /repos/o/r/issues under L7 rules), sequential, p50/p99
//   floor    the same while `--hogs` worker threads (default 2) spin the CPU without touching the
//            gateway: pure CPU contention on this machine, which the gateway cannot beat
//   flooded  the same while sandbox A keeps `--flood` connections busy with worst-case requests:
//            targets just under the 8 KiB bound (`/repos` + `/issues` x 1,150), each matched against
//            the L7 rules, plus requests beyond the bound (414) and a queue beyond A's admission (503)
//
// The ratio flooded/alone is the figure; one event loop serves both sandboxes, so what admission
// bounds is A's concurrency (and so its share of the loop), not its existence.
import { createServer, request, Agent } from 'node:http'
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads'
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const opt = (k, d) => (args.includes(k) ? Number(args[args.indexOf(k) + 1]) : d)
const SAMPLES = opt('--samples', 300)
const RUNS = opt('--runs', 3)
const FLOOD = opt('--flood', 64)
// Per-sandbox admission (ProxyLimits.maxInFlight); default: the gateway's default.
const IN_FLIGHT = args.includes('--in-flight') ? opt('--in-flight', 0) : undefined
// In-flight cap while another sandbox is active (ProxyLimits.contendedInFlight); default: the gateway's.
const CONTENDED = args.includes('--contended') ? opt('--contended', 0) : undefined
// --workers: each sandbox's proxy in its own worker thread; --flooder-nice N lowers A's thread.
const WORKERS = args.includes('--workers')
const { SandboxProxy } = await import(join(ROOT, 'dist', 'gateway', 'proxy.js'))
const { PolicyEngine } = await import(join(ROOT, 'dist', 'gateway', 'policy-engine.js'))
const { AuditLog } = await import(join(ROOT, 'dist', 'gateway', 'audit.js'))
const { parseIp } = await import(join(ROOT, 'dist', 'gateway', 'address.js'))
// The gateway's shared record of active sandboxes (src/gateway/http/admission.ts), as Gateway
// passes it to every proxy; --no-contention measures without it (each sandbox alone).
const { Contention } = await import(join(ROOT, 'dist', 'gateway', 'http', 'admission.js'))
const contention = Contention && !args.includes('--no-contention') ? new Contention() : undefined
const { parsePolicyText } = await import(join(ROOT, 'dist', 'policy', 'parse.js'))
const { sandboxAuditDir } = await import(join(ROOT, 'dist', 'config', 'paths.js'))

const note = m => process.stderr.write(`[fairness] ${m}\n`)
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const median = xs => pct(xs, 50)


function get(sock, port, path, agent) {
  return new Promise(resolve => {
    const t0 = process.hrtime.bigint()
    const req = request({ socketPath: sock, agent, method: 'GET', path: `http://api.test:${port}${path}`, headers: { Host: `api.test:${port}` } }, res => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode, ms: Number(process.hrtime.bigint() - t0) / 1e6 }))
    })
    req.on('error', () => resolve({ status: 0, ms: Number(process.hrtime.bigint() - t0) / 1e6 }))
    req.end()
  })
}

const proxies = []
async function makeProxy(name, data, policy) {
  const engine = PolicyEngine.compile(parsePolicyText(policy, 'bench').policy)
  mkdirSync(sandboxAuditDir(data, name), { recursive: true })
  const p = new SandboxProxy({
    sandbox: name,
    engine: () => engine,
    policyVersion: () => 1,
    // --flooder-no-audit: sandbox A's audit records are not written (an experiment: how much of
    // B's delay is A's synchronous audit I/O on the shared loop).
    audit: name === 'flooder' && args.includes('--flooder-no-audit') ? new Proxy({}, { get: () => () => {} }) : AuditLog.forSandbox(data, name),
    resolve: async () => [parseIp('127.0.0.1')],
    permitAddress: ip => ip.text === '127.0.0.1',
    limits: { ...(IN_FLIGHT !== undefined ? { maxInFlight: IN_FLIGHT } : {}), ...(CONTENDED !== undefined ? { contendedInFlight: CONTENDED } : {}) },
    // Shared record of active sandboxes: only on one thread (with --workers each sandbox is alone).
    contention: WORKERS ? undefined : contention,
  })
  const sock = join(data, `${name}.sock`)
  await p.listen(sock)
  proxies.push(p)
  return sock
}
const worst = '/repos' + '/issues'.repeat(1150)
const over = '/repos' + '/issues'.repeat(1400)

if (!isMainThread) {
  const w = workerData
  if (w.role === 'upstream') {
    const upstream = createServer((req, res) => {
      req.resume()
      req.on('end', () => res.end('ok'))
    })
    upstream.listen(0, '127.0.0.1', () => parentPort.postMessage(upstream.address().port))
    parentPort.on('message', () => upstream.close(() => process.exit(0)))
  } else if (w.role === 'sample') {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const out = []
    for (let i = 0; i < w.samples; i++) out.push((await get(w.sock, w.port, `/repos/o/r/issues/${i}`, agent)).ms)
    agent.destroy()
    parentPort.postMessage(out)
  } else if (w.role === 'proxy') {
    // --workers: this sandbox's proxy on its own thread and event loop (option 1 of the fairness
    // work: per-sandbox workers); `nice` lowers this thread's priority (setpriority, per thread).
    if (w.nice) (await import('node:os')).setPriority(0, w.nice)
    // A worker cannot set the process's umask (listen() narrows it around bind); the bench's data
    // dir is private already. A real port would bind in a 0700 directory instead.
    process.umask = () => 0o022
    const sock = await makeProxy(w.name, w.data, w.policy)
    parentPort.postMessage(sock)
    parentPort.on('message', async () => {
      for (const p of proxies) await p.close()
      process.exit(0)
    })
  } else if (w.role === 'hog') {
    // The floor: pure CPU contention that never touches the gateway (what sandbox A can always do
    // in its own container: cgroup v1 rootless has no cpu controller to stop it).
    let stop = false
    parentPort.on('message', () => (stop = true))
    // --hog-nice N: the hog thread lowers its own priority (setpriority on Linux applies to the
    // calling thread): would a flooding sandbox's work in a low-priority worker stop hurting B?
    if (w.nice) (await import('node:os')).setPriority(0, w.nice)
    let n = 0
    while (!stop) {
      const t = Date.now()
      while (Date.now() - t < 50) n++
      await new Promise(r => setImmediate(r))
    }
    parentPort.postMessage({ sent: n, statuses: {} })
  } else if (w.role === 'flood') {
    let stop = false
    const counts = { sent: 0, statuses: {} }
    parentPort.on('message', () => (stop = true))
    const worker = async i => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      while (!stop) {
        const r = await get(w.sock, w.port, i % 8 === 0 && !w.noOver ? over : worst, agent)
        counts.sent++
        counts.statuses[r.status] = (counts.statuses[r.status] ?? 0) + 1
      }
      agent.destroy()
    }
    await Promise.all(Array.from({ length: w.flood }, (_, i) => worker(i)))
    parentPort.postMessage(counts)
  }
} else {
const self = fileURLToPath(import.meta.url)
const spawn = data => new Worker(self, { workerData: data })
const once = w => new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject) })
const upW = spawn({ role: 'upstream' })
const PORT = await once(upW)

const policy = `version: 1
network_policies:
  api:
    endpoints:
      - host: api.test
        port: ${PORT}
        protocol: rest
        enforcement: enforce
        rules:
          - allow: { method: GET, path: "/repos/*/*/issues/**" }
          - allow: { method: GET, path: "/repos/**/pulls/*/files" }
          - allow: { method: GET, path: "/**/info/refs*" }
          - allow: { method: POST, path: "/repos/*/*/issues" }
`
const data = mkdtempSync(join(tmpdir(), 'podshell-fairness-'))
const proxyWorkers = []
async function proxy(name) {
  if (!WORKERS) return makeProxy(name, data, policy)
  const w = spawn({ role: 'proxy', name, data, policy, nice: name === 'flooder' ? opt('--flooder-nice', 0) : 0 })
  proxyWorkers.push(w)
  return once(w)
}
const sockA = await proxy('flooder')
const sockB = await proxy('quiet')

// CPU hogs (worker threads spinning, no gateway traffic) for the floor phase.
const HOGS = opt('--hogs', 2)
function hog() {
  const ws = Array.from({ length: HOGS }, () => spawn({ role: 'hog', nice: opt('--hog-nice', 0) }))
  return { end: () => Promise.all(ws.map(w => { const d = once(w); w.postMessage('stop'); return d })) }
}
const sampleB = () => once(spawn({ role: 'sample', sock: sockB, port: PORT, samples: SAMPLES }))
function flood() {
  const w = spawn({ role: 'flood', sock: sockA, port: PORT, flood: FLOOD, noOver: args.includes('--no-over') })
  const done = once(w)
  return { end: () => (w.postMessage('stop'), done) }
}

// Warm-up: JIT, first connections.
await sampleB()
const runs = []
for (let r = 0; r < RUNS; r++) {
  const alone = await sampleB()
  const h = hog()
  await new Promise(res => setTimeout(res, 300))
  const hogged = await sampleB()
  await h.end()
  const f = flood()
  const f0 = performance.now()
  await new Promise(res => setTimeout(res, 300))
  const flooded = await sampleB()
  const counts = await f.end()
  const floodS = (performance.now() - f0) / 1000
  runs.push({
    alone_p50_ms: median(alone),
    alone_p99_ms: pct(alone, 99),
    cpu_floor_p50_ms: median(hogged),
    cpu_floor_p99_ms: pct(hogged, 99),
    flooded_p50_ms: median(flooded),
    flooded_p99_ms: pct(flooded, 99),
    flood_requests: counts.sent,
    flood_rps: counts.sent / floodS,
    flood_statuses: counts.statuses,
  })
  note(`run ${r + 1}: ${JSON.stringify(runs.at(-1))}`)
}
const m = k => median(runs.map(x => x[k]))
const results = {
  date: new Date().toISOString(),
  node: process.version,
  samples_per_phase: SAMPLES,
  runs: RUNS,
  flood_connections: FLOOD,
  max_in_flight: proxies[0]?.limits.maxInFlight ?? null,
  proxy_workers: WORKERS ? { flooder_nice: opt("--flooder-nice", 0) } : null,
  max_queued: proxies[0]?.limits.maxQueued ?? null,
  contended_in_flight: contention && !WORKERS ? proxies[0].limits.contendedInFlight : null,
  worst_case_target_bytes: worst.length,
  b_alone_p50_ms: m('alone_p50_ms'),
  b_alone_p99_ms: m('alone_p99_ms'),
  cpu_hog_threads: HOGS,
  b_cpu_floor_p50_ms: m('cpu_floor_p50_ms'),
  b_cpu_floor_p99_ms: m('cpu_floor_p99_ms'),
  b_flooded_p50_ms: m('flooded_p50_ms'),
  b_flooded_p99_ms: m('flooded_p99_ms'),
  flood_rps: m('flood_rps'),
  p50_ratio: m('flooded_p50_ms') / m('alone_p50_ms'),
  p99_ratio: m('flooded_p99_ms') / m('alone_p99_ms'),
  p99_over_floor: m('flooded_p99_ms') / m('cpu_floor_p99_ms'),
  p50_over_floor: m('flooded_p50_ms') / m('cpu_floor_p50_ms'),
  per_run: runs,
}
for (const p of proxies) await p.close()
for (const w of proxyWorkers) w.postMessage('stop')
upW.postMessage('stop')
rmSync(data, { recursive: true, force: true })
const round = o => JSON.parse(JSON.stringify(o, (_, v) => (typeof v === 'number' ? Math.round(v * 1000) / 1000 : v)))
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
writeFileSync(join(ROOT, 'bench', 'results', 'fairness.json'), JSON.stringify(round(results), null, 2) + '\n')
console.log(JSON.stringify(round(results), null, 2))
// Keep-alive sockets and worker handles can keep the loop alive after the results: exit (and so
// write --cpu-prof profiles).
process.exit(0)
}
