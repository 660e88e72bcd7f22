import { createServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { createReadStream, existsSync, statSync, writeFileSync } from 'node:fs'
import { join, normalize } from 'node:path'
import { generateCa, type Ca } from '../../src/tls/ca.js'
import { LeafIssuer } from '../../src/tls/leaf.js'
import { hostAddress } from './attack.js'
import { createHash } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { WsFrameReader, encodeFrame } from '../../src/gateway/http/websocket-rewrite.js'

/**
 * An HTTPS test server on the test network's address with its OWN test CA (which tests hand to
 * podshell through `tls.extra_ca_files`). It answers any SNI with a leaf for that name, unless
 * `fixedName` pins one name (a certificate for the wrong host).
 *   /ok            "upstream-ok"
 *   /echo          the request body
 *   /whoami        JSON {method, url, host, sni}
 *   /big?mb=N      N MiB
 *   /repo.git/...  files under `gitRoot` (git's dumb HTTP protocol)
 *   any WebSocket upgrade: 101, then each client text message is recorded in `wsMessages` and
 *                  answered with the text `ok <bytes>`; a client close is recorded in `wsCloses`
 * Records every request it parses and how many TLS connections it accepted.
 */
export class TlsUpstream {
  readonly requests: { method: string; url: string; host: string | undefined; rawHeaders: string[]; body: string }[] = []
  readonly wsMessages: { url: string; text: string }[] = []
  readonly wsCloses: { url: string; code: number }[] = []
  connections = 0
  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly ca: Ca,
    readonly caFile: string,
  ) {}

  static async start(o: { dir: string; caName: string; fixedName?: string; gitRoot?: string }): Promise<TlsUpstream> {
    const ca = await generateCa(o.caName)
    const leaves = new LeafIssuer(ca)
    const caFile = join(o.dir, `${o.caName.replace(/\W+/g, '-')}.pem`)
    writeFileSync(caFile, ca.certPem)
    const server = createServer({ SNICallback: (n, cb) => void leaves.get(o.fixedName ?? n).then(l => cb(null, l.context), cb as (e: Error) => void), keepAliveTimeout: 5000 })
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, hostAddress(), () => resolve((server.address() as { port: number }).port))
    })
    const up = new TlsUpstream(server, port, ca, caFile)
    server.on('secureConnection', () => up.connections++)
    server.on('request', (req: IncomingMessage, res: ServerResponse) => up.handle(req, res, o.gitRoot))
    server.on('upgrade', (req: IncomingMessage, sock: Duplex, head: Buffer) => up.websocket(req, sock, head))
    return up
  }

  private handle(req: IncomingMessage, res: ServerResponse, gitRoot: string | undefined): void {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      this.requests.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host, rawHeaders: [...req.rawHeaders], body: Buffer.concat(chunks).toString('latin1') })
      const u = new URL(req.url ?? '/', 'https://x')
      if (u.pathname === '/big') {
        const mb = Number(u.searchParams.get('mb') ?? '1')
        const chunk = Buffer.alloc(256 * 1024, 'x')
        let left = mb * 4
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(mb * 1024 * 1024) })
        const pump = () => {
          while (left > 0) {
            left--
            if (!res.write(chunk)) return void res.once('drain', pump)
          }
          res.end()
        }
        return pump()
      }
      if (u.pathname === '/echo') return void res.end(Buffer.concat(chunks))
      if (u.pathname.startsWith('/headers')) {
        res.setHeader('content-type', 'application/json')
        return void res.end(JSON.stringify({ url: req.url, headers: req.headers }))
      }
      if (u.pathname === '/whoami') {
        res.setHeader('content-type', 'application/json')
        return void res.end(JSON.stringify({ method: req.method, url: req.url, host: req.headers.host, sni: (req.socket as TLSSocket).servername }))
      }
      if (gitRoot && u.pathname.startsWith('/repo.git/')) {
        const p = normalize(join(gitRoot, decodeURIComponent(u.pathname)))
        if (p.startsWith(gitRoot) && existsSync(p) && statSync(p).isFile()) return void createReadStream(p).pipe(res)
        res.statusCode = 404
        return void res.end()
      }
      res.end('upstream-ok')
    })
  }

  private websocket(req: IncomingMessage, sock: Duplex, head: Buffer): void {
    const url = req.url ?? ''
    this.requests.push({ method: req.method ?? '', url, host: req.headers.host, rawHeaders: [...req.rawHeaders], body: '' })
    const accept = createHash('sha1')
      .update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64')
    sock.on('error', () => sock.destroy())
    sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
    const reader = new WsFrameReader(1 << 20)
    let parts: Buffer[] = []
    const onData = (d: Buffer) => {
      let frames
      try {
        frames = reader.push(d)
      } catch {
        return void sock.destroy()
      }
      for (const f of frames) {
        if (f.opcode === 0x8) {
          this.wsCloses.push({ url, code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005 })
          return void sock.end(encodeFrame(0x8, f.payload.subarray(0, 2), false))
        }
        if (f.opcode === 0x9) sock.write(encodeFrame(0xa, f.payload, false))
        if (f.opcode === 0x1 || f.opcode === 0x0) {
          parts.push(f.payload)
          if (!f.fin) continue
          const text = Buffer.concat(parts).toString('utf8')
          parts = []
          this.wsMessages.push({ url, text })
          sock.write(encodeFrame(0x1, Buffer.from(`ok ${Buffer.byteLength(text)}`), false))
        }
      }
    }
    if (head.length > 0) onData(head)
    sock.on('data', onData)
  }

  seen(s: string): number {
    return this.requests.filter(r => r.url.includes(s)).length
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise(resolve => this.server.close(() => resolve()))
  }
}
