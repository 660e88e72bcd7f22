/**
 * TLS inspection in the gateway, in-process: a real Gateway (tls: true) on a temp data dir, real
 * TLS clients on the sandbox's unix socket that trust only the sandbox bundle, real HTTPS upstreams
 * on 127.0.0.1 with their own test CA (passed like tls.extra_ca_files). No podman; the e2e suite
 * (test/e2e/tls-inspection.test.ts) runs the real clients in real sandboxes.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { request, type IncomingMessage } from 'node:http'
import { createServer as createHttpsServer, type Server } from 'node:https'
import { connect as tlsConnect, type TLSSocket, type PeerCertificate } from 'node:tls'
import { connect as netConnect, type Socket, type AddressInfo } from 'node:net'
import { mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Gateway } from '../../src/gateway/server.js'
import { parseIp, type IpAddress } from '../../src/gateway/address.js'
import { PolicyStore } from '../../src/policy/store.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { sandboxSocket, sandboxPolicyDir, sandboxEgressDir, sandboxAuditDir, sandboxDir, gatewaySandboxDir } from '../../src/config/paths.js'
import { ensureCa, generateCa, rotateCa } from '../../src/tls/ca.js'
import { LeafIssuer } from '../../src/tls/leaf.js'
import { prepareSandboxTrust, writeUpstreamRoots } from '../../src/tls/trust.js'
import { sniMismatch } from '../../src/gateway/tls-identity.js'
import { canonicalizeHost } from '../../src/gateway/address.js'
import { dechunk, statusOf } from '../helpers/http-raw.js'

const HOSTS = ['api.test', 'front.test', 'other.test', 'skip.test', 'wrongname.test', 'untrusted.test', 'plain.test', 'audit.test', 'ws.test', 'wsro.test']
const resolve = async (host: string): Promise<IpAddress[]> => {
  if (!HOSTS.includes(host)) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
  return [parseIp('127.0.0.1')!]
}

let data: string
let sock: string
let gw: Gateway
let bundle: string
let good: Server // serves a leaf for whatever name is asked, from the trusted test CA
let wrong: Server // always a leaf for api.test (trusted CA, wrong name for others)
let untrusted: Server // a CA nobody configured
let PORT: number
let WRONG: number
let UNTRUSTED: number
let upstreamConnections = 0

function echoServer(issue: (name: string) => Promise<{ context: import('node:tls').SecureContext }>): Server {
  const perSocket = new WeakMap<object, number>()
  const s = createHttpsServer({ SNICallback: (n, cb) => void issue(n).then(l => cb(null, l.context), cb) }, (req, res) => {
    const seen = (perSocket.get(req.socket) ?? 0) + 1
    perSocket.set(req.socket, seen)
    // An upstream that closed a kept-alive connection just as the next request arrived.
    if (req.url?.startsWith('/drop-if-reused') && seen > 1) return void req.socket.destroy()
    if (bodyRoute(req, res)) return
    let n = 0
    req.on('data', c => (n += c.length))
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, host: req.headers.host, bytes: n, sni: (req.socket as TLSSocket).servername })
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) })
      res.end(body)
    })
  })
  s.on('secureConnection', () => upstreamConnections++)
  s.on('upgrade', (_req, sock: Socket) => {
    sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
    sock.on('data', d => sock.write(`echo:${d.toString()}`))
  })
  return s
}

/** 3 MiB of a non-repeating-per-buffer pattern (above the raw-relay threshold, tls-feed.ts RAW_MIN). */
const BIG = Buffer.from(Array.from({ length: 3 * 1024 * 1024 }, (_, i) => (i * 7 + (i >> 12)) & 0xff))

