/**
 * The gateway's HTTP handling in-process: a real SandboxProxy on a unix socket, raw bytes from a
 * client, a real upstream on 127.0.0.1 that records every request Node's parser reads from its
 * connections (a smuggled request shows up there). No podman; the e2e twins of these attacks are
 * in test/e2e/attack-network.test.ts.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer, type Server } from 'node:http'
import { connect as netConnect, type Socket, type AddressInfo } from 'node:net'
import { mkdtempSync, rmSync, readFileSync, existsSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SandboxProxy, type ProxyLimits } from '../../src/gateway/proxy.js'
import { PolicyEngine } from '../../src/gateway/policy-engine.js'
import { AuditLog } from '../../src/gateway/audit.js'
import { parseIp } from '../../src/gateway/address.js'
import type { TlsInspection } from '../../src/gateway/tls-terminate.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { sandboxAuditDir } from '../../src/config/paths.js'
import { Admission, Contention } from '../../src/gateway/http/admission.js'
import { redact } from '../../src/gateway/audit.js'
import { dechunk, statusOf } from '../helpers/http-raw.js'

let data: string
let upstream: Server
let PORT: number
const seen: string[] = []
let slowRelease: (() => void)[] = []
/** 3 MiB of a non-repeating-per-buffer pattern: more than the forward path's two read buffers. */
const BIG = Buffer.from(Array.from({ length: 3 * 1024 * 1024 }, (_, i) => (i * 7 + (i >> 12)) & 0xff))

const proxies: SandboxProxy[] = []
const upSockets = new Set<Socket>()

function policy(port: number): string {
  return `version: 1
network_policies:
  plain:
    endpoints:
      - { host: plain.test, port: ${port} }
  rw:
    endpoints:
      - { host: rw.test, port: ${port}, protocol: rest, enforcement: enforce, access: read-write }
`
}

async function startProxy(name: string, limits: Partial<ProxyLimits> = {}, tls?: TlsInspection): Promise<{ proxy: SandboxProxy; sock: string }> {
  mkdirSync(sandboxAuditDir(data, name), { recursive: true })
  const engine = PolicyEngine.compile(parsePolicyText(policy(PORT), 'test').policy)
  const proxy = new SandboxProxy({
    sandbox: name,
    engine: () => engine,
    policyVersion: () => 1,
    audit: AuditLog.forSandbox(data, name),
    resolve: async () => [parseIp('127.0.0.1')!],
    permitAddress: ip => ip.text === '127.0.0.1',
    limits: { connectTimeoutMs: 500, ...limits },
    tls,
  })
  const sock = join(data, `${name}.sock`)
  await proxy.listen(sock)
  proxies.push(proxy)
  return { proxy, sock }
}

function audit(name: string): string {
  const dir = sandboxAuditDir(data, name)
  const f = join(dir, 'openshell.log')
  return existsSync(f) ? readFileSync(f, 'utf8') : ''
}

/** Sends raw bytes and returns everything until the server closes (or waitMs). */
function raw(sock: string, bytes: string, waitMs = 1500): Promise<string> {
  return new Promise(res => {
    const c = netConnect(sock, () => c.write(bytes))
    let out = ''
    const t = setTimeout(() => c.destroy(), waitMs)
    c.on('data', d => (out += d.toString('latin1')))
    c.on('close', () => {
      clearTimeout(t)
      res(out)
    })
    c.on('error', () => undefined)
  })
}
const status = statusOf

let sock: string

