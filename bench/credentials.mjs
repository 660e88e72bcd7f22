#!/usr/bin/env node
// Placeholder-credential substitution benchmark (issue 12; not a test: prints medians).
//
//   npm run build && node bench/credentials.mjs [--requests 300] [--runs 5]
//
// Runs as an unprivileged user inside the test network namespace, like bench/tls.mjs. An in-process
// gateway with TLS inspection serves one sandbox whose policy has ONE terminated endpoint with a
// `credential_binding`; an HTTPS server with its own test CA listens on 198.18.0.2. A client in a
// child process sends N sequential keep-alive GETs through one CONNECT, with
//   with:     `Authorization: Bearer <the sandbox's placeholder>`  (found, bound, substituted)
//   without:  `Authorization: Bearer <a same-length random string>` (searched, nothing substituted)
// on the same endpoint, interleaved run by run. Reported: the median per-request time of each and
// their difference (target ≤ 1 ms p50), and that the upstream saw the real value (with) / not (without).
import { createServer } from 'node:https'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { homedir, tmpdir, loadavg } from 'node:os'
import { randomBytes } from 'node:crypto'
import { median, opt, testAddress, runClient, benchSandbox } from './lib.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const N = opt('--requests', 300)
const RUNS = opt('--runs', 5)
const note = m => process.stderr.write(`[bench credentials] ${m}\n`)
const d = p => import(join(ROOT, 'dist', p))
const { generateCa } = await d('tls/ca.js')
const { LeafIssuer } = await d('tls/leaf.js')
const { Gateway } = await d('gateway/server.js')
const { parseIp } = await d('gateway/address.js')
const { makePlaceholder } = await d('credentials/placeholder.js')
const paths = await d('config/paths.js')

const wantIp = process.env.PODSHELL_TEST_ADDR ?? '198.18.0.2'
const hostIp = testAddress()
if (!hostIp) throw new Error(`the test network address ${wantIp} is not on this host: run inside the test network namespace`)

const VALUE = `ghp_${randomBytes(18).toString('hex')}`
const PLACEHOLDER = makePlaceholder(VALUE)
const OTHER = makePlaceholder(VALUE)
let sawValue = 0
let sawOther = 0

const work = mkdtempSync(join(homedir(), 'podshell-bench-cred-'))
const testCa = await generateCa('bench upstream CA')
const leaves = new LeafIssuer(testCa)
const caFile = join(work, 'upstream-ca.pem')
writeFileSync(caFile, testCa.certPem)
const small = Buffer.alloc(512, 0x62)
const server = createServer({ SNICallback: (n, cb) => void leaves.get(n).then(l => cb(null, l.context), cb), keepAliveTimeout: 30_000 }, (req, res) => {
  const a = req.headers.authorization ?? ''
  if (a.includes(VALUE)) sawValue++
  if (a.includes(OTHER)) sawOther++
  res.writeHead(200, { 'Content-Length': String(small.length) })
  res.end(small)
})
await new Promise(r => server.listen(0, hostIp, r))
const PORT = server.address().port

const CLIENT = String.raw`
const net = require('net'), tls = require('tls'), https = require('https'), fs = require('fs');
const [proxy, host, port, count, caFile, auth] = process.argv.slice(1);
const ca = fs.readFileSync(caFile, 'utf8');
const now = () => Number(process.hrtime.bigint()) / 1e6;
const a = new https.Agent({ keepAlive: true, maxSockets: 1 });
a.createConnection = (o, cb) => {
  const s = net.connect(proxy);
  s.once('connect', () => s.write('CONNECT ' + host + ':' + port + ' HTTP/1.1\r\nHost: ' + host + ':' + port + '\r\n\r\n'));
  let buf = '';
  const onData = d => { buf += d; if (buf.includes('\r\n\r\n')) { s.removeListener('data', onData); if (!/^HTTP\/1.1 200/.test(buf)) cb(new Error(buf.split('\r\n')[0])); else cb(null, tls.connect({ socket: s, servername: host, ca })); } };
  s.on('data', onData); s.on('error', cb);
};
const get = () => new Promise((ok, ko) => https.get({ host, port: Number(port), path: '/api/x', agent: a, servername: host, ca, headers: { authorization: 'Bearer ' + auth } }, r => { if (r.statusCode !== 200) ko(new Error('status ' + r.statusCode)); r.resume(); r.on('end', ok); }).on('error', ko));
(async () => {
  await get();
  const samples = [];
  for (let i = 0; i < Number(count); i++) { const t = now(); await get(); samples.push(now() - t); }
  console.log(JSON.stringify({ samples }));
})().catch(e => { console.error(e.message); process.exit(1); });
`

const data = mkdtempSync(join(tmpdir(), 'podshell-bench-cred-gw-'))
try {
  await benchSandbox(data, 'b', {
    caFile,
    providers: [{ name: 'p', type: 'generic', config: {}, credentials: [{ variable: 'GITHUB_TOKEN', placeholder: PLACEHOLDER }] }],
    policyText: `version: 1
network_policies:
  bench:
    endpoints:
      - { host: cred.bench.test, port: ${PORT}, protocol: rest, access: full, credential_binding: { provider: p }, allowed_ips: [${hostIp}/32] }
`,
  })
  const gw = new Gateway({ dataDir: data, rescanIntervalMs: 0, tls: true, testHooks: { resolve: async () => [parseIp(hostIp)] } })
  await gw.start()
  const reply = await gw.handleControl(JSON.stringify({ op: 'credentials', sandbox: 'b', credentials: [{ provider: 'p', variable: 'GITHUB_TOKEN', placeholder: PLACEHOLDER, value: VALUE }] }))
  if (!reply.ok) throw new Error(`credentials push failed: ${JSON.stringify(reply)}`)
  const sock = paths.sandboxSocket(data, 'b')
  const bundle = join(paths.gatewaySandboxDir(data, 'b'), 'tls', 'ca-bundle.pem')
  const per = { with: [], without: [] }
  for (let r = 0; r < RUNS; r++) {
    for (const [k, auth] of [['with', PLACEHOLDER], ['without', OTHER]]) {
      const o = await runClient(CLIENT, [sock, 'cred.bench.test', String(PORT), String(N), bundle, auth])
      per[k].push(median(o.samples))
    }
  }
  await gw.stop()
  const out = {
    requests: N,
    runs: RUNS,
    loadavg: loadavg().map(x => Math.round(x * 100) / 100),
    medianRequestMsWith: median(per.with),
    medianRequestMsWithout: median(per.without),
    addedMsP50: median(per.with) - median(per.without),
    perRunWith: per.with,
    perRunWithout: per.without,
    upstreamSawRealValue: sawValue,
    upstreamSawUnsubstituted: sawOther,
  }
  note(`${N} keep-alive requests x ${RUNS} runs, load ${out.loadavg.join(' ')}`)
  console.log(JSON.stringify(out, null, 2))
} finally {
  server.close()
  rmSync(data, { recursive: true, force: true })
  rmSync(work, { recursive: true, force: true })
}
