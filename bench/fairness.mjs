#!/usr/bin/env node
// Per-sandbox fairness of the gateway (not a test: prints medians, writes bench/results/fairness.json).
//
//   npm run build && node bench/fairness.mjs [--samples 300] [--runs 3] [--rounds 2] [--flood 64] [--hogs 2] [--warm-ms 1500]
//
// No podman: THE REAL GATEWAY (dist/gateway/server.js: Gateway, on a temp data dir, two sandboxes
// with the same L7 policy) on the main thread, alone on its event loop as in the gateway
// container; the upstream (127.0.0.1), sandbox A's flooding client and sandbox B's client each run
// in their own worker thread, so client work never sits on the gateway's loop. Two gateways are
// measured in the same run, in interleaved rounds (order alternating): `off` = every sandbox on
// the main loop (fairness workers off), `on` = GatewayOptions.fairness.workers (src/gateway/fairness.ts:
// a sandbox that keeps a queue while another is active moves to its own worker thread at nice 19).
// Per gateway and run:
//
//   alone    sandbox B's normal request (GET /repos/o/r/issues/N under L7 rules), sequential, p50/p99
//   floor    the same while `--hogs` worker threads spin the CPU without touching the gateway:
//            pure CPU contention on this machine, which the gateway cannot beat
//   flooded  the same while sandbox A keeps `--flood` connections busy with worst-case requests:
//            targets just under the 8 KiB bound (`/repos` + `/issues` x 1,150), each matched against
//            the L7 rules, plus requests beyond the bound (414) and a queue beyond A's admission
//            (503); B is sampled from `--warm-ms` after the flood starts and, with the mechanism
//            on, once A has moved (`time_to_move_ms`: strikes, then the worker's start at nice 19)
//
// Also: the gateway's RSS with both sandboxes idle on the main loop, and with A moved to a worker
// (what a moved sandbox costs), and the load average at each round's start and end.
import { createServer, request, Agent } from 'node:http'
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads'
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir, loadavg } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { opt } from './lib.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const SAMPLES = opt('--samples', 300)
const RUNS = opt('--runs', 3)
const ROUNDS = opt('--rounds', 2)
const FLOOD = opt('--flood', 64)
const HOGS = opt('--hogs', 2)
const WARM_MS = opt('--warm-ms', 1500)