/** Responses for the body-relay tests: Node's own framing, or raw bytes on the upstream socket. */
function bodyRoute(req: IncomingMessage, res: import('node:http').ServerResponse): boolean {
  const u = req.url ?? ''
  const rs = req.socket
  if (u === '/big') return void res.writeHead(200, { 'Content-Length': String(BIG.length) }).end(req.method === 'HEAD' ? undefined : BIG), true
  if (u === '/over1') return void rs.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled'), true
  if (u === '/over' || u === '/short') {
    // 2,000,000 bytes declared, half sent; then the rest plus a second response, or a close.
    rs.write(`HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n${'a'.repeat(1_000_000)}`)
    setTimeout(() => (u === '/short' ? rs.destroy() : rs.write(`${'b'.repeat(1_000_000)}HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled`)), 50)
    return true
  }
  if (u === '/info') {
    res.writeContinue()
    res.writeEarlyHints({ link: '</a.css>; rel=preload' })
    setTimeout(() => res.writeHead(200, { 'Content-Length': '2000000' }).end('i'.repeat(2_000_000)), 30)
    return true
  }
  if (u === '/chunked') {
    res.writeHead(200, { 'Content-Type': 'text/plain' })
    res.write('ab\r\nc')
    setTimeout(() => res.end('k'.repeat(100_000)), 30)
    return true
  }
  if (u === '/204' || u === '/304') return void res.writeHead(Number(u.slice(1)), { 'Content-Length': String(BIG.length) }).end(), true
  return false
}

const listen = (s: Server) => new Promise<number>(r => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)))

function policy(): string {
  return `version: 1
network_policies:
  github:
    endpoints:
      - { host: api.test, port: ${PORT}, protocol: rest, enforcement: enforce, access: read-only }
      - { host: wrongname.test, port: ${WRONG}, protocol: rest, enforcement: enforce, access: read-only }
      - { host: untrusted.test, port: ${UNTRUSTED}, protocol: rest, enforcement: enforce, access: read-only }
      - { host: audit.test, port: ${PORT}, protocol: rest, access: read-only }
      - { host: ws.test, port: ${PORT}, protocol: websocket, enforcement: enforce, access: read-write }
      - { host: wsro.test, port: ${PORT}, protocol: websocket, enforcement: enforce, access: read-only }
      - host: front.test
        port: ${PORT}
        protocol: rest
        enforcement: enforce
        rules:
          - allow: { method: GET, path: "/repos/**" }
        deny_rules:
          - { method: GET, path: "/repos/secret/**" }
  cdn:
    endpoints:
      - { host: other.test, port: ${PORT} }
      - { host: skip.test, port: ${PORT}, tls: skip }
`
}

/** CONNECT over the sandbox socket. */
function connectTunnel(target: string): Promise<{ status: number; socket: Socket }> {
  return new Promise((res, rej) => {
    const r = request({ socketPath: sock, method: 'CONNECT', path: target, headers: { Host: target }, agent: false })
    r.on('connect', (m: IncomingMessage, s: Socket) => res({ status: m.statusCode!, socket: s }))
    r.on('error', rej)
    r.end()
  })
}

/** CONNECT + TLS with the sandbox bundle as the only trust. */
async function tlsVia(target: string, servername: string | undefined): Promise<TLSSocket> {
  const t = await connectTunnel(target)
  expect(t.status).toBe(200)
  return new Promise((res, rej) => {
    const s = tlsConnect({ socket: t.socket, ...(servername !== undefined ? { servername } : {}), ca: bundle, ALPNProtocols: ['h2', 'http/1.1'], checkServerIdentity: () => undefined })
    s.once('secureConnect', () => res(s))
    s.once('error', rej)
  })
}

