#!/usr/bin/env node
// Egress gateway benchmark (not a test: prints medians, writes bench/results/gateway.json).
//
//   npm run build && node bench/gateway.mjs [--mb 100] [--runs 5] [--samples 200] [--reloads 20]
//
// Runs as an unprivileged user with rootless podman and the default images built. Uses its own
// data dir (PODSHELL_HOME, so its own gateway container) and one sandbox, and measures:
//
//   throughput   an N MiB download from a server on this host's address, from inside a sandbox
//                (agent → socat bridge → unix socket → gateway container → slirp4netns → server),
//                as forward-proxy HTTP and through a CONNECT tunnel, against the same download from
//                a plain container on the default rootless network (direct, no gateway).
//   latency      CONNECT setup through the gateway (until "200 Connection Established", which the
//                gateway sends after its upstream TCP connect) vs a direct TCP connect from a plain
//                container, medians; the difference is what the gateway path adds.
//   reload       time from writing a policy revision + the control-socket reload to the first
//                CONNECT the new revision allows (library path), and the same through the real
//                `podshell policy set` command.
import { spawnSync, execFile } from 'node:child_process'
import { createServer } from 'node:http'
import { connect } from 'node:net'
import { mkdirSync, writeFileSync, mkdtempSync, rmSync, readFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { homedir } from 'node:os'
import { median, opt, testAddress } from './lib.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const CLI = join(ROOT, 'dist', 'cli', 'main.js')
const args = process.argv.slice(2)
const MB = opt('--mb', 100)
const RUNS = opt('--runs', 5)
const SAMPLES = opt('--samples', 200)
const RELOADS = opt('--reloads', 20)
const HOME = process.env.PODSHELL_BENCH_HOME ?? join(homedir(), '.local', 'share', 'podshell-bench-gw')
const env = { ...process.env, PODSHELL_HOME: HOME }
const { Podman } = await import(join(ROOT, 'dist', 'podman', 'podman.js'))
const { SANDBOX_IMAGE } = await import(join(ROOT, 'dist', 'images', 'names.js'))
const { PolicyStore } = await import(join(ROOT, 'dist', 'policy', 'store.js'))
const { parsePolicyText } = await import(join(ROOT, 'dist', 'policy', 'parse.js'))
const { GatewayClient } = await import(join(ROOT, 'dist', 'gateway', 'client.js'))
const paths = await import(join(ROOT, 'dist', 'config', 'paths.js'))
const runtime = (await Podman.detect({ env })).runtime.runtime

const note = m => process.stderr.write(`[bench] ${m}\n`)
// Asynchronous on purpose: the upstream server lives in this process and must keep serving.
const run = (file, argv, extraEnv = env) =>
  new Promise((resolve, reject) => {
    execFile(file, argv, { env: extraEnv, maxBuffer: 64 * 1024 * 1024, timeout: 300_000 }, (e, stdout, stderr) => {
      if (e) reject(new Error(`${file} ${argv.slice(0, 3).join(' ')} failed: ${stderr || e.message}`))
      else resolve(stdout)
    })
  })
const ps = (...a) => run(process.execPath, [CLI, ...a])
const podman = (...a) => run('podman', ['--runtime', runtime, ...a], process.env)

// ── upstream on the test network's address (scripts/test-netns.sh; never this machine's LAN address) ──
const wantIp = process.env.PODSHELL_TEST_ADDR ?? '198.18.0.2'
const hostIp = testAddress()
if (!hostIp) throw new Error(`the test network address ${wantIp} is not on this host: run the bench inside the test network namespace (as root: scripts/as-test-user.sh USER DIR -- npm run bench)`)
const chunk = Buffer.alloc(1024 * 1024, 0x61)
const server = createServer((req, res) => {
  const m = /^\/bytes\?mb=(\d+)/.exec(req.url)
  if (!m) return res.end('ok')
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
await new Promise(r => server.listen(0, '0.0.0.0', r))
const PORT = server.address().port
const PORT2 = PORT + 1 // only ever named in policies (reload probe); nothing listens

// ── the client that runs inside containers (Debian's node 18 in the sandbox image) ─────────
const CLIENT = String.raw`
const net = require('net'), http = require('http');
const [mode, host, port, mb, n] = process.argv.slice(1);
const now = () => Number(process.hrtime.bigint()) / 1e6;
function drain(res) { return new Promise((ok, ko) => { let b = 0; res.on('data', c => b += c.length); res.on('end', () => ok(b)); res.on('error', ko); }); }
function connectTunnel() {
  return new Promise((ok, ko) => {
    const s = net.connect(3128, '127.0.0.1', () => s.write('CONNECT ' + host + ':' + port + ' HTTP/1.1\r\nHost: ' + host + ':' + port + '\r\n\r\n'));
    let buf = '';
    const onData = d => { buf += d; if (buf.includes('\r\n\r\n')) { s.removeListener('data', onData); if (!/^HTTP\/1.1 200/.test(buf)) ko(new Error(buf.split('\r\n')[0])); else ok(s); } };
    s.on('data', onData); s.on('error', ko);
  });
}
(async () => {
  const out = {};
  const path = '/bytes?mb=' + mb;
  if (mode === 'direct' || mode === 'forward' || mode === 'connect') {
    const t0 = now();
    let bytes;
    if (mode === 'direct') bytes = await new Promise((ok, ko) => http.get({ host, port, path }, r => drain(r).then(ok, ko)).on('error', ko));
    if (mode === 'forward') bytes = await new Promise((ok, ko) => http.get({ host: '127.0.0.1', port: 3128, path: 'http://' + host + ':' + port + path, headers: { Host: host + ':' + port } }, r => drain(r).then(ok, ko)).on('error', ko));
    if (mode === 'connect') { const s = await connectTunnel(); bytes = await new Promise((ok, ko) => http.get({ createConnection: () => s, host, port, path }, r => drain(r).then(ok, ko)).on('error', ko)); }
    out.ms = now() - t0; out.bytes = bytes;
  }
  if (mode === 'lat-direct' || mode === 'lat-connect') {
    out.samples = [];
    for (let i = 0; i < Number(n); i++) {
      const t0 = now();
      if (mode === 'lat-direct') await new Promise((ok, ko) => { const s = net.connect(Number(port), host, () => { s.destroy(); ok(); }); s.on('error', ko); });
      else (await connectTunnel()).destroy();
      out.samples.push(now() - t0);
    }
  }
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e.message); process.exit(1); });
`

const results = { mb: MB, runs: RUNS, host: hostIp, runtime }
const name = 'bench-gw'
const polDir = mkdtempSync(join(homedir(), 'podshell-bench-pol-'))
const pol = (allowSecond = false) => `version: 1
network_policies:
  bench:
    endpoints:
      - { host: ${hostIp}, port: ${PORT}, allowed_ips: [${hostIp}/32] }
${allowSecond ? `      - { host: ${hostIp}, port: ${PORT2}, allowed_ips: [${hostIp}/32] }\n` : ''}`
writeFileSync(join(polDir, 'a.yaml'), pol(false))
writeFileSync(join(polDir, 'b.yaml'), pol(true))

try {
  mkdirSync(HOME, { recursive: true })
  spawnSync(process.execPath, [CLI, 'sandbox', 'delete', name], { env, stdio: 'ignore' })
  note('creating sandbox')
  await ps('sandbox', 'create', '--name', name, '--policy', join(polDir, 'a.yaml'), '--detach')
  const last = out => JSON.parse(out.trim().split('\n').pop())
  const inSandbox = async (...a) => last(await ps('sandbox', 'exec', '-n', name, '--', 'node', '-e', CLIENT, ...a))
  const direct = async (...a) => last(await podman('run', '--rm', SANDBOX_IMAGE, 'node', '-e', CLIENT, ...a))

  // throughput (interleaved, so load from elsewhere on the host hits all three alike), plus the
  // CPU the gateway process and the bridge's socat spend per GB: robust where MB/s is noisy.
  const rate = r => (r.bytes / 1e6) / (r.ms / 1000)
  const pidOf = async c => Number((await podman('inspect', '--format', '{{.State.Pid}}', c)).trim())
  const { gatewayContainerName } = await import(join(ROOT, 'dist', 'gateway', 'lifecycle.js'))
  const gwPid = await pidOf(gatewayContainerName(HOME, env))
  const bridgePid = await pidOf(`podshell.${name}.bridge`)
  // utime+stime+cutime+cstime of a host pid, seconds (socat's per-connection children are reaped into cutime)
  const cpu = pid => {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100
  }
  const tp = { direct: [], forward: [], connect: [] }
  const cpuPerGB = { forward: { gateway: [], bridge: [] }, connect: { gateway: [], bridge: [] } }
  const measured = async mode => {
    const g0 = cpu(gwPid), b0 = cpu(bridgePid)
    const r = await inSandbox(mode, hostIp, String(PORT), String(MB))
    await new Promise(res => setTimeout(res, 300))
    cpuPerGB[mode].gateway.push((cpu(gwPid) - g0) / (r.bytes / 1e9))
    cpuPerGB[mode].bridge.push((cpu(bridgePid) - b0) / (r.bytes / 1e9))
    return rate(r)
  }
  for (let i = 0; i < RUNS; i++) {
    note(`throughput run ${i + 1}/${RUNS}`)
    tp.direct.push(rate(await direct('direct', hostIp, String(PORT), String(MB))))
    tp.forward.push(await measured('forward'))
    tp.connect.push(await measured('connect'))
  }
  results.throughputMBps = { direct: median(tp.direct), forwardHttp: median(tp.forward), connectTunnel: median(tp.connect) }
  results.throughputRatio = { forwardHttp: results.throughputMBps.forwardHttp / results.throughputMBps.direct, connectTunnel: results.throughputMBps.connectTunnel / results.throughputMBps.direct }
  results.cpuSecondsPerGB = {
    forwardHttp: { gateway: median(cpuPerGB.forward.gateway), bridge: median(cpuPerGB.forward.bridge) },
    connectTunnel: { gateway: median(cpuPerGB.connect.gateway), bridge: median(cpuPerGB.connect.bridge) },
  }
  results.loadAverage = (await import('node:os')).loadavg()

  note('latency')
  const latDirect = (await direct('lat-direct', hostIp, String(PORT), '0', String(SAMPLES))).samples
  const latConnect = (await inSandbox('lat-connect', hostIp, String(PORT), '0', String(SAMPLES))).samples
  results.latencyMs = { directTcpConnect: median(latDirect), connectEstablished: median(latConnect), added: median(latConnect) - median(latDirect) }

  // reload → enforcement, library path (store + control socket), probed on the sandbox socket from the host
  const sockPath = paths.sandboxSocket(HOME, name)
  const store = new PolicyStore(paths.sandboxPolicyDir(HOME, name))
  const client = new GatewayClient(HOME)
  const probe = () =>
    new Promise(resolve => {
      const s = connect(sockPath, () => s.write(`CONNECT ${hostIp}:${PORT2} HTTP/1.1\r\nHost: ${hostIp}:${PORT2}\r\n\r\n`))
      let buf = ''
      s.on('data', d => {
        buf += d
        if (buf.includes('\r\n')) {
          s.destroy()
          resolve(buf.split(' ')[1])
        }
      })
      s.on('error', () => resolve('error'))
      s.on('close', () => resolve(buf.split(' ')[1] ?? 'closed'))
    })
  const { policy: A } = parsePolicyText(pol(false), 'a')
  const { policy: B } = parsePolicyText(pol(true), 'b')
  note('reload')
  const lib = []
  for (let i = 0; i < RELOADS; i++) {
    store.add(A, 'bench')
    await client.reload(name)
    const t0 = performance.now()
    store.add(B, 'bench')
    await client.reload(name)
    // Port 2 has no listener: "allowed" shows as the gateway dialling (502), "denied" as 403.
    for (let k = 0; k < 1000; k++) if ((await probe()) !== '403') break
    lib.push(performance.now() - t0)
  }
  const cliTimes = []
  for (let i = 0; i < Math.min(RELOADS, 10); i++) {
    await ps('policy', 'set', name, '--policy', join(polDir, 'a.yaml'), '--wait')
    const t0 = performance.now()
    await ps('policy', 'set', name, '--policy', join(polDir, 'b.yaml'), '--wait')
    for (let k = 0; k < 1000; k++) if ((await probe()) !== '403') break
    cliTimes.push(performance.now() - t0)
  }
  results.reloadMs = { library: median(lib), policySetCommand: median(cliTimes) }
} finally {
  spawnSync(process.execPath, [CLI, 'sandbox', 'delete', name], { env, stdio: 'ignore' })
  if (!args.includes('--keep-gateway')) spawnSync(process.execPath, [CLI, 'gateway', 'stop'], { env, stdio: 'ignore' })
  rmSync(polDir, { recursive: true, force: true })
  server.close()
}

const out = join(ROOT, 'bench', 'results')
mkdirSync(out, { recursive: true })
writeFileSync(join(out, 'gateway.json'), JSON.stringify(results, null, 2) + '\n')
console.log(JSON.stringify(results, null, 2))
