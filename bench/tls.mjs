#!/usr/bin/env node
// TLS inspection benchmark (not a test: prints medians, writes bench/results/tls.json).
//
//   npm run build && node bench/tls.mjs [--mb 100] [--runs 3] [--requests 200] [--skip-container] [--download-only]
//
// Runs as an unprivileged user inside the test network namespace (scripts/as-test-user.sh), like
// bench/gateway.mjs. An HTTPS server with its own test CA listens on the test address 198.18.0.2.
//
//   requests    (in-process gateway, client in a child process on the sandbox socket) 200 sequential
//               small HTTPS GETs, npm-like:
//                 fresh:     a new CONNECT + TLS handshake per request (no client keep-alive):
//                            inspected with upstream pooling, inspected without pooling, tunnel
//                 keepalive: one CONNECT, 200 requests on it: inspected vs tunnel; the per-request
//                            difference is what inspection adds on a warm leaf-certificate cache
//   throughput  (real gateway container and sandbox) an N MiB HTTPS download from inside the sandbox
//               through an inspected endpoint and through a tunnelled one, vs the same download
//               from a plain container on the default rootless network (direct)
import { spawnSync, execFile } from 'node:child_process'
import { createServer } from 'node:https'
import { mkdirSync, writeFileSync, mkdtempSync, rmSync, readFileSync, existsSync, appendFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { homedir, tmpdir } from 'node:os'
import { median, opt, testAddress, runClient, benchSandbox } from './lib.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const CLI = join(ROOT, 'dist', 'cli', 'main.js')
const args = process.argv.slice(2)
const MB = opt('--mb', 100)
const RUNS = opt('--runs', 3)
const N = opt('--requests', 200)
// --download-only: only the in-process download (inspected vs tunnel), for profiling the relay.
const DOWNLOAD_ONLY = args.includes('--download-only')
const note = m => process.stderr.write(`[bench tls] ${m}\n`)
const d = p => import(join(ROOT, 'dist', p))
const { generateCa } = await d('tls/ca.js')
const { LeafIssuer } = await d('tls/leaf.js')
const { Gateway } = await d('gateway/server.js')
const { parseIp } = await d('gateway/address.js')
const paths = await d('config/paths.js')

const wantIp = process.env.PODSHELL_TEST_ADDR ?? '198.18.0.2'
const hostIp = testAddress()
if (!hostIp) throw new Error(`the test network address ${wantIp} is not on this host: run inside the test network namespace (scripts/as-test-user.sh)`)

// ── HTTPS upstream with its own CA ──
const work = mkdtempSync(join(homedir(), 'podshell-bench-tls-'))
const testCa = await generateCa('bench upstream CA')
const leaves = new LeafIssuer(testCa)
const caFile = join(work, 'upstream-ca.pem')
writeFileSync(caFile, testCa.certPem)
const chunk = Buffer.alloc(1024 * 1024, 0x61)
const small = Buffer.alloc(512, 0x62)
const server = createServer({ SNICallback: (n, cb) => void leaves.get(n).then(l => cb(null, l.context), cb), keepAliveTimeout: 30_000 }, (req, res) => {
  const m = /^\/bytes\?mb=(\d+)/.exec(req.url)
  if (!m) {
    res.writeHead(200, { 'Content-Length': String(small.length) })
    return res.end(small)
  }
  const n = Number(m[1])
  res.writeHead(200, { 'Content-Length': String(n * chunk.length) })
  let i = 0
  const pump = () => {
    while (i < n) {
      i++
      if (!res.write(chunk)) return res.once('drain', pump)
    }
    res.end()
  }
  pump()
})
let upstreamHandshakes = 0
// What the upstream negotiates with its clients (the gateway's upstream side when inspected).
const upstreamCiphers = new Set()
server.on('secureConnection', s => {
  upstreamHandshakes++
  upstreamCiphers.add(`${s.getProtocol()} ${s.getCipher().standardName}`)
})
await new Promise(r => server.listen(0, hostIp, r))
const PORT = server.address().port

// ── client (a child process; also runs inside containers on Debian's node) ──
const CLIENT = String.raw`
const net = require('net'), tls = require('tls'), https = require('https'), fs = require('fs');
const [mode, proxy, host, port, count, caFile] = process.argv.slice(1);
const ca = caFile && caFile !== '-' ? fs.readFileSync(caFile, 'utf8') : undefined;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const hs = [];
let cipher;
function tunnel(cb) {
  const th = now();
  const s = proxy.startsWith('/') ? net.connect(proxy) : net.connect(Number(proxy.split(':')[1]), proxy.split(':')[0]);
  s.once('connect', () => s.write('CONNECT ' + host + ':' + port + ' HTTP/1.1\r\nHost: ' + host + ':' + port + '\r\n\r\n'));
  let buf = '';
  const onData = d => { buf += d; if (buf.includes('\r\n\r\n')) { s.removeListener('data', onData); if (!/^HTTP\/1.1 200/.test(buf)) cb(new Error(buf.split('\r\n')[0])); else { const t = tls.connect({ socket: s, servername: host, ...(ca ? { ca } : {}) }); t.once('secureConnect', () => { hs.push(now() - th); cipher = t.getProtocol() + ' ' + t.getCipher().standardName; }); cb(null, t); } } };
  s.on('data', onData); s.on('error', cb);
}
function agent(keepAlive) {
  const a = new https.Agent({ keepAlive, maxSockets: 1 });
  if (proxy !== 'direct') a.createConnection = (o, cb) => { tunnel(cb); };
  return a;
}
function get(a, path) {
  return new Promise((ok, ko) => https.get({ host, port: Number(port), path, agent: a, servername: host, ...(ca ? { ca } : {}) }, r => { let b = 0; r.on('data', c => b += c.length); r.on('end', () => ok(b)); r.on('error', ko); }).on('error', ko));
}
(async () => {
  const out = {};
  if (mode === 'download') {
    const t0 = now(); out.bytes = await get(agent(false), '/bytes?mb=' + count); out.ms = now() - t0; out.cipher = cipher; const u = process.cpuUsage(); out.clientCpuMs = (u.user + u.system) / 1000;
  } else {
    const a = agent(mode === 'keepalive');
    await get(a, '/warm');
    out.samples = [];
    const t0 = now();
    for (let i = 0; i < Number(count); i++) { const t = now(); await get(a, '/small'); out.samples.push(now() - t); }
    out.totalMs = now() - t0;
    hs.sort((a, b) => a - b); out.handshakeMs = hs.length ? hs[hs.length >> 1] : 0;
  }
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e.message); process.exit(1); });
`

const results = { requests: N, mb: MB, runs: RUNS, host: hostIp, node: process.version }
const policyText = port => `version: 1
network_policies:
  bench:
    endpoints:
      - { host: inspect.bench.test, port: ${port}, protocol: rest, access: read-only, enforcement: enforce, allowed_ips: [${hostIp}/32] }
      - { host: tunnel.bench.test, port: ${port}, allowed_ips: [${hostIp}/32] }
`

// ── part A: sequential requests, in-process gateway ──
async function requestsBench() {
  const resolve = async () => [parseIp(hostIp)]
  const out = {}
  for (const pool of [true, false]) {
    const data = mkdtempSync(join(tmpdir(), 'podshell-bench-tls-gw-'))
    await benchSandbox(data, 'b', { caFile, policyText: policyText(PORT) })
    const gw = new Gateway({ dataDir: data, rescanIntervalMs: 0, tls: true, limits: { upstreamPoolPerHost: pool ? 16 : 0 }, testHooks: { resolve } })
    await gw.start()
    const sock = paths.sandboxSocket(data, 'b')
    const bundle = join(paths.gatewaySandboxDir(data, 'b'), 'tls', 'ca-bundle.pem')
    const key = pool ? 'pooled' : 'unpooled'
    for (const [mode, host] of DOWNLOAD_ONLY ? [] : [['fresh', 'inspect.bench.test'], ['fresh', 'tunnel.bench.test'], ['keepalive', 'inspect.bench.test'], ['keepalive', 'tunnel.bench.test']]) {
      if (!pool && host.startsWith('tunnel')) continue // pooling does not apply to tunnels
      const per = [], total = [], hsk = []
      const hs0 = upstreamHandshakes
      for (let r = 0; r < RUNS; r++) {
        const o = await runClient(CLIENT, [mode, sock, host, String(PORT), String(N), bundle])
        per.push(median(o.samples))
        total.push(o.totalMs)
        hsk.push(o.handshakeMs)
      }
      const name = `${mode}_${host.split('.')[0]}${host.startsWith('inspect') ? `_${key}` : ''}`
      out[name] = { medianRequestMs: median(per), medianTotalMs: median(total), medianClientHandshakeMs: median(hsk), upstreamHandshakesPerRun: (upstreamHandshakes - hs0) / RUNS }
      note(`${name}: ${JSON.stringify(out[name])}`)
    }
    if (pool) {
      // The gateway's own cost on a download (no podman, no bridge): in-process, interleaved.
      // Also the CPU time this process (gateway + the upstream server, which encrypts the same
      // bytes in both cases) spends per download: less load-dependent than MB/s on a shared machine.
      const tp = { inspected: [], tunnel: [] }
      const cpu = { inspected: [], tunnel: [] }
      const clientCpu = { inspected: [], tunnel: [] }
      for (let r = 0; r < RUNS; r++) {
        for (const [k, host] of [['inspected', 'inspect.bench.test'], ['tunnel', 'tunnel.bench.test']]) {
          const c0 = process.cpuUsage()
          const o = await runClient(CLIENT, ['download', sock, host, String(PORT), String(MB), bundle])
          const c = process.cpuUsage(c0)
          tp[k].push(o.bytes / 1e6 / (o.ms / 1000))
          out[`clientCipher_${k}`] = o.cipher
          cpu[k].push((c.user + c.system) / 1000)
          clientCpu[k].push(o.clientCpuMs)
        }
      }
      out.inProcessDownloadMBps = { inspected: median(tp.inspected), tunnel: median(tp.tunnel) }
      out.inProcessCpuMsPerDownload = { inspected: median(cpu.inspected), tunnel: median(cpu.tunnel) }
      out.clientCpuMsPerDownload = { inspected: median(clientCpu.inspected), tunnel: median(clientCpu.tunnel) }
      out.upstreamCiphers = [...upstreamCiphers]
      note(`in-process ${MB} MiB download: ${JSON.stringify(out.inProcessDownloadMBps)} MB/s; CPU ms per download of gateway+server ${JSON.stringify(out.inProcessCpuMsPerDownload)}, of the client ${JSON.stringify(out.clientCpuMsPerDownload)}`)
      note(`negotiated: client-gateway (inspected) ${out.clientCipher_inspected}; client-upstream (tunnel) ${out.clientCipher_tunnel}; at the upstream ${out.upstreamCiphers.join(', ')}`)
    }
    await gw.stop()
    rmSync(data, { recursive: true, force: true })
    if (DOWNLOAD_ONLY) break
  }
  if (DOWNLOAD_ONLY) return void (results.requests = out)
  out.addedPerRequestMsWarmCache = out.keepalive_inspect_pooled.medianRequestMs - out.keepalive_tunnel.medianRequestMs
  out.fresh200InspectedVsTunnel = out.fresh_inspect_pooled.medianTotalMs / out.fresh_tunnel.medianTotalMs
  results.requests = out
}

// ── part B: 100 MB through the real gateway container ──
async function throughputBench() {
  const HOME = process.env.PODSHELL_BENCH_HOME ?? join(homedir(), '.local', 'share', 'podshell-bench-tls')
  const cfg = join(work, 'cfg')
  mkdirSync(join(cfg, 'podshell'), { recursive: true })
  writeFileSync(join(cfg, 'podshell', 'config.yaml'), `tls:\n  extra_ca_files: [${caFile}]\n`)
  const env = { ...process.env, PODSHELL_HOME: HOME, XDG_CONFIG_HOME: cfg }
  const { Podman } = await d('podman/podman.js')
  const { SANDBOX_IMAGE } = await d('images/names.js')
  const { gatewayContainerName } = await d('gateway/lifecycle.js')
  const runtime = (await Podman.detect({ env })).runtime.runtime
  const run = (file, argv, e = env) =>
    new Promise((resolve, reject) => {
      execFile(file, argv, { env: e, maxBuffer: 64 << 20, timeout: 600_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${file} ${argv.slice(0, 4).join(' ')} failed: ${stderr || err.message}`))
        else resolve(stdout)
      })
    })
  const ps = (...a) => run(process.execPath, [CLI, ...a])
  const podman = (...a) => run('podman', ['--runtime', runtime, ...a], process.env)
  const name = 'bench-tls'
  mkdirSync(HOME, { recursive: true })
  spawnSync(process.execPath, [CLI, 'sandbox', 'delete', name], { env, stdio: 'ignore' })
  writeFileSync(join(work, 'policy.yaml'), policyText(PORT))
  note('creating sandbox')
  await ps('sandbox', 'create', '--name', name, '--policy', join(work, 'policy.yaml'), '--detach')
  try {
    const gw = gatewayContainerName(HOME, env)
    const hosts = (await podman('inspect', '--format', '{{.HostsPath}}', gw)).trim()
    if (!existsSync(hosts)) throw new Error('no hosts file for the gateway container')
    const have = readFileSync(hosts, 'utf8')
    for (const n of ['inspect.bench.test', 'tunnel.bench.test']) if (!have.includes(`\t${n}\n`)) appendFileSync(hosts, `${hostIp}\t${n}\n`)
    const last = o => JSON.parse(o.trim().split('\n').pop())
    const inSandbox = async (...a) => last(await ps('sandbox', 'exec', '-n', name, '--', 'node', '-e', CLIENT, ...a))
    // The plain container reaches the server directly, trusting the test CA (mounted read-only).
    const direct = async (...a) => last(await podman('run', '--rm', '-v', `${caFile}:/ca.pem:ro`, '--add-host', `inspect.bench.test:${hostIp}`, SANDBOX_IMAGE, 'node', '-e', CLIENT, ...a))
    const rate = r => r.bytes / 1e6 / (r.ms / 1000)
    const tp = { direct: [], inspected: [], tunnel: [] }
    await inSandbox('download', '127.0.0.1:3128', 'inspect.bench.test', String(PORT), '1', '-') // warm the leaf cache
    for (let i = 0; i < RUNS; i++) {
      tp.direct.push(rate(await direct('download', 'direct', 'inspect.bench.test', String(PORT), String(MB), '/ca.pem')))
      tp.inspected.push(rate(await inSandbox('download', '127.0.0.1:3128', 'inspect.bench.test', String(PORT), String(MB), '-')))
      tp.tunnel.push(rate(await inSandbox('download', '127.0.0.1:3128', 'tunnel.bench.test', String(PORT), String(MB), '-')))
      note(`run ${i + 1}: direct ${tp.direct[i].toFixed(0)} MB/s, inspected ${tp.inspected[i].toFixed(0)} MB/s, tunnel ${tp.tunnel[i].toFixed(0)} MB/s`)
    }
    const m = { direct: median(tp.direct), inspected: median(tp.inspected), tunnel: median(tp.tunnel) }
    results.throughputMBps = m
    results.throughputRatio = { inspectedVsDirect: m.inspected / m.direct, tunnelVsDirect: m.tunnel / m.direct }
  } finally {
    spawnSync(process.execPath, [CLI, 'sandbox', 'delete', name], { env, stdio: 'ignore' })
  }
}

try {
  note(`${N} sequential requests, ${RUNS} runs per case`)
  await requestsBench()
  if (!args.includes('--skip-container') && !DOWNLOAD_ONLY) {
    note(`${MB} MiB downloads, ${RUNS} runs`)
    await throughputBench()
  }
  results.loadAverage = (await import('node:os')).loadavg()
} finally {
  server.close()
  rmSync(work, { recursive: true, force: true })
}
const round = o => JSON.parse(JSON.stringify(o, (_, v) => (typeof v === 'number' ? Math.round(v * 100) / 100 : v)))
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
writeFileSync(join(ROOT, 'bench', 'results', 'tls.json'), JSON.stringify(round(results), null, 2) + '\n')
console.log(JSON.stringify(round(results), null, 2))
process.exit(0)