/** Sends one request on a (kept-alive) socket and reads one Content-Length-framed response. */
function exchange(s: Socket, method: string, path: string, host: string, body = ''): Promise<{ status: number; json: Record<string, unknown>; raw: string }> {
  return new Promise((res, rej) => {
    let out = ''
    const onData = (d: Buffer) => {
      out += d.toString('latin1')
      const end = out.indexOf('\r\n\r\n')
      if (end === -1) return
      const len = Number(/content-length: (\d+)/i.exec(out.slice(0, end))?.[1] ?? -1)
      if (len >= 0 && out.length - end - 4 >= len) {
        s.off('data', onData)
        const text = out.slice(end + 4, end + 4 + len)
        res({ status: Number(out.slice(9, 12)), json: text ? (JSON.parse(text) as Record<string, unknown>) : {}, raw: out })
      }
    }
    s.on('data', onData)
    s.once('error', rej)
    s.write(`${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  })
}

const auditText = () => {
  const dir = sandboxAuditDir(data, 'demo')
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : '')
  return read('openshell.log')
}

beforeAll(async () => {
  data = mkdtempSync(join(tmpdir(), 'podshell-gwtls-'))
  const testCa = await generateCa('upstream test CA')
  const testLeaves = new LeafIssuer(testCa)
  const otherCa = await generateCa('nobody trusts this CA')
  const otherLeaves = new LeafIssuer(otherCa)
  good = echoServer(n => testLeaves.get(n))
  wrong = echoServer(() => testLeaves.get('api.test'))
  untrusted = echoServer(n => otherLeaves.get(n))
  ;[PORT, WRONG, UNTRUSTED] = await Promise.all([listen(good), listen(wrong), listen(untrusted)])
  writeFileSync(join(data, 'test-ca.pem'), testCa.certPem)
  // Host side: CA, upstream roots (no host store here: only the test CA), the sandbox's bundle.
  const ca = await ensureCa(data, { user: 'tester', host: 'unit' })
  const roots = writeUpstreamRoots(data, { hostBundle: undefined, extraCaFiles: [join(data, 'test-ca.pem')] })
  for (const d of [sandboxDir(data, 'demo'), sandboxPolicyDir(data, 'demo'), sandboxEgressDir(data, 'demo'), sandboxAuditDir(data, 'demo')]) mkdirSync(d, { recursive: true, mode: 0o700 })
  prepareSandboxTrust(data, 'demo', ca, roots)
  bundle = readFileSync(join(gatewaySandboxDir(data, 'demo'), 'tls/ca-bundle.pem'), 'utf8')
  new PolicyStore(sandboxPolicyDir(data, 'demo')).add(parsePolicyText(policy(), 'test').policy, 'test')
  gw = new Gateway({ dataDir: data, rescanIntervalMs: 0, tls: true, testHooks: { resolve, permitAddress: ip => ip.text === '127.0.0.1' } })
  await gw.start()
  sock = sandboxSocket(data, 'demo')
})

afterAll(async () => {
  await gw?.stop()
  for (const s of [good, wrong, untrusted]) s?.close()
  rmSync(data, { recursive: true, force: true })
})

describe('TLS inspection (in-process)', () => {
  it('GET allowed, POST denied under access: read-only, each request on one keep-alive connection checked', async () => {
    const s = await tlsVia(`api.test:${PORT}`, 'api.test')
    // The client sees the gateway's leaf for the name it asked, from the sandbox CA; ALPN http/1.1.
    const peer = s.getPeerCertificate(true) as PeerCertificate
    expect(peer.subjectaltname).toBe('DNS:api.test')
    expect(peer.issuer.CN).toBe('podshell sandbox CA tester@unit')
    expect(s.alpnProtocol).toBe('http/1.1')
    const a = await exchange(s, 'GET', '/repos/x?token=secret', `api.test:${PORT}`)
    expect(a.status).toBe(200)
    expect(a.json).toMatchObject({ method: 'GET', url: '/repos/x?token=secret', sni: 'api.test' })
    const b = await exchange(s, 'GET', '/second', `api.test:${PORT}`)
    expect(b.status).toBe(200)
    const c = await exchange(s, 'POST', '/repos/x/issues', `api.test:${PORT}`, '{"title":"x"}')
    expect(c.status).toBe(403)
    expect(c.json).toMatchObject({ error: 'policy_denied', policy: 'github', rule: 'POST /repos/x/issues', layer: 'l7', protocol: 'rest', method: 'POST', path: '/repos/x/issues', host: 'api.test', port: PORT })
    expect(c.json.detail).toMatch(/POST \/repos\/x\/issues not permitted by policy/)
    expect(c.json.rule_missing).toMatchObject({ type: 'rest_allow' })
    // The denied request's body was discarded; the next request on the connection is decided on its own.
    expect((await exchange(s, 'GET', '/third', `api.test:${PORT}`)).json).toMatchObject({ url: '/third' })
    s.destroy()
    const log = auditText()
    expect(log).toMatch(/HTTP:GET \[INFO\] ALLOWED GET https:\/\/api.test:\d+\/repos\/x /)
    expect(log).toMatch(/HTTP:POST .*DENIED POST https:\/\/api.test:\d+\/repos\/x\/issues/)
    // Never the query value.
    expect(log).not.toContain('secret')
  })

  it('path rules and deny rules apply to decrypted requests', async () => {
    const s = await tlsVia(`front.test:${PORT}`, 'front.test')
    expect((await exchange(s, 'GET', '/repos/a', `front.test:${PORT}`)).status).toBe(200)
    expect((await exchange(s, 'GET', '/repos/secret/a', `front.test:${PORT}`)).json.detail).toMatch(/blocked by deny rule/)
    s.destroy()
    const t = await tlsVia(`front.test:${PORT}`, 'front.test')
    expect((await exchange(t, 'GET', '/user', `front.test:${PORT}`)).status).toBe(403)
    t.destroy()
  })

  it('domain fronting: a Host other than the CONNECT target is refused and logged', async () => {
    const s = await tlsVia(`front.test:${PORT}`, 'front.test')
    const r = await exchange(s, 'GET', '/repos/a', `other.test:${PORT}`)
    expect(r.status).toBe(403)
    expect(r.json).toMatchObject({ error: 'policy_denied', host: 'front.test' })
    expect(r.json.detail).toBe(`Host other.test:${PORT} does not match the CONNECT target front.test:${PORT} (domain fronting)`)
    expect(auditText()).toMatch(/DENIED GET https:\/\/front.test:\d+\/repos\/a .*domain fronting/)
  })

  it('SNI must name the CONNECT target: mismatch, IP literal and no SNI fail the handshake, logged', async () => {
    await expect(tlsVia(`front.test:${PORT}`, 'other.test')).rejects.toThrow()
    await expect(tlsVia(`front.test:${PORT}`, '')).rejects.toThrow()
    await expect(tlsVia(`front.test:${PORT}`, undefined)).rejects.toThrow()
    await new Promise(r => setTimeout(r, 100))
    const log = auditText()
    expect(log).toMatch(/DENIED -> front.test:\d+ .*TLS refused: SNI other.test does not match the CONNECT target front.test \(domain fronting\)/)
    expect(log).toMatch(/TLS refused: ClientHello without SNI/)
  })

  it('hostile ClientHellos (NUL in SNI, 64 KiB SNI, IP-literal SNI) are refused cleanly; the gateway keeps serving', async () => {
    /** A minimal TLS 1.2 ClientHello with one server_name, split into records of at most 16 KiB. */
    const clientHello = (name: Buffer): Buffer => {
      const u16 = (n: number) => Buffer.from([n >> 8, n & 255])
      const sni = Buffer.concat([u16(name.length + 3), Buffer.from([0]), u16(name.length), name])
      const ext = Buffer.concat([u16(0), u16(sni.length), sni])
      const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32, 7), Buffer.from([0]), u16(2), Buffer.from([0xc0, 0x2b]), Buffer.from([1, 0]), u16(ext.length), ext])
      const hs = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 255, body.length & 255]), body])
      const recs: Buffer[] = []
      for (let i = 0; i < hs.length; i += 16384) {
        const part = hs.subarray(i, i + 16384)
        recs.push(Buffer.concat([Buffer.from([0x16, 3, 1]), u16(part.length), part]))
      }
      return Buffer.concat(recs)
    }
    for (const name of [Buffer.from('front.test\0.evil.test'), Buffer.alloc(65000, 'a'), Buffer.from('127.0.0.1')]) {
      const t = await connectTunnel(`front.test:${PORT}`)
      const reply = await new Promise<Buffer>(res => {
        const got: Buffer[] = []
        t.socket.on('data', d => got.push(d))
        t.socket.on('close', () => res(Buffer.concat(got)))
        t.socket.on('error', () => undefined)
        t.socket.write(clientHello(name))
      })
      // Nothing but (at most) a TLS alert record came back: no certificate was sent.
      expect(reply.length === 0 || reply[0] === 0x15).toBe(true)
    }
    const s = await tlsVia(`front.test:${PORT}`, 'front.test')
    expect((await exchange(s, 'GET', '/repos/ok', `front.test:${PORT}`)).status).toBe(200)
    s.destroy()
    expect(auditText()).toMatch(/TLS refused: SNI "127\.0\.0\.1" is an IP literal/)
  })

  it('sniMismatch: case, trailing dot, NUL, oversize, IP literal', () => {
    const h = canonicalizeHost('api.test')
    expect(sniMismatch('API.Test', h)).toBeUndefined()
    expect(sniMismatch('api.test.', h)).toBeUndefined()
    expect(sniMismatch('api.test\0.evil', h)).toMatch(/control/)
    expect(sniMismatch('a'.repeat(65536), h)).toMatch(/65536 bytes/)
    expect(sniMismatch('198.18.0.2', canonicalizeHost('198.18.0.2'))).toMatch(/IP literal/)
    expect(sniMismatch(false, h)).toMatch(/without SNI/)
    expect(sniMismatch('api.test..', h)).toBeDefined()
  })

  it('a stalled handshake is closed after the handshake timeout; others are unaffected', async () => {
    const t = await connectTunnel(`api.test:${PORT}`)
    // A partial TLS record header, then silence.
    t.socket.write(Buffer.from([0x16, 0x03, 0x01]))
    const closed = new Promise(r => t.socket.once('close', r))
    const s = await tlsVia(`api.test:${PORT}`, 'api.test')
    expect((await exchange(s, 'GET', '/x', `api.test:${PORT}`)).status).toBe(200)
    s.destroy()
    await closed
    expect(auditText()).toMatch(/TLS handshake not completed within/)
  }, 30_000)

  it('upstream with an untrusted CA or a certificate for another name: 502 deny body, logged', async () => {
    const s = await tlsVia(`untrusted.test:${UNTRUSTED}`, 'untrusted.test')
    const r = await exchange(s, 'GET', '/', `untrusted.test:${UNTRUSTED}`)
    expect(r.status).toBe(502)
    expect(r.json).toMatchObject({ error: 'upstream_certificate_invalid', host: 'untrusted.test', layer: 'l7' })
    expect(r.json.detail).toMatch(/upstream certificate of untrusted.test:\d+ refused: (SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)/)
    s.destroy()
    const w = await tlsVia(`wrongname.test:${WRONG}`, 'wrongname.test')
    const r2 = await exchange(w, 'GET', '/', `wrongname.test:${WRONG}`)
    expect(r2.status).toBe(502)
    expect(r2.json.detail).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/)
    w.destroy()
    expect(auditText()).toMatch(/DENIED GET https:\/\/wrongname.test:\d+\/ .*ERR_TLS_CERT_ALTNAME_INVALID/)
  })

  it('tls: skip and L4 endpoints are tunnelled: the client sees the upstream\'s own chain', async () => {
    for (const host of ['skip.test', 'other.test']) {
      const t = await connectTunnel(`${host}:${PORT}`)
      const s = tlsConnect({ socket: t.socket, servername: host, ca: readFileSync(join(data, 'test-ca.pem'), 'utf8') })
      await new Promise<void>((res, rej) => {
        s.once('secureConnect', res)
        s.once('error', rej)
      })
      expect(s.getPeerCertificate().issuer.CN).toBe('upstream test CA')
      s.destroy()
    }
  })

  it('a tunnel (tls: skip, L4) whose ClientHello names another host, or none, is closed before the upstream sees a byte, logged', async () => {
    for (const [host, servername, why] of [
      ['skip.test', 'api.test', /tunnel closed: SNI api.test does not match the CONNECT target skip.test/],
      ['other.test', undefined, /tunnel closed: ClientHello without SNI/],
    ] as const) {
      const before = upstreamConnections
      const t = await connectTunnel(`${host}:${PORT}`)
      expect(t.status).toBe(200)
      const s = tlsConnect({ socket: t.socket, ...(servername ? { servername } : {}), ca: readFileSync(join(data, 'test-ca.pem'), 'utf8') })
      const outcome = await new Promise<string>(res => {
        s.once('secureConnect', () => res('handshake completed'))
        s.once('error', e => res(`error: ${e.message}`))
        s.once('close', () => res('closed'))
      })
      expect(outcome).not.toBe('handshake completed')
      s.destroy()
      expect(upstreamConnections - before).toBe(0) // no TLS session with the upstream: the hello never reached it
      expect(auditText()).toMatch(why)
    }
  })

  it('cleartext HTTP after CONNECT to an inspected endpoint gets the same rules', async () => {
    const t = await connectTunnel(`api.test:${PORT}`)
    const r = await exchange(t.socket, 'DELETE', '/repos/x', `api.test:${PORT}`)
    expect(r.status).toBe(403)
    expect(r.json).toMatchObject({ error: 'policy_denied', method: 'DELETE' })
    t.socket.destroy()
  })

  it('audit enforcement: a would-be denial passes and is logged as audit', async () => {
    const s = await tlsVia(`audit.test:${PORT}`, 'audit.test')
    expect((await exchange(s, 'POST', '/x', `audit.test:${PORT}`)).status).toBe(200)
    s.destroy()
    expect(auditText()).toMatch(/POST https:\/\/audit.test:\d+\/x .*allowed because enforcement is audit/)
  })

  it('wss:// inside inspected TLS: the upgrade is decided like ws://, then relayed; a narrower endpoint refuses it', async () => {
    const s = await tlsVia(`ws.test:${PORT}`, 'ws.test')
    const got = await new Promise<string>(res => {
      let out = ''
      s.on('data', d => {
        out += d
        if (out.includes('echo:hello')) res(out)
      })
      s.write(`GET /socket HTTP/1.1\r\nHost: ws.test:${PORT}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`)
      setTimeout(() => s.write('hello'), 200)
    })
    expect(got).toMatch(/^HTTP\/1.1 101/)
    s.destroy()
    const u = await tlsVia(`wsro.test:${PORT}`, 'wsro.test')
    const denied = await new Promise<string>(res => {
      let out = ''
      u.on('data', d => (out += d))
      u.on('close', () => res(out))
      u.write(`GET /socket HTTP/1.1\r\nHost: wsro.test:${PORT}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`)
    })
    expect(denied).toMatch(/^HTTP\/1.1 403/)
    expect(denied).toMatch(/upgrade not permitted/)
  })

  it('a pooled connection the upstream dropped: a GET is retried once on a new one, a POST gets 502', async () => {
    const s = await tlsVia(`audit.test:${PORT}`, 'audit.test')
    expect((await exchange(s, 'GET', '/warm', `audit.test:${PORT}`)).status).toBe(200)
    const r = await exchange(s, 'GET', '/drop-if-reused', `audit.test:${PORT}`)
    expect(r.status).toBe(200)
    expect(r.json).toMatchObject({ url: '/drop-if-reused' })
    expect((await exchange(s, 'GET', '/warm2', `audit.test:${PORT}`)).status).toBe(200)
    const p = await exchange(s, 'POST', '/drop-if-reused', `audit.test:${PORT}`, 'x')
    expect(p.status).toBe(502)
    s.destroy()
  })

  it('upstream connections are pooled across client connections', async () => {
    const before = upstreamConnections
    for (let i = 0; i < 5; i++) {
      const s = await tlsVia(`api.test:${PORT}`, 'api.test')
      expect((await exchange(s, 'GET', `/n${i}`, `api.test:${PORT}`)).status).toBe(200)
      s.destroy()
    }
    expect(upstreamConnections - before).toBeLessThanOrEqual(1)
  })

  it('CA rotation: a running sandbox keeps its CA; after its bundle is rewritten (restart) the gateway signs with the new one', async () => {
    const s0 = await tlsVia(`api.test:${PORT}`, 'api.test')
    const oldIssuer = s0.getPeerCertificate(true).issuerCertificate.fingerprint256
    s0.destroy()
    const { ca } = await rotateCa(data, { user: 'tester', host: 'rotated' })
    // Not restarted yet: still the old CA, which the sandbox's bundle holds.
    const s1 = await tlsVia(`api.test:${PORT}`, 'api.test')
    expect(s1.getPeerCertificate(true).issuerCertificate.fingerprint256).toBe(oldIssuer)
    s1.destroy()
    // What `sandbox restart` does: the bundle is rewritten with the current CA.
    prepareSandboxTrust(data, 'demo', ca, readFileSync(join(data, 'gateway/tls/upstream-roots.pem'), 'utf8'))
    bundle = readFileSync(join(gatewaySandboxDir(data, 'demo'), 'tls/ca-bundle.pem'), 'utf8')
    const s2 = await tlsVia(`api.test:${PORT}`, 'api.test')
    expect((s2.getPeerCertificate(true) as PeerCertificate).issuer.CN).toBe('podshell sandbox CA tester@rotated')
    expect((await exchange(s2, 'GET', '/after-rotation', `api.test:${PORT}`)).status).toBe(200)
    s2.destroy()
  })

  it('the CA key is nowhere in the sandbox tls dir', () => {
    const dir = join(gatewaySandboxDir(data, 'demo'), 'tls')
    for (const f of ['ca-bundle.pem', 'podshell-ca.pem', 'truststore.p12']) expect(readFileSync(join(dir, f), 'latin1')).not.toMatch(/PRIVATE KEY/)
    void netConnect
  })
})

describe('response bodies over inspected TLS: a Content-Length body of >= 1 MiB is relayed raw (http/head-feed.ts)', () => {
  const get = (path: string, method = 'GET') => `${method} ${path} HTTP/1.1\r\nHost: api.test:${PORT}\r\n\r\n`
  /** Pipelines `bytes` on one inspected connection; everything the client reads in `waitMs` (or until closed). */
  const collect = async (bytes: string, waitMs = 2500): Promise<{ out: string; closed: boolean }> => {
    const s = await tlsVia(`api.test:${PORT}`, 'api.test')
    return new Promise(res => {
      let out = ''
      let closed = false
      s.on('data', (d: Buffer) => (out += d.toString('latin1')))
      s.on('error', () => undefined)
      s.on('close', () => (closed = true))
      const t = setTimeout(() => {
        s.destroy()
        res({ out, closed })
      }, waitMs)
      s.on('close', () => {
        clearTimeout(t)
        res({ out, closed })
      })
      s.write(bytes)
    })
  }
  const bodyAt = (out: string) => out.indexOf('\r\n\r\n') + 4
  const st = statusOf
  /** The next response is the echo server's JSON for `path`. */
  const isEcho = (out: string, path: string) => st(out) === 200 && out.includes(`"url":"${path}"`)


  it('3 MiB arrive byte-exact, then the next request on the same connection is answered', async () => {
    const { out } = await collect(get('/big') + get('/after-big'), 5000)
    const b = bodyAt(out)
    expect(st(out)).toBe(200)
    expect(Buffer.from(out.slice(b, b + BIG.length), 'latin1').equals(BIG)).toBe(true)
    expect(isEcho(out.slice(b + BIG.length), '/after-big')).toBe(true)
  })

  it('bytes past a raw Content-Length never reach the client; the next request gets its own answer', async () => {
    const { out } = await collect(get('/over') + get('/after-over'), 4000)
    const b = bodyAt(out)
    expect(out.slice(b, b + 2_000_000)).toBe('a'.repeat(1_000_000) + 'b'.repeat(1_000_000))
    expect(out).not.toContain('smuggled')
    expect(isEcho(out.slice(b + 2_000_000), '/after-over')).toBe(true)
  })

  it('a short body under the threshold with a second response behind it: 5 bytes relayed, nothing else; the next request is answered', async () => {
    const { out } = await collect(get('/over1') + get('/after-over1'))
    const b = bodyAt(out)
    expect(out.slice(b, b + 5)).toBe('hello')
    expect(out).not.toContain('smuggled')
    expect(isEcho(out.slice(b + 5), '/after-over1')).toBe(true)
  })

  it('an upstream that closes before its Content-Length: the client connection is closed short, nothing else follows', async () => {
    const { out, closed } = await collect(get('/short') + get('/after-short'), 4000)
    expect(st(out)).toBe(200)
    expect(closed).toBe(true)
    expect(out.length - bodyAt(out)).toBeLessThan(2_000_000)
    expect(out).not.toContain('/after-short')
  })

  it('100 Continue and 103 before the final response: the 2 MB body arrives whole', async () => {
    const { out } = await collect(get('/info') + get('/after-info'), 4000)
    const final = out.slice(out.indexOf('HTTP/1.1 200'))
    const b = bodyAt(final)
    expect(final.slice(b, b + 2_000_000)).toBe('i'.repeat(2_000_000))
    expect(isEcho(final.slice(b + 2_000_000), '/after-info')).toBe(true)
  })

  it('chunked: through the parser; the next request is answered', async () => {
    const { out } = await collect(get('/chunked') + get('/after-chunked'))
    const { body, rest } = dechunk(out.slice(bodyAt(out)))
    expect(body).toBe('ab\r\nc' + 'k'.repeat(100_000))
    expect(isEcho(rest, '/after-chunked')).toBe(true)
  })

  for (const code of [204, 304]) {
    it(`${code} with a Content-Length of 3 MiB: no body waited for; the next request is answered`, async () => {
      const { out } = await collect(get(`/${code}`) + get(`/after-${code}`))
      expect(st(out)).toBe(code)
      expect(isEcho(out.slice(bodyAt(out)), `/after-${code}`)).toBe(true)
    })
  }

  it('HEAD of 3 MiB: no body; the next request is answered', async () => {
    const { out } = await collect(get('/big', 'HEAD') + get('/after-head'))
    expect(st(out)).toBe(200)
    expect(out.toLowerCase()).toContain(`content-length: ${BIG.length}\r\n`)
    expect(isEcho(out.slice(bodyAt(out)), '/after-head')).toBe(true)
  })
})
