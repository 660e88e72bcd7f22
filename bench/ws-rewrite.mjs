#!/usr/bin/env node
// WebSocket text rewrite cost (issue 12, `websocket_credential_rewrite`; not a test: prints medians).
//
//   npm run build && node bench/ws-rewrite.mjs [--messages 2000] [--runs 5] [--rtt-messages 300]
//
// Part 1, in-process, no network: client frames (masked, each text message in two fragments) go through
//   rewrite:  wsClientRewriter (parse, unmask, buffer, substitute a bound placeholder, re-mask)
//   bare:     a PassThrough (what the relay does without the opt-in)
// for 1 KiB and 64 KiB messages. Reported per size: the median per-message time of each over the
// runs and the added time per message.
//
// Part 2, end to end (only inside the test network namespace, like bench/credentials.mjs): a WSS
// echo upstream on 198.18.0.2 with its own test CA and an in-process gateway with TLS inspection. A
// client in a child process opens ONE WebSocket and sends N text messages one after another, each
// holding the sandbox's placeholder, timing each round trip (message out, the upstream's `ok <n>`
// back), over
//   direct:   TLS straight to the upstream (no gateway)
//   relay:    through the gateway, endpoint WITHOUT websocket_credential_rewrite (frames relayed unparsed)
//   rewrite:  through the gateway, endpoint WITH websocket_credential_rewrite + credential_binding
//   parsed:   the same opted-in endpoint, the message holding a same-length string that is not a
//             placeholder (parsed and searched, nothing substituted, no audit line)
// interleaved run by run. Reported: median round trip of each (median over runs of per-run medians),
// rewrite − parsed (the substitution itself, with its audit line), parsed − relay (the frame
// parser), relay − direct (the gateway), and what the upstream got (rewrite: the real value;
// relay, direct and parsed: the placeholder / the other string).
import { PassThrough } from 'node:stream'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadavg, homedir, tmpdir } from 'node:os'
import { createServer } from 'node:https'
import { createHash, randomBytes } from 'node:crypto'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { median, opt, testAddress, runClient, benchSandbox } from './lib.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const N = opt('--messages', 2000)
const RUNS = opt('--runs', 5)
const RTT_N = opt('--rtt-messages', 300)
const { wsClientRewriter, encodeFrame, WsFrameReader } = await import(join(ROOT, 'dist/gateway/http/websocket-rewrite.js'))
const P = 'ghp_' + 'P'.repeat(36)
const V = 'ghp_' + 'v'.repeat(36)
const creds = [{ provider: 'gh', variable: 'GITHUB_TOKEN', placeholder: P, value: V }]

async function once(make, size) {
  const body = Buffer.alloc(size, 0x61)
  Buffer.from(P).copy(body, 10)
  const half = size >> 1
  const input = Buffer.concat([encodeFrame(1, body.subarray(0, half), true, false), encodeFrame(0, body.subarray(half), true)])
  const t = make()
  let got = 0
  t.on('data', d => (got += d.length))
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) if (!t.write(input)) await new Promise(r => t.once('drain', r))
  t.end()
  await new Promise(r => t.once('end', r))
  return Number(process.hrtime.bigint() - t0) / 1e3 / N
}

const rewrite = () => wsClientRewriter({ credentials: () => creds, bound: () => true, violation: (c, r) => { throw new Error(`${c} ${r}`) } })
const bare = () => new PassThrough()
for (const size of [1024, 64 * 1024]) {
  const a = []
  const b = []
  for (let r = 0; r < RUNS; r++) {
    a.push(await once(rewrite, size))
    b.push(await once(bare, size))
  }
  console.log(`${size / 1024} KiB messages: rewrite ${median(a).toFixed(1)} µs/message, bare ${median(b).toFixed(1)} µs/message, added ${(median(a) - median(b)).toFixed(1)} µs (median of ${RUNS} runs × ${N} messages; load ${loadavg()[0].toFixed(1)})`)
}