beforeAll(async () => {
  data = mkdtempSync(join(tmpdir(), 'podshell-gwhttp-'))
  upstream = createServer({ keepAliveTimeout: 5000 }, (req, res) => {
    seen.push(`${req.method} ${req.url}`)
    if (req.url === '/slow') {
      slowRelease.push(() => res.end('slow'))
      return
    }
    if (req.url === '/big') {
      res.writeHead(200, { 'Content-Length': String(BIG.length) })
      res.end(req.method === 'HEAD' ? undefined : BIG)
      return
    }
    if (req.url === '/over' || req.url === '/short') {
      // Raw bytes from the upstream: a head declaring 300,000 bytes, part of the body, then later
      // the rest plus bytes past the declared length (a second response), or nothing (closed early).
      const s = req.socket
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n${'a'.repeat(100_000)}`)
      setTimeout(() => {
        if (req.url === '/short') return void s.destroy()
        s.end(`${'b'.repeat(200_000)}HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled`)
      }, 50)
      return
    }
    const rs = req.socket
    if (req.url === '/over1') {
      // Head, body and a second response in one write: only the declared 5 bytes may be relayed.
      rs.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled')
      return
    }
    if (req.url === '/info' || req.url === '/info1') {
      // 100 Continue and 103 Early Hints before the final response: split across writes, or all in one.
      const infos = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n'
      const final = `HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n${'i'.repeat(300_000)}`
      if (req.url === '/info1') return void rs.write(infos + final)
      rs.write(infos)
      setTimeout(() => rs.write(final), 30)
      return
    }
    if (req.url === '/chunked') {
      // Chunked with a Content-Length-looking chunk inside; bytes after the last chunk are not relayed.
      rs.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab\r\nc\r\n${(100_000).toString(16)}\r\n${'k'.repeat(100_000)}\r\n`)
      setTimeout(() => rs.write('0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled'), 30)
      return
    }
    if (req.url === '/close') {
      // No length: the body is read until the upstream closes.
      rs.write(`HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n${'c'.repeat(50_000)}`)
      setTimeout(() => rs.end('c'.repeat(50_000)), 30)
      return
    }
    if (req.url === '/204' || req.url === '/304') {
      // Body-less statuses with a Content-Length (a 304's names the representation); the connection stays open.
      rs.write(req.url === '/204' ? 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n' : `HTTP/1.1 304 Not Modified\r\nContent-Length: ${BIG.length}\r\n\r\n`)
      return
    }
    req.resume()
    req.on('end', () => res.end('upstream-ok'))
  })
  // An upstream that declines upgrades (426 with a body) and keeps the connection open.
  upstream.on('upgrade', (req, s: Socket) => {
    seen.push(`${req.method} ${req.url} (upgrade)`)
    s.write('HTTP/1.1 426 Upgrade Required\r\nContent-Length: 8\r\n\r\ndeclined')
    // Whatever the client sends next would be parsed as a new request by a real server.
    let buf = ''
    s.on('data', d => {
      buf += (d as Buffer).toString('latin1')
      for (const m of buf.matchAll(/^([A-Z]+) (\S+) HTTP/gm)) seen.push(`${m[1]} ${m[2]}`)
    })
    s.on('end', () => s.end())
  })
  upstream.on('connection', (s: Socket) => {
    upSockets.add(s)
    s.on('close', () => upSockets.delete(s))
  })
  await new Promise<void>(r => upstream.listen(0, '127.0.0.1', r))
  PORT = (upstream.address() as AddressInfo).port
  ;({ sock } = await startProxy('demo'))
})

afterAll(async () => {
  for (const p of proxies) await p.close()
  for (const s of upSockets) s.destroy()
  await new Promise<void>(r => upstream.close(() => r()))
  rmSync(data, { recursive: true, force: true })
})

const SMUGGLED = 'DELETE /admin/users/42 HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 0\r\n\r\n'

