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
const server = createServer((_q, r) => r.end('x'.repeat(Number(process.env.BODY ?? 2000))))
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
const LOOP = `
import socket, time, sys
end = time.time() + ${S}; n = 0; err = 0
while time.time() < end:
    try:
        s = socket.create_connection(('${HOST}', ${port}), timeout=5)
        s.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')
        while s.recv(65536): pass
        s.close(); n += 1
    except Exception: err += 1
print(n, err)
`
for (const v of variants.length ? variants : ['default']) {
  const name = `slirpmem-${process.pid}`
  const netArgs = v === 'default' || v.startsWith('env:') ? [] : ['--network', v]
  const env = v.startsWith('env:') ? { ...process.env, [v.slice(4).split('=')[0]]: v.slice(4).split('=')[1] } : process.env
  const before = new Set(slirpPids())
  spawnSync('podman', ['--runtime', process.env.RUNTIME ?? 'runc', 'run', '-d', '--name', name, ...netArgs, IMAGE, 'sleep', '600'], { env, stdio: 'ignore' })
  const pid = slirpPids().find(p => !before.has(p))
  const start = rssMb(pid)
  let peak = start
  const t = setInterval(() => (peak = Math.max(peak, rssMb(pid) ?? 0)), 500)
  const par = Number(process.env.PAR ?? 4)
  const outs = await Promise.all(Array.from({ length: par }, () => new Promise(res => {
    const c = spawn('podman', ['exec', name, 'python3', '-c', LOOP], { stdio: ['ignore', 'pipe', 'inherit'] })
    let o = ''
    c.stdout.on('data', d => (o += d))
    c.on('close', () => res(o.trim()))
  })))
  const end = rssMb(pid)
  await new Promise(r => setTimeout(r, 15000))
  clearInterval(t)
  const later = rssMb(pid)
  console.log(JSON.stringify({ variant: v, connections_and_errors: outs, rss_mb: { start, peak, end, after_15s: later } }))
  spawnSync('podman', ['rm', '-f', '-t', '0', name], { stdio: 'ignore' })
}
server.close()