const note = m => process.stderr.write(`[fairness] ${m}\n`)
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const median = xs => pct(xs, 50)
const sleep = ms => new Promise(r => setTimeout(r, ms))

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
  } else if (w.role === 'hog') {
    // The floor: pure CPU contention that never touches the gateway (what sandbox A can always do
    // in its own container: cgroup v1 rootless has no cpu controller to stop it).
    let stop = false
    parentPort.on('message', () => (stop = true))
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
        const r = await get(w.sock, w.port, i % 8 === 0 ? over : worst, agent)
        counts.sent++
        counts.statuses[r.status] = (counts.statuses[r.status] ?? 0) + 1
      }
      agent.destroy()
    }
    await Promise.all(Array.from({ length: w.flood }, (_, i) => worker(i)))
    parentPort.postMessage(counts)
  }
} else {
  const { Gateway } = await import(join(ROOT, 'dist', 'gateway', 'server.js'))
  const { PolicyStore } = await import(join(ROOT, 'dist', 'policy', 'store.js'))
  const { parsePolicyText } = await import(join(ROOT, 'dist', 'policy', 'parse.js'))
  const paths = await import(join(ROOT, 'dist', 'config', 'paths.js'))

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
  for (const name of ['flooder', 'quiet']) {
    for (const d of [paths.sandboxDir(data, name), paths.sandboxPolicyDir(data, name), paths.sandboxEgressDir(data, name), paths.sandboxAuditDir(data, name)]) mkdirSync(d, { recursive: true, mode: 0o700 })
    new PolicyStore(paths.sandboxPolicyDir(data, name)).add(parsePolicyText(policy, 'bench').policy, 'bench')
  }
  const sockA = paths.sandboxSocket(data, 'flooder')
  const sockB = paths.sandboxSocket(data, 'quiet')
  const logs = []
  async function gateway(workers) {
    const gw = new Gateway({
      dataDir: data,
      rescanIntervalMs: 0,
      testHooks: { hosts: { 'api.test': ['127.0.0.1'] }, permitCidrs: ['127.0.0.1/32'] },
      fairness: { workers },
      log: l => logs.push(l),
    })
    await gw.start()
    return gw
  }

  function hog() {
    const ws = Array.from({ length: HOGS }, () => spawn({ role: 'hog' }))
    return { end: () => Promise.all(ws.map(w => { const d = once(w); w.postMessage('stop'); return d })) }
  }
  const sampleB = () => once(spawn({ role: 'sample', sock: sockB, port: PORT, samples: SAMPLES }))
  function flood() {
    const w = spawn({ role: 'flood', sock: sockA, port: PORT, flood: FLOOD })
    const done = once(w)
    return { end: () => (w.postMessage('stop'), done) }
  }

  // What a moved sandbox costs: RSS with both sandboxes idle on the main loop, then with A moved.
  async function memory() {
    const gw = await gateway(true)
    await sampleB()
    global.gc?.()
    await sleep(300)
    const idle = process.memoryUsage().rss
    await gw.moveToWorker('flooder')
    await sampleB()
    await sleep(500)
    global.gc?.()
    const moved = process.memoryUsage().rss
    await gw.stop()
    return { rss_idle_mb: idle / 2 ** 20, rss_a_moved_mb: moved / 2 ** 20, worker_cost_mb: (moved - idle) / 2 ** 20 }
  }

  async function measure(workers) {
    const gw = await gateway(workers)
    await sampleB() // warm-up: JIT, first connections
    const runs = []
    for (let r = 0; r < RUNS; r++) {
      const alone = await sampleB()
      const h = hog()
      await sleep(300)
      const hogged = await sampleB()
      await h.end()
      const f = flood()
      const f0 = performance.now()
      await sleep(WARM_MS)
      // With the mechanism on: B is sampled once A has moved (time_to_move_ms says how long that took).
      while (workers && !gw.workerOf('flooder') && performance.now() - f0 < 20_000) await sleep(20)
      const moveMs = workers && gw.workerOf('flooder') ? performance.now() - f0 : null
      const flooded = await sampleB()
      const moved = gw.workerOf('flooder') !== undefined
      const counts = await f.end()
      const floodS = (performance.now() - f0) / 1000
      runs.push({
        alone_p50_ms: median(alone), alone_p99_ms: pct(alone, 99),
        cpu_floor_p50_ms: median(hogged), cpu_floor_p99_ms: pct(hogged, 99),
        flooded_p50_ms: median(flooded), flooded_p99_ms: pct(flooded, 99),
        a_moved: moved, time_to_move_ms: moveMs, flood_rps: counts.sent / floodS, flood_statuses: counts.statuses,
      })
      note(`${workers ? 'on ' : 'off'} run ${r + 1}: ${JSON.stringify(runs.at(-1))}`)
      // A calms down (moves back) before the next run's `alone` phase.
      if (workers) {
        const t = performance.now()
        while (gw.workerOf('flooder') && performance.now() - t < 15_000) await sleep(100)
      }
    }
    await gw.stop()
    const m = k => median(runs.map(x => x[k]))
    return {
      b_alone_p50_ms: m('alone_p50_ms'), b_alone_p99_ms: m('alone_p99_ms'),
      b_cpu_floor_p50_ms: m('cpu_floor_p50_ms'), b_cpu_floor_p99_ms: m('cpu_floor_p99_ms'),
      b_flooded_p50_ms: m('flooded_p50_ms'), b_flooded_p99_ms: m('flooded_p99_ms'),
      flood_rps: m('flood_rps'),
      p50_over_alone: m('flooded_p50_ms') / m('alone_p50_ms'),
      p99_over_floor: m('flooded_p99_ms') / m('cpu_floor_p99_ms'),
      a_moved_runs: runs.filter(x => x.a_moved).length,
      time_to_move_ms: workers ? median(runs.map(x => x.time_to_move_ms ?? Infinity)) : null,
      per_run: runs,
    }
  }

  const mem = await memory()
  note(`memory: ${JSON.stringify(mem)}`)
  const rounds = []
  for (let i = 0; i < ROUNDS; i++) {
    const load_start = loadavg()
    const order = i % 2 ? [true, false] : [false, true]
    const res = {}
    for (const w of order) res[w ? 'on' : 'off'] = await measure(w)
    rounds.push({ order: order.map(w => (w ? 'on' : 'off')), load_start, load_end: loadavg(), ...res })
  }
  const results = {
    date: new Date().toISOString(),
    node: process.version,
    samples_per_phase: SAMPLES,
    runs_per_round: RUNS,
    rounds: ROUNDS,
    flood_connections: FLOOD,
    cpu_hog_threads: HOGS,
    flood_warm_ms: WARM_MS,
    worst_case_target_bytes: worst.length,
    memory: mem,
    per_round: rounds,
    moves: logs.filter(l => /moved to worker|calm again|exited/.test(l)).length,
  }
  upW.postMessage('stop')
  rmSync(data, { recursive: true, force: true })
  const round = o => JSON.parse(JSON.stringify(o, (_, v) => (typeof v === 'number' ? Math.round(v * 1000) / 1000 : v)))
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
  writeFileSync(join(ROOT, 'bench', 'results', 'fairness.json'), JSON.stringify(round(results), null, 2) + '\n')
  console.log(JSON.stringify(round({ ...results, per_round: rounds.map(r => ({ ...r, on: { ...r.on, per_run: undefined }, off: { ...r.off, per_run: undefined } })) }), null, 2))
  // Keep-alive sockets and worker handles can keep the loop alive after the results: exit.
  process.exit(0)
}