describe('framing: Connection may not name framing or identity headers', () => {
  for (const named of ['Content-Length', 'Host', 'Transfer-Encoding', 'keep-alive, content-length']) {
    it(`Connection: ${named} with a smuggled DELETE in the body → 400, logged, the upstream never sees it`, async () => {
      const body = SMUGGLED
      const te = named.toLowerCase().includes('transfer') ? `Transfer-Encoding: chunked\r\n` : `Content-Length: ${body.length}\r\n`
      const payload = te.startsWith('Transfer') ? `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n` : body
      const before = seen.length
      const out = await raw(sock, `POST http://plain.test:${PORT}/conn-named HTTP/1.1\r\nHost: plain.test:${PORT}\r\nConnection: ${named}\r\n${te}\r\n${payload}`)
      expect(status(out)).toBe(400)
      expect(seen.slice(before)).toEqual([])
      expect(audit('demo')).toMatch(new RegExp(`Connection names ${named.split(',').pop()!.trim().toLowerCase()}`))
    })
  }

  it('two identical Content-Length headers → 400 (no guessing which one frames)', async () => {
    const before = seen.length
    const out = await raw(sock, `POST http://plain.test:${PORT}/dupcl HTTP/1.1\r\nHost: plain.test:${PORT}\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello`)
    expect(status(out)).toBe(400)
    expect(seen.slice(before)).toEqual([])
  })

  it('obsolete line folding → 400 from the parser, logged', async () => {
    const before = seen.length
    const out = await raw(sock, `GET http://plain.test:${PORT}/fold HTTP/1.1\r\nHost: plain.test:${PORT}\r\nX-A: a\r\n b\r\n\r\n`)
    expect(status(out)).toBe(400)
    expect(seen.slice(before)).toEqual([])
    expect(audit('demo')).toMatch(/malformed proxy request rejected/)
  })

  it('control: Connection: close, keep-alive is forwarded normally', async () => {
    const out = await raw(sock, `GET http://plain.test:${PORT}/ctl HTTP/1.1\r\nHost: plain.test:${PORT}\r\nConnection: keep-alive, close\r\n\r\n`)
    expect(status(out)).toBe(200)
    expect(seen).toContain('GET /ctl')
  })
})