// ---- Part 2: end to end through the gateway ----
const wantIp = process.env.PODSHELL_TEST_ADDR ?? '198.18.0.2'
const hostIp = testAddress()
if (!hostIp) {
  console.log(`end to end: skipped (the test network address ${wantIp} is not on this host: run inside the test network namespace)`)
  process.exit(0)
}
const d = p => import(join(ROOT, 'dist', p))
const { generateCa } = await d('tls/ca.js')
const { LeafIssuer } = await d('tls/leaf.js')
const { Gateway } = await d('gateway/server.js')
const { parseIp } = await d('gateway/address.js')
const { makePlaceholder } = await d('credentials/placeholder.js')
const paths = await d('config/paths.js')

const VALUE = `ghp_${randomBytes(18).toString('hex')}`
const PLACEHOLDER = makePlaceholder(VALUE)
const OTHER = makePlaceholder(VALUE)
const seen = { value: 0, placeholder: 0, other: 0 }
const work = mkdtempSync(join(homedir(), 'podshell-bench-ws-'))
const testCa = await generateCa('bench ws upstream CA')
const leaves = new LeafIssuer(testCa)
const caFile = join(work, 'upstream-ca.pem')
writeFileSync(caFile, testCa.certPem)
const server = createServer({ SNICallback: (n, cb) => void leaves.get(n).then(l => cb(null, l.context), cb) })
server.on('upgrade', (req, sock, head) => {
  const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
  sock.on('error', () => sock.destroy())
  sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
  const reader = new WsFrameReader(1 << 24)
  let parts = []
  const onData = c => {
    for (const f of reader.push(c)) {
      if (f.opcode === 8) return void sock.end(encodeFrame(8, f.payload.subarray(0, 2), false))
      if (f.opcode !== 1 && f.opcode !== 0) continue
      parts.push(f.payload)
      if (!f.fin) continue
      const text = Buffer.concat(parts)
      parts = []
      if (text.includes(VALUE)) seen.value++
      if (text.includes(PLACEHOLDER)) seen.placeholder++
      if (text.includes(OTHER)) seen.other++
      sock.write(encodeFrame(1, Buffer.from(`ok ${text.length}`), false))
    }
  }
  if (head.length) onData(head)
  sock.on('data', onData)
})
await new Promise(r => server.listen(0, hostIp, r))
const PORT = server.address().port
const HOST = 'ws.bench.test'

// The client: argv = via (a unix socket path, or "direct"), host, ip, port, path, ca file, count, size, placeholder.
const CLIENT = String.raw`
import net from 'node:net'; import tls from 'node:tls'; import fs from 'node:fs';
const [via, host, ip, port, path, caFile, count, size, ph, wsjs] = process.argv.slice(1);
const { encodeFrame, WsFrameReader } = await import(wsjs);
const ca = fs.readFileSync(caFile, 'utf8');
const head = s => new Promise((ok, ko) => { let b = Buffer.alloc(0); const on = d => { b = Buffer.concat([b, d]); const i = b.indexOf('\r\n\r\n'); if (i >= 0) { s.removeListener('data', on); ok([b.subarray(0, i).toString('latin1'), b.subarray(i + 4)]); } }; s.on('data', on); s.once('error', ko); });
let raw;
if (via === 'direct') raw = net.connect({ port: Number(port), host: ip, noDelay: true });
else { raw = net.connect(via); raw.write('CONNECT ' + host + ':' + port + ' HTTP/1.1\r\nHost: ' + host + ':' + port + '\r\n\r\n'); const [h] = await head(raw); if (!/^HTTP\/1.1 200/.test(h)) throw new Error('CONNECT: ' + h.split('\r\n')[0]); }
const t = tls.connect({ socket: raw, servername: host, ca });
await new Promise((ok, ko) => { t.once('secureConnect', ok); t.once('error', ko); });
t.write('GET ' + path + ' HTTP/1.1\r\nHost: ' + host + ':' + port + '\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ' + Buffer.from('0123456789abcdef').toString('base64') + '\r\nSec-WebSocket-Version: 13\r\n\r\n');
const [h, rest] = await head(t);
if (!/^HTTP\/1.1 101/.test(h)) throw new Error('upgrade: ' + h.split('\r\n')[0]);
const reader = new WsFrameReader(1 << 24);
let waiting;
const queue = [];
const take = frames => { for (const f of frames) { if (f.opcode === 8) throw new Error('closed ' + f.payload.readUInt16BE(0)); if (f.opcode === 1) { if (waiting) { const w = waiting; waiting = undefined; w(f); } else queue.push(f); } } };
if (rest.length) take(reader.push(rest));
t.on('data', d => take(reader.push(d)));
const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise(r => (waiting = r)));
const body = Buffer.alloc(Number(size), 0x61); Buffer.from(ph).copy(body, 10);
const samples = [];
for (let i = 0; i <= Number(count); i++) {
  const t0 = process.hrtime.bigint();
  t.write(encodeFrame(1, body, true));
  await next();
  if (i > 0) samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
t.end();
console.log(JSON.stringify({ samples }));
process.exit(0);
`

