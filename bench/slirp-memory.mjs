#!/usr/bin/env node
// The gateway's network helper (slirp4netns on Podman 4) under connection churn, bare podman only:
// one container with slirp4netns opens C short HTTP connections per second to an upstream on this
// host for S seconds (what the gateway does for every allowed request: a new upstream connection),
// and the helper's RSS is sampled during and after. Variants: podman's default (MTU 65520), and the
// options given as arguments, e.g.
//   node bench/slirp-memory.mjs --seconds 20 'slirp4netns' 'slirp4netns:mtu=1500' 'env:MALLOC_MMAP_THRESHOLD_=131072'
// Inside the test network namespace (upstream on PODSHELL_TEST_ADDR, default 198.18.0.2).
import { spawnSync, spawn } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { createServer } from 'node:http'

const args = process.argv.slice(2)
const S = Number(args[args.indexOf('--seconds') + 1]) || 20
const variants = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--seconds')
const HOST = process.env.PODSHELL_TEST_ADDR ?? '198.18.0.2'
const IMAGE = process.env.IMAGE ?? 'localhost/podshell-sandbox:latest'
const big = Buffer.alloc(Number(process.env.DOWNLOAD_MB ?? 0) * 1e6, 'x')
const server = createServer((q, r) => r.end(q.url === '/big' ? big : 'x'.repeat(Number(process.env.BODY ?? 2000))))
await new Promise(res => server.listen(0, HOST, res))
const port = server.address().port
const UID = process.getuid()
const slirpPids = () =>
  readdirSync('/proc').filter(p => /^\d+$/.test(p)).filter(p => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'slirp4netns' && Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))[1]) === UID
    } catch {
      return false
    }
  })
const rssMb = pid => {
  try {
    return Math.round(Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024)
  } catch {
    return undefined
  }
}
// RATE: connections per second per loop (0: as fast as it goes). CLOSE=server: the upstream closes
// first (Connection: close, read to EOF); CLOSE=client: the client closes once it has the body.
const RATE = Number(process.env.RATE ?? 0)
const CLIENT_CLOSES = process.env.CLOSE === 'client'
const LOOP = `
import socket, time, sys
start = time.time(); end = start + ${S}; n = 0; err = 0
while time.time() < end:
    if ${RATE} > 0:
        due = start + n / ${RATE || 1}
        if due > time.time(): time.sleep(due - time.time())
    try:
        s = socket.create_connection(('${HOST}', ${port}), timeout=5)
        if ${CLIENT_CLOSES ? 'True' : 'False'}:
            s.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')
            buf = b''
            while b'x' * 10 not in buf or len(buf.split(b'\\r\\n\\r\\n', 1)[-1]) < ${Number(process.env.BODY ?? 2000)}:
                d = s.recv(65536)
                if not d: break
                buf += d
        else:
            s.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')
            while s.recv(65536): pass
        s.close(); n += 1
    except Exception: err += 1
print(n, err)
`
// DOWNLOAD_MB=n: instead, each loop downloads n MB once (throughput: a fixed malloc threshold turns
// the helper's large buffers into mmap/munmap calls; this shows whether that costs).
const DOWNLOAD_MB = Number(process.env.DOWNLOAD_MB ?? 0)
const DOWNLOAD = `
import socket, time
s = socket.create_connection(('${HOST}', ${port}), timeout=30)
s.sendall(b'GET /big HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')
t = time.time(); n = 0
while True:
    d = s.recv(1 << 20)
    if not d: break
    n += len(d)
print(round(n / (time.time() - t) / 1e6), 'MB/s')
`
const fds = pid => {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return undefined
  }
}
for (const v of variants.length ? variants : ['default']) {
  const name = `slirpmem-${process.pid}`
  const netArgs = v === 'default' || v.startsWith('env:') ? [] : ['--network', v]
  const env = v.startsWith('env:') ? { ...process.env, [v.slice(4).split('=')[0]]: v.slice(4).split('=')[1] } : process.env
  const before = new Set(slirpPids())
  spawnSync('podman', ['--runtime', process.env.RUNTIME ?? 'runc', 'run', '-d', '--name', name, ...netArgs, IMAGE, 'sleep', '600'], { env, stdio: 'ignore' })
  const pid = slirpPids().find(p => !before.has(p))
  const start = rssMb(pid)
  let peak = start
  let peakFds = 0
  const t = setInterval(() => {
    peak = Math.max(peak, rssMb(pid) ?? 0)
    peakFds = Math.max(peakFds, fds(pid) ?? 0)
  }, 500)
  const par = Number(process.env.PAR ?? 4)
  const outs = await Promise.all(Array.from({ length: par }, () => new Promise(res => {
    const c = spawn('podman', ['exec', name, 'python3', '-c', DOWNLOAD_MB ? DOWNLOAD : LOOP], { stdio: ['ignore', 'pipe', 'inherit'] })
    let o = ''
    c.stdout.on('data', d => (o += d))
    c.on('close', () => res(o.trim()))
  })))
  const end = rssMb(pid)
  const endFds = fds(pid)
  await new Promise(r => setTimeout(r, 15000))
  clearInterval(t)
  const later = rssMb(pid)
  const conns = outs.reduce((a, o) => a + Number(o.split(' ')[0] || 0), 0)
  console.log(JSON.stringify({ variant: v, close: CLIENT_CLOSES ? 'client' : 'server', connections_per_s: Math.round(conns / S), connections_and_errors: outs, rss_mb: { start, peak, end, after_15s: later }, helper_fds: { peak: peakFds, end: endFds, after_15s: fds(pid) }, peak_kb_per_open_fd: Math.round(((peak - start) * 1024) / Math.max(1, peakFds)) }))
  spawnSync('podman', ['rm', '-f', '-t', '0', name], { stdio: 'ignore' })
}
server.close()