describe('a forwarded Content-Length body streams raw after the parser read the head (http/head-feed.ts)', () => {
  const get = (path: string, method = 'GET') => `${method} http://plain.test:${PORT}${path} HTTP/1.1\r\nHost: plain.test:${PORT}\r\n\r\n`
  const body = (out: string, from: number, n: number) => Buffer.from(out.slice(from, from + n), 'latin1')

  it('3 MiB arrive byte-exact, then the next request on the same client connection is answered', async () => {
    const out = await raw(sock, get('/big') + get('/ctl-after-big'), 5000)
    const head = out.indexOf('\r\n\r\n') + 4
    expect(status(out)).toBe(200)
    expect(body(out, head, BIG.length).equals(BIG)).toBe(true)
    const rest = out.slice(head + BIG.length)
    expect(status(rest)).toBe(200)
    expect(rest.endsWith('upstream-ok')).toBe(true)
  })

  it('bytes the upstream sends past its Content-Length never reach the client; the next request gets its own answer', async () => {
    const out = await raw(sock, get('/over') + get('/ctl-after-over'), 3000)
    const head = out.indexOf('\r\n\r\n') + 4
    expect(out.slice(head, head + 300_000)).toBe('a'.repeat(100_000) + 'b'.repeat(200_000))
    const rest = out.slice(head + 300_000)
    expect(rest).not.toContain('smuggled')
    expect(status(rest)).toBe(200)
    expect(rest.endsWith('upstream-ok')).toBe(true)
  })

  it('an upstream that closes before its Content-Length: the client connection is closed, short, nothing else follows', async () => {
    const out = await raw(sock, get('/short') + get('/ctl-after-short'), 3000)
    const head = out.indexOf('\r\n\r\n') + 4
    expect(status(out)).toBe(200)
    expect(out.length - head).toBeLessThan(300_000)
    expect(out).not.toContain('upstream-ok')
  })

  it('head, body and the next response in one upstream write: only the declared bytes are relayed', async () => {
    const out = await raw(sock, get('/over1') + get('/ctl-after-over1'))
    expect(status(out)).toBe(200)
    expect(out).toContain('Content-Length: 5\r\n')
    const rest = out.slice(out.indexOf('\r\n\r\n') + 4)
    expect(rest.startsWith('hello')).toBe(true)
    expect(out).not.toContain('smuggled')
    expect(status(rest.slice(5))).toBe(200)
    expect(rest.endsWith('upstream-ok')).toBe(true)
  })

  it('three pipelined requests (raw, raw with trailing bytes, parsed) are answered in order on one connection', async () => {
    const out = await raw(sock, get('/big') + get('/over1') + get('/ctl-pipelined'), 5000)
    const head = out.indexOf('\r\n\r\n') + 4
    expect(body(out, head, BIG.length).equals(BIG)).toBe(true)
    const second = out.slice(head + BIG.length)
    const head2 = second.indexOf('\r\n\r\n') + 4
    expect(status(second)).toBe(200)
    expect(second.slice(head2, head2 + 5)).toBe('hello')
    const third = second.slice(head2 + 5)
    expect(status(third)).toBe(200)
    expect(third.endsWith('upstream-ok')).toBe(true)
    expect(out).not.toContain('smuggled')
  })

  for (const path of ['/info', '/info1']) {
    it(`100 Continue and 103 before the final response (${path === '/info' ? 'separate writes' : 'one write'}): the final body arrives whole`, async () => {
      const out = await raw(sock, `POST http://plain.test:${PORT}${path} HTTP/1.1\r\nHost: plain.test:${PORT}\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi` + get('/ctl-after-info'), 3000)
      const final = out.slice(out.indexOf('HTTP/1.1 200'))
      const head = final.indexOf('\r\n\r\n') + 4
      expect(final).toContain('Content-Length: 300000\r\n')
      expect(final.slice(head, head + 300_000)).toBe('i'.repeat(300_000))
      const rest = final.slice(head + 300_000)
      expect(status(rest)).toBe(200)
      expect(rest.endsWith('upstream-ok')).toBe(true)
    })
  }

  it('chunked: relayed through the parser, bytes after the last chunk are not', async () => {
    const out = await raw(sock, get('/chunked') + get('/ctl-after-chunked'), 3000)
    expect(status(out)).toBe(200)
    const { body: b, rest } = dechunk(out.slice(out.indexOf('\r\n\r\n') + 4))
    expect(b).toBe('ab\r\nc' + 'k'.repeat(100_000))
    expect(out).not.toContain('smuggled')
    expect(status(rest)).toBe(200)
    expect(rest.endsWith('upstream-ok')).toBe(true)
  })

  it('no length (read until the upstream closes): the whole body, framed for the client', async () => {
    const out = await raw(sock, get('/close') + get('/ctl-after-close'), 3000)
    expect(status(out)).toBe(200)
    const { body: b, rest } = dechunk(out.slice(out.indexOf('\r\n\r\n') + 4))
    expect(b).toBe('c'.repeat(100_000))
    expect(status(rest)).toBe(200)
    expect(rest.endsWith('upstream-ok')).toBe(true)
  })

  for (const code of [204, 304]) {
    it(`${code} with a Content-Length: no body is waited for or relayed; the next request is answered`, async () => {
      const out = await raw(sock, get(`/${code}`) + get(`/ctl-after-${code}`), 3000)
      expect(status(out)).toBe(code)
      const rest = out.slice(out.indexOf('\r\n\r\n') + 4)
      expect(status(rest)).toBe(200)
      expect(rest.endsWith('upstream-ok')).toBe(true)
    })
  }

  it('HEAD: the Content-Length of a 3 MiB body but no body; the connection stays usable', async () => {
    const out = await raw(sock, get('/big', 'HEAD') + get('/ctl-after-head'), 3000)
    expect(status(out)).toBe(200)
    expect(out).toContain(`Content-Length: ${BIG.length}`)
    const rest = out.slice(out.indexOf('\r\n\r\n') + 4)
    expect(status(rest)).toBe(200)
    expect(rest.endsWith('upstream-ok')).toBe(true)
  })
})