const data = mkdtempSync(join(tmpdir(), 'podshell-bench-ws-gw-'))
try {
  await benchSandbox(data, 'b', {
    caFile,
    providers: [{ name: 'p', type: 'generic', config: {}, credentials: [{ variable: 'GITHUB_TOKEN', placeholder: PLACEHOLDER }] }],
    policyText: `version: 1
network_policies:
  bench:
    endpoints:
      - { host: ${HOST}, port: ${PORT}, protocol: rest, access: full, path: "/rw/**", credential_binding: { provider: p }, websocket_credential_rewrite: true, allowed_ips: [${hostIp}/32] }
      - { host: ${HOST}, port: ${PORT}, protocol: rest, access: full, path: "/relay/**", allowed_ips: [${hostIp}/32] }
`,
  })
  const gw = new Gateway({ dataDir: data, rescanIntervalMs: 0, tls: true, testHooks: { resolve: async () => [parseIp(hostIp)] } })
  await gw.start()
  const reply = await gw.handleControl(JSON.stringify({ op: 'credentials', sandbox: 'b', credentials: [{ provider: 'p', variable: 'GITHUB_TOKEN', placeholder: PLACEHOLDER, value: VALUE }] }))
  if (!reply.ok) throw new Error(`credentials push failed: ${JSON.stringify(reply)}`)
  const sock = paths.sandboxSocket(data, 'b')
  const bundle = join(paths.gatewaySandboxDir(data, 'b'), 'tls', 'ca-bundle.pem')
  const wsjs = join(ROOT, 'dist/gateway/http/websocket-rewrite.js')
  const variants = [
    ['direct', () => ['direct', HOST, hostIp, String(PORT), '/direct', caFile]],
    ['relay', () => [sock, HOST, hostIp, String(PORT), '/relay/x', bundle]],
    ['rewrite', () => [sock, HOST, hostIp, String(PORT), '/rw/x', bundle]],
    ['parsed', () => [sock, HOST, hostIp, String(PORT), '/rw/y', bundle]],
  ]
  const result = { messages: RTT_N, runs: RUNS, sizes: {} }
  for (const size of [1024, 64 * 1024]) {
    const per = { direct: [], relay: [], rewrite: [], parsed: [] }
    const upstream = {}
    for (let r = 0; r < RUNS; r++) {
      for (const [k, argv] of variants) {
        const before = { ...seen }
        const o = await runClient(CLIENT, [...argv(), String(RTT_N), String(size), k === 'parsed' ? OTHER : PLACEHOLDER, wsjs], { esm: true })
        per[k].push(median(o.samples))
        upstream[k] = Object.fromEntries(Object.keys(seen).map(x => [x, (upstream[k]?.[x] ?? 0) + seen[x] - before[x]]))
      }
    }
    const m = Object.fromEntries(Object.entries(per).map(([k, v]) => [k, median(v)]))
    result.sizes[`${size / 1024}KiB`] = {
      medianRttMs: m,
      rewriteMinusRelayMs: m.rewrite - m.relay,
      rewriteMinusParsedMs: m.rewrite - m.parsed,
      parsedMinusRelayMs: m.parsed - m.relay,
      relayMinusDirectMs: m.relay - m.direct,
      perRunMs: per,
      upstreamGot: upstream,
    }
  }
  result.loadavg = loadavg().map(x => Math.round(x * 100) / 100)
  await gw.stop()
  console.log('end to end (round trip per message, one WebSocket, ' + `${RTT_N} messages × ${RUNS} runs, interleaved):`)
  console.log(JSON.stringify(result, null, 2))
} finally {
  server.close()
  rmSync(data, { recursive: true, force: true })
  rmSync(work, { recursive: true, force: true })
}
