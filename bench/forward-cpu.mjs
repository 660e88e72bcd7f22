#!/usr/bin/env node
// The gateway's own CPU per byte on the plain-HTTP forward path against a CONNECT tunnel, in process
// (not a test: prints medians). No podman: the sandbox proxy (dist/gateway/proxy.js) runs in a child
// process on a unix socket; an upstream HTTP server on loopback serves N MiB with Content-Length
// (and, with --chunked, chunked), and a client in this process downloads it through the proxy. The
// child's CPU time (user+sys) over the download is reported as CPU-s/GB, with the throughput.
//
//   npm run build && node bench/forward-cpu.mjs [--mb 200] [--runs 5] [--chunked] [--only direct|forward|connect]
//   FWD_PROF=DIR: the proxy child runs with --cpu-prof into DIR (where its CPU goes).
//   FWD_DIST=DIR: the proxy child loads DIR/gateway/*.js instead of this checkout's dist (an A/B
//   against another build, e.g. `git archive <rev> | tar -x -C /tmp/old && (cd /tmp/old && npx tsc)`).
// The MB/s of "direct" is not a container's: the client and the upstream share this process. The
// robust figure is the gateway's CPU-s/GB; npm run bench (bench/gateway.mjs) gives the ratios.
import { fork } from 'node:child_process'
import { createServer, request } from 'node:http'
import { connect } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const opt = (k, d) => (args.includes(k) ? Number(args[args.indexOf(k) + 1]) : d)
const MB = opt('--mb', 200)
const RUNS = opt('--runs', 5)
const CHUNKED = args.includes('--chunked')
const ONLY = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined

if (process.env.FORWARD_CPU_CHILD) {
  const DIST = process.env.FWD_DIST ?? join(ROOT, 'dist')
  const { SandboxProxy } = await import(join(DIST, 'gateway', 'proxy.js'))
  const { PolicyEngine } = await import(join(DIST, 'gateway', 'policy-engine.js'))
  const { parseIp } = await import(join(DIST, 'gateway', 'address.js'))
  const port = Number(process.env.UP_PORT)
  const engine = PolicyEngine.compile({ network_policies: { b: { endpoints: [{ host: '127.0.0.1', port }] } } })
  const nop = () => undefined
  const audit = { network: nop, http: nop }
  const proxy = new SandboxProxy({ sandbox: 'bench', engine: () => engine, policyVersion: () => 1, audit, resolve: async () => [parseIp('127.0.0.1')], permitAddress: () => true })
  await proxy.listen(process.env.SOCK)
  process.on('message', m => {
    if (m === 'cpu') process.send(process.cpuUsage())
    else if (m === 'exit') proxy.close().then(() => process.exit(0))
  })
  process.send('ready')
} else {
  const dir = mkdtempSync(join(tmpdir(), 'fwdcpu-'))
  const sock = join(dir, 'p.sock')
  const chunk = Buffer.alloc(1 << 20, 97)
  const up = createServer((req, res) => {
    const n = MB
    res.writeHead(200, CHUNKED ? { 'Content-Type': 'application/octet-stream' } : { 'Content-Length': String(n * chunk.length), 'Content-Type': 'application/octet-stream' })
    let i = 0
    const more = () => {
      while (i < n) {
        i++
        if (!res.write(chunk)) return void res.once('drain', more)
      }
      res.end()
    }
    more()
  })
  await new Promise(r => up.listen(0, '127.0.0.1', r))
  const port = up.address().port
  const child = fork(fileURLToPath(import.meta.url), args, { execArgv: [...(process.env.FWD_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.FWD_PROF] : []), ...(process.env.FWD_IMPORT ? ['--import', process.env.FWD_IMPORT] : [])], env: { ...process.env, FORWARD_CPU_CHILD: '1', UP_PORT: String(port), SOCK: sock } })
  await new Promise(r => child.once('message', r))
  const cpu = () => new Promise(r => { child.once('message', u => r((u.user + u.system) / 1e6)); child.send('cpu') })
  const drain = res => new Promise((ok, ko) => { let n = 0; res.on('data', d => (n += d.length)); res.on('end', () => ok(n)); res.on('error', ko) })
  const forward = () => new Promise((ok, ko) => request({ socketPath: sock, path: `http://127.0.0.1:${port}/x`, headers: { Host: `127.0.0.1:${port}` } }, r => drain(r).then(ok, ko)).on('error', ko).end())
  const tunnel = () => new Promise((ok, ko) => {
    const s = connect(sock)
    s.once('connect', () => s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`))
    let b = ''
    const onData = d => { b += d; if (b.includes('\r\n\r\n')) { s.off('data', onData); request({ createConnection: () => s, host: '127.0.0.1', port, path: '/x' }, r => drain(r).then(n => { s.destroy(); ok(n) }, ko)).on('error', ko).end(); s.resume() } }
    s.on('data', onData)
    s.on('error', ko)
  })
  const direct = () => new Promise((ok, ko) => request({ host: '127.0.0.1', port, path: '/x', agent: false }, r => drain(r).then(ok, ko)).on('error', ko).end())
  const median = xs => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2 }
  const res = { direct: [], forward: [], connect: [] }
  for (let r = 0; r < RUNS; r++) {
    for (const [name, fn] of [['direct', direct], ['forward', forward], ['connect', tunnel]].filter(([n]) => !ONLY || n === ONLY)) {
      const c0 = await cpu()
      const t0 = performance.now()
      const n = await fn().catch(e => { throw new Error(`${name}: ${e.message}`) })
      const ms = performance.now() - t0
      const c1 = await cpu()
      if (n !== MB * chunk.length) throw new Error(`${name}: ${n} bytes`)
      res[name].push({ mbs: n / 1e6 / (ms / 1000), cpuPerGB: ((c1 - c0) / n) * 1e9 })
    }
  }
  const out = {}
  for (const [k, v] of Object.entries(res)) out[k] = { MBps: Math.round(median(v.map(x => x.mbs))), gatewayCpuSecPerGB: Number(median(v.map(x => x.cpuPerGB)).toFixed(2)) }
  out.forwardOverDirect = Number((out.forward.MBps / out.direct.MBps).toFixed(2))
  out.connectOverDirect = Number((out.connect.MBps / out.direct.MBps).toFixed(2))
  console.log(JSON.stringify({ mb: MB, runs: RUNS, chunked: CHUNKED, dist: process.env.FWD_DIST ?? 'dist', ...out }))
  child.send('exit')
  up.close()
  rmSync(dir, { recursive: true, force: true })
}