describe('method override headers are checked as the effective method', () => {
  const cases: [string, string][] = [
    ['X-HTTP-Method-Override: DELETE', '/mo1'],
    ['X-Method-Override: DELETE', '/mo2'],
    ['X-HTTP-Method: delete', '/mo3'],
    ['X-HTTP-Method-Override: PATCH, DELETE', '/mo4'],
  ]
  for (const [h, path] of cases) {
    it(`POST with ${h} under access: read-write → 403, logged, not forwarded`, async () => {
      const out = await raw(sock, `POST http://rw.test:${PORT}${path} HTTP/1.1\r\nHost: rw.test:${PORT}\r\n${h}\r\nContent-Length: 0\r\n\r\n`)
      expect(status(out)).toBe(403)
      expect(seen).not.toContain(`POST ${path}`)
      expect(audit('demo')).toMatch(new RegExp(`${path}.*method override to DELETE \\(POST claiming DELETE\\) refused`))
    })
  }
  it('POST /x?_method=DELETE under read-write → 403', async () => {
    const out = await raw(sock, `POST http://rw.test:${PORT}/mo5?_method=DELETE HTTP/1.1\r\nHost: rw.test:${PORT}\r\nContent-Length: 0\r\n\r\n`)
    expect(status(out)).toBe(403)
    expect(seen.some(s => s.startsWith('POST /mo5'))).toBe(false)
  })
  it('an override that is no method name → 400', async () => {
    const out = await raw(sock, `POST http://rw.test:${PORT}/mo6 HTTP/1.1\r\nHost: rw.test:${PORT}\r\nX-HTTP-Method-Override: DE LETE\r\nContent-Length: 0\r\n\r\n`)
    expect(status(out)).toBe(400)
  })
  it('control: POST claiming PATCH (allowed by read-write) → forwarded; DELETE on an L4 endpoint is not narrowed', async () => {
    expect(status(await raw(sock, `POST http://rw.test:${PORT}/mo7 HTTP/1.1\r\nHost: rw.test:${PORT}\r\nX-HTTP-Method-Override: PATCH\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`))).toBe(200)
    expect(status(await raw(sock, `POST http://plain.test:${PORT}/mo8 HTTP/1.1\r\nHost: plain.test:${PORT}\r\nX-HTTP-Method-Override: DELETE\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`))).toBe(200)
  })
})

describe('size bounds', () => {
  it('a request target over 8 KiB → 414, logged, not forwarded', async () => {
    const path = '/repos' + '/issues'.repeat(1400)
    const out = await raw(sock, `GET http://rw.test:${PORT}${path} HTTP/1.1\r\nHost: rw.test:${PORT}\r\n\r\n`)
    expect(status(out)).toBe(414)
    expect(audit('demo')).toMatch(/request target of \d+ bytes is longer than 8192/)
    expect(seen.some(s => s.startsWith('GET /repos/issues'))).toBe(false)
  })
  it('a request head over 16 KiB → 431, logged', async () => {
    const out = await raw(sock, `GET http://rw.test:${PORT}/h HTTP/1.1\r\nHost: rw.test:${PORT}\r\nX-Pad: ${'a'.repeat(17 * 1024)}\r\n\r\n`)
    expect(status(out)).toBe(431)
    expect(audit('demo')).toMatch(/HPE_HEADER_OVERFLOW/)
  })
})

describe('upgrades go through Node\'s parser', () => {
  it('a declined upgrade gets the upstream\'s response and the connection closes; the bytes sent after it never reach the upstream', async () => {
    const out = await raw(
      sock,
      `GET http://plain.test:${PORT}/up HTTP/1.1\r\nHost: plain.test:${PORT}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n` + SMUGGLED,
      3000,
    )
    expect(status(out)).toBe(426)
    expect(out).toMatch(/declined$/)
    expect(seen).toContain('GET /up (upgrade)')
    expect(seen).not.toContain('DELETE /admin/users/42')
  })
})

describe('per-sandbox admission', () => {
  it('beyond maxInFlight + maxQueued a request gets 503 (logged); queued ones proceed when slots free; another sandbox is unaffected', async () => {
    const a = await startProxy('flood', { maxInFlight: 2, maxQueued: 1 })
    const b = await startProxy('quiet', { maxInFlight: 2, maxQueued: 1 })
    slowRelease = []
    const req = (s: string, p: string) => raw(s, `GET http://plain.test:${PORT}${p} HTTP/1.1\r\nHost: plain.test:${PORT}\r\nConnection: close\r\n\r\n`, 5000)
    const inflight = [req(a.sock, '/slow'), req(a.sock, '/slow'), req(a.sock, '/slow')]
    // Two reach the upstream; the third waits in the queue; a fourth is refused.
    for (let i = 0; i < 100 && slowRelease.length < 2; i++) await new Promise(r => setTimeout(r, 10))
    expect(slowRelease.length).toBe(2)
    expect(status(await req(a.sock, '/refused'))).toBe(503)
    expect(audit('flood')).toMatch(/too many concurrent requests from this sandbox/)
    // The other sandbox has its own slots.
    expect(status(await req(b.sock, '/other'))).toBe(200)
    slowRelease.splice(0).forEach(f => f())
    for (let i = 0; i < 100 && slowRelease.length < 1; i++) await new Promise(r => setTimeout(r, 10))
    slowRelease.splice(0).forEach(f => f())
    expect((await Promise.all(inflight)).map(status)).toEqual([200, 200, 200])
  })

  it('Admission passes a freed slot to the oldest waiter', async () => {
    const ad = new Admission(1, 2)
    const r1 = await ad.acquire()
    const order: number[] = []
    const w2 = ad.acquire().then(r => (order.push(2), r))
    const w3 = ad.acquire().then(r => (order.push(3), r))
    expect(await ad.acquire()).toBeUndefined()
    r1!()
    ;(await w2)!()
    ;(await w3)!()
    expect(order).toEqual([2, 3])
    expect(ad.inFlight).toBe(0)
  })

  it('Admission with Contention: alone a sandbox gets maxInFlight; while another is active, contendedInFlight; back to full once it is quiet', async () => {
    let now = 0
    const c = new Contention(1000, () => now)
    const a = new Admission(8, 100, c, 2)
    const b = new Admission(8, 100, c, 2)
    const held = await Promise.all(Array.from({ length: 3 }, () => a.acquire()))
    expect(a.inFlight).toBe(3) // alone: more than 2
    const rb = await b.acquire() // B becomes active: A is capped at 2
    expect(a.cap).toBe(2)
    const waiting = [a.acquire(), a.acquire()]
    expect(a.queued).toBe(2)
    held[0]!() // 3 → 2: the cap fell, the slot is not passed on
    expect(a.inFlight).toBe(2)
    expect(a.queued).toBe(2)
    held[1]!() // at the cap: the slot passes to the oldest waiter
    await waiting[0]
    expect(a.inFlight).toBe(2)
    expect(a.queued).toBe(1)
    rb!()
    now = 1500 // B quiet for longer than the window: A's waiters get its full share again
    held[2]!()
    await waiting[1]
    expect(a.cap).toBe(8)
    expect(a.queued).toBe(0)
    c.forget(b)
  })
})

describe('the same rules inside an inspected CONNECT (tls-terminate.ts; cleartext after CONNECT takes the decrypted path)', () => {
  // Inspection without a usable CA: only the cleartext path (no handshake) can be served, and it
  // is the same request handler as decrypted TLS.
  const tls = { leaf: () => Promise.reject(new Error('no CA in this test')), upstreamRoots: () => '' }
  let isock: string
  beforeAll(async () => {
    ;({ sock: isock } = await startProxy('inspect', { maxTargetBytes: 8 * 1024 }, tls))
  })
  const inner = (out: string) => Number([...out.matchAll(/HTTP\/1\.1 (\d{3})/g)][1]?.[1] ?? 0)
  const connect = () => `CONNECT rw.test:${PORT} HTTP/1.1\r\nHost: rw.test:${PORT}\r\n\r\n`

  it('Connection: Content-Length smuggling a DELETE → 400, logged, the upstream never sees it', async () => {
    const before = seen.length
    const out = await raw(isock, connect() + `POST /t1 HTTP/1.1\r\nHost: rw.test:${PORT}\r\nConnection: Content-Length\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`)
    expect(status(out)).toBe(200)
    expect(inner(out)).toBe(400)
    expect(seen.slice(before)).toEqual([])
    expect(audit('inspect')).toMatch(/DENIED POST \S+\/t1 .*Connection names content-length/)
  })
  it('Connection: Host → 400', async () => {
    const out = await raw(isock, connect() + `GET /t2 HTTP/1.1\r\nHost: rw.test:${PORT}\r\nConnection: Host\r\n\r\n`)
    expect(inner(out)).toBe(400)
    expect(seen).not.toContain('GET /t2')
  })
  it('POST with X-HTTP-Method-Override: DELETE → 403 (checked as DELETE), logged', async () => {
    const out = await raw(isock, connect() + `POST /t3 HTTP/1.1\r\nHost: rw.test:${PORT}\r\nX-HTTP-Method-Override: DELETE\r\nContent-Length: 0\r\n\r\n`)
    expect(inner(out)).toBe(403)
    expect(seen).not.toContain('POST /t3')
    expect(audit('inspect')).toMatch(/method override to DELETE/)
  })
  it('a target over the bound → 414, not forwarded', async () => {
    const out = await raw(isock, connect() + `GET /t4${'/issues'.repeat(1400)} HTTP/1.1\r\nHost: rw.test:${PORT}\r\n\r\n`)
    expect(inner(out)).toBe(414)
    expect(seen.some(x => x.startsWith('GET /t4'))).toBe(false)
  })
  it('control: an allowed request inside the CONNECT is forwarded', async () => {
    const out = await raw(isock, connect() + `GET /t5 HTTP/1.1\r\nHost: rw.test:${PORT}\r\nConnection: close\r\n\r\n`)
    expect(inner(out)).toBe(200)
    expect(seen).toContain('GET /t5')
  })
})

describe('audit redaction of long targets (src/gateway/audit.ts redact)', () => {
  // The former regex, kept here only as the reference for the rewrite's output.
  const reference = (s: string) => s.replace(/(\/[^\s?#"]*|https?:\/\/[^\s?#"]*)[?#][^\s"\]]*/g, '$1')
  it('drops queries and fragments exactly as the former regex did, on 5,000 random strings', () => {
    const alphabet = ['/', '?', '#', ']', ' ', '"', 'a', 'h', ':', '=', '\t']
    let seed = 42
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n)
    for (let k = 0; k < 5000; k++) {
      const s = Array.from({ length: 1 + rnd(24) }, () => alphabet[rnd(alphabet.length)]).join('')
      expect({ s, out: redact(s) }).toEqual({ s, out: reference(s) })
    }
  })
  it('an 8 KiB path with a query at the end and a 1 MiB one without: query dropped, path kept', () => {
    const p = '/repos' + '/issues'.repeat(1150)
    expect(redact(`GET ${p}?token=x done`)).toBe(`GET ${p} done`)
    const big = '/a'.repeat(512 * 1024)
    expect(redact(big)).toBe(big)
  })
})
