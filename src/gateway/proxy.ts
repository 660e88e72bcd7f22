/**
 * The egress proxy of ONE sandbox, served on that sandbox's unix socket. The socket a connection
 * arrives on is the sandbox's identity: no header, token or address a process inside the sandbox
 * sends can select another sandbox's policy.
 *
 * Handles:
 *  - CONNECT host:port (HTTPS and anything else tunnelled): decided on host and port, then the two
 *    sockets are piped directly (no per-chunk JavaScript work beyond stream backpressure).
 *  - absolute-form plain HTTP (`GET http://host/path HTTP/1.1`): decided on method, host, port,
 *    path and query (L7 REST rules), then forwarded with streaming bodies, HTTP/1.1 keep-alive
 *    towards the client, and framing regenerated towards the upstream. The response head is
 *    Node's parser's; a Content-Length body then streams raw, counted to its length
 *    (http/head-feed.ts).
 *  - Upgrade (WebSocket over ws://): decided as the GET it is, sent with http.request; only the
 *    upstream's 101 as Node's parser reads it (http's 'upgrade' event) makes it a raw tunnel.
 *
 * HTTP framing is Node's own (llhttp, strict mode) on both sides: no status line, header or
 * length is parsed by hand here.
 *
 * Refused before any policy decision (400): origin-form requests (`GET /x`, i.e. not a proxy
 * request), `https://` absolute-form (use CONNECT), userinfo or fragments in the target, a Host
 * header that names another host than the target, and the framing rules shared with decrypted
 * requests (src/gateway/http/framing.ts: `Connection` naming Content-Length, Transfer-Encoding or
 * Host; Transfer-Encoding other than plain `chunked` or together with Content-Length; repeated
 * Content-Length). A target over `maxTargetBytes` is 414. Node's llhttp parser (strict mode)
 * already refuses CR/LF/NUL in the target, obsolete line folding, differing duplicate
 * Content-Length and bare-LF framing; those surface as `clientError` and are answered 400 and
 * logged here too. Method-override claims are decided as the effective method
 * (decideEffective). Each sandbox's requests pass its own Admission (src/gateway/http/admission.ts):
 * one sandbox's flood queues behind its own slots, never another's.
 *
 * Resolution: the gateway resolves names itself (all addresses), checks EVERY candidate against
 * the SSRF rules of the endpoint that allowed the request (src/gateway/address.ts), and connects
 * to an address it checked — there is no second lookup a rebinding resolver could answer
 * differently.
 *
 * This module is the per-sandbox server and its decisions; the pieces it uses: http/forward.ts
 * (the absolute-form target and the forward of an admitted request), tunnel.ts (dial, tunnel
 * wiring), http/denial.ts (the 403 body), http/upgrade.ts (the ws:// relay), proxy-io.ts.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { lstatSync, unlinkSync, chmodSync, openSync, closeSync, renameSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { threadId } from 'node:worker_threads'
import { parseAuthority, parseIp, HostError, type CanonicalHost, type IpAddress } from './address.js'
import { PolicyEngine, checkResolved, type Decision } from './policy-engine.js'
import { TlsTerminator, type RelayTunnel } from './tls-terminate.js'
import { sniMismatch } from './tls-identity.js'
import { peekClientHello } from './client-hello.js'
import { decideEffective, forwardHeaders, requestRefusal, responseHeaders } from './http/framing.js'
import { forwardAdmitted, proxyTarget, type HttpLog, type Target } from './http/forward.js'
import { denyBody } from './http/denial.js'
import { dial, pipeTunnel, type Dialed, type TunnelGate } from './tunnel.js'
import { Admission } from './http/admission.js'
import { DEFAULT_LIMITS, type ProxyLimits, type ProxyOptions } from './proxy-options.js'
import { endJson, hostHeaderCount, sendJson, withTimeout, type ReadRelay } from './proxy-io.js'
import { HeadFeed } from './http/head-feed.js'
import { relayUpgrade, type UpgradeOptions } from './http/upgrade.js'
import type { Transform } from 'node:stream'

export { DEFAULT_LIMITS, systemResolver, type ProxyLimits, type ProxyOptions, type Resolver } from './proxy-options.js'

/** How a refusal is answered: through the HTTP server's response, or raw on the client socket. */
type Reply = (status: number, text: string, body: Record<string, unknown>) => void

interface Tunnel {
  readonly host: CanonicalHost
  readonly port: number
  readonly ip: string
  readonly client: Socket
  readonly upstream: Socket
  /** Re-decides the tunnel under the current policy (CONNECT: host/port; upgrade: the GET). */
  readonly recheck: (engine: PolicyEngine) => Decision
}

export class SandboxProxy {
  readonly sandbox: string
  readonly limits: ProxyLimits
  private readonly opts: ProxyOptions
  private readonly server: Server
  private readonly tunnels = new Set<Tunnel>()
  private readonly sockets = new Set<Socket>()
  private socketPath: string | undefined
  private socketIno = -1
  /** drain() was called: no new connections; each response says `Connection: close`. */
  private draining = false
  private readonly terminator: TlsTerminator | undefined
  /** This sandbox's concurrency slots (plain HTTP, upgrades and decrypted requests share them). */
  readonly admission: Admission
  allowed = 0
  denied = 0

  constructor(opts: ProxyOptions) {
    this.opts = opts
    this.sandbox = opts.sandbox
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits }
    this.admission = new Admission(this.limits.maxInFlight, this.limits.maxQueued, opts.contention, this.limits.contendedInFlight)
    this.server = createServer({
      maxHeaderSize: this.limits.maxHttpHeaderBytes,
      // Bodies stream for as long as they need (large uploads); only the head has a deadline.
      requestTimeout: 0,
      headersTimeout: this.limits.headersTimeoutMs,
      keepAliveTimeout: this.limits.keepAliveTimeoutMs,
      insecureHTTPParser: false,
      // Checked (and logged) in target(): a missing Host is refused there, with an audit line.
      requireHostHeader: false,
      joinDuplicateHeaders: false,
    })
    this.server.maxConnections = this.limits.maxConnections
    this.terminator = opts.tls
      ? new TlsTerminator({
          sandbox: this.sandbox,
          engine: opts.engine,
          audit: opts.audit,
          tls: opts.tls,
          limits: { ...this.limits, handshakeTimeoutMs: Math.min(this.limits.headersTimeoutMs, 10_000), maxFreeSockets: this.limits.upstreamPoolPerHost },
          addressCheck: (d, label, port, addrs) => this.addressCheck(d, label, port, addrs),
          denyBody: (d, method, host, port, path, detail) => denyBody(this.sandbox, d, method, host, port, path, detail),
          forwardHeaders: (raw, response) => (response ? responseHeaders(raw) : forwardHeaders(raw)),
          sendJson,
          endJson,
          relayUpgrade: (t, req, target, held, logged, opts) => this.upgradeOver(t, req, target, held, logged, opts),
          refusal: req => requestRefusal(req, this.limits.maxTargetBytes),
          admission: this.admission,
          counted: ok => void (ok ? this.allowed++ : this.denied++),
          credentials: opts.credentials ?? (() => []),
        })
      : undefined
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    // A handler that throws closes its own connection; it never takes the gateway down.
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res).catch(() => res.destroy()))
    this.server.on('connect', (req: IncomingMessage, sock: Socket, head: Buffer) => this.onConnect(req, sock, head).catch(() => sock.destroy()))
    this.server.on('upgrade', (req: IncomingMessage, sock: Socket, head: Buffer) => this.onUpgrade(req, sock, head).catch(() => sock.destroy()))
    this.server.on('clientError', (err: NodeJS.ErrnoException, sock: Socket) => this.onClientError(err, sock))
    this.server.on('drop', () => {
      this.denied++
      this.opts.audit.network({ activity: 'open', action: 'denied', host: '-', port: 0, policy: null, reason: `connection limit of ${this.limits.maxConnections} reached; connection dropped` })
    })
  }

  /**
   * Listens on `path`. The socket is bound under a temporary name in the same directory, made 0600
   * (umask where the thread may set it, then chmod) and renamed over `path` (rename(2) is atomic:
   * a client connecting to `path` reaches either the old listener or this one, never nothing).
   * That is also how a sandbox moves between the main loop and a worker thread without its socket
   * going away (src/gateway/fairness.ts). A stale socket (or symlink) left by a dead gateway is
   * replaced; any other kind of file there is an error (never replace what we did not create).
   * Only the user (and so the sandbox's bridge, which runs as the user's uid) may connect.
   */
  listen(path: string): Promise<void> {
    try {
      const st = lstatSync(path)
      if (!st.isSocket() && !st.isSymbolicLink()) throw new Error(`${path} exists and is not a socket`)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
    }
    const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${threadId}.${randomBytes(4).toString('hex')}`)
    // A unix socket path holds at most 107 bytes; a 63-character sandbox name under the data dir
    // can exceed it. Such a path is bound through the directory's descriptor
    // (/proc/self/fd/N/<name>), which creates the same socket file.
    let dirFd: number | undefined
    let bindPath = tmp
    if (Buffer.byteLength(tmp) > 100) {
      dirFd = openSync(dirname(tmp), 'r')
      bindPath = `/proc/self/fd/${dirFd}/${basename(tmp)}`
    }
    const closeDir = () => {
      if (dirFd !== undefined) closeSync(dirFd)
      dirFd = undefined
    }
    return new Promise((resolve, reject) => {
      const onErr = (e: Error) => {
        closeDir()
        reject(e)
      }
      this.server.once('error', onErr)
      // Worker threads cannot set the process umask: the temporary name is chmod'ed before it
      // becomes `path`, so the socket is never reachable under `path` with wider modes.
      let old: number | undefined
      try {
        old = process.umask(0o177)
      } catch {
        old = undefined
      }
      try {
        this.server.listen(bindPath, () => {
          closeDir()
          this.server.off('error', onErr)
          try {
            chmodSync(tmp, 0o600)
            renameSync(tmp, path)
            this.socketIno = lstatSync(path).ino
          } catch (e) {
            this.server.close()
            reject(e as Error)
            return
          }
          this.socketPath = path
          resolve()
        })
      } finally {
        if (old !== undefined) process.umask(old)
      }
    })
  }

  get path(): string | undefined {
    return this.socketPath
  }

  get connections(): number {
    return this.sockets.size
  }

  /**
   * Stops accepting (the socket file may already belong to another listener: a worker that took
   * this sandbox over); open connections are served to the end of their current response, each
   * answered `Connection: close`, and tunnels run until they end. Resolves when the last one closed.
   */
  drain(): Promise<void> {
    this.draining = true
    this.opts.contention?.forget(this.admission)
    const closed = new Promise<void>(resolve => this.server.close(() => resolve()))
    this.server.closeIdleConnections()
    return closed
  }

  /** Stops listening, closes every client connection and tunnel, removes the socket file (when it is still this listener's). */
  async close(): Promise<void> {
    this.opts.contention?.forget(this.admission)
    this.terminator?.dropPool()
    for (const t of this.tunnels) {
      t.client.destroy()
      t.upstream.destroy()
    }
    for (const s of this.sockets) s.destroy()
    if (this.server.listening) await new Promise<void>(resolve => this.server.close(() => resolve()))
    // server.close() unlinks the temporary name it was bound to; the socket file is removed here,
    // without following symlinks, only when it is still this listener's (after a move it is
    // another thread's).
    if (this.socketPath) {
      try {
        // A drained proxy was superseded: the file is another listener's (its inode number may
        // even be this one's, reused by the filesystem).
        const st = lstatSync(this.socketPath)
        if (!this.draining && st.isSocket() && st.ino === this.socketIno) unlinkSync(this.socketPath)
      } catch {
        // gone
      }
    }
  }

  /**
   * Re-decides every open tunnel under the policy now in force and closes the ones it no longer
   * allows (revoking an endpoint cuts live connections, not only new ones). Returns how many.
   */
  revalidate(): number {
    const engine = this.opts.engine()
    // Pooled upstream connections of inspected endpoints were checked under the old policy.
    this.terminator?.dropPool()
    let closed = 0
    for (const t of [...this.tunnels]) {
      const d = t.recheck(engine)
      const ip = parseIp(t.ip)
      const addrOk = d.allowed && ip ? this.addressCheck(d, t.host.host, t.port, [ip]).ok : false
      if (d.allowed && addrOk) continue
      closed++
      this.tunnels.delete(t)
      t.client.destroy()
      t.upstream.destroy()
      const v = this.opts.policyVersion()
      this.opts.audit.network({
        activity: 'close', action: 'denied', host: t.host.host, port: t.port, ip: t.ip, policy: d.policy,
        reason: `open connection closed: policy${v !== null ? ` revision ${v}` : ''} no longer allows it (${d.allowed ? 'address rules' : d.reason})`,
        bytesIn: t.upstream.bytesRead, bytesOut: t.upstream.bytesWritten,
      })
    }
    return closed
  }

  // -------------------------------------------------------------------------------------------
  // Shared pieces
  // -------------------------------------------------------------------------------------------

  private addressCheck(d: Decision, label: string, port: number, addrs: IpAddress[]): { ok: true; addresses: IpAddress[] } | { ok: false; reason: string } {
    const permit = this.opts.permitAddress
    if (!permit) return checkResolved(d, label, port, addrs)
    // Test hook: permitted addresses skip the SSRF rules; every other address still meets them.
    const rest = addrs.filter(a => !permit(a))
    if (rest.length === 0) return { ok: true, addresses: addrs }
    const r = checkResolved(d, label, port, rest)
    return r.ok ? { ok: true, addresses: addrs } : r
  }

  private async resolveChecked(d: Decision, host: CanonicalHost, port: number): Promise<{ ok: true; addresses: IpAddress[] } | { ok: false; reason: string; resolution?: boolean }> {
    let addrs: IpAddress[]
    if (host.kind === 'ip') {
      addrs = [host.ip]
    } else if (!d.resolve) {
      // The engine decides whether a name may be resolved (policy-engine.ts Decision.resolve).
      return { ok: false, reason: `${host.host} is not resolved: no policy allows it` }
    } else {
      try {
        addrs = await withTimeout(this.opts.resolve(host.host), this.limits.resolveTimeoutMs, `DNS resolution of ${host.host} timed out`)
      } catch (e) {
        return { ok: false, reason: `cannot resolve ${host.host}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, resolution: true }
      }
    }
    return this.addressCheck(d, host.host, port, addrs)
  }

  // -------------------------------------------------------------------------------------------
  // CONNECT
  // -------------------------------------------------------------------------------------------

  private async onConnect(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
    client.on('error', () => client.destroy())
    const refuse: Reply = (status, text, body) => endJson(client, status, text, body)
    const headBytes = req.rawHeaders.reduce((n, h) => n + h.length + 2, (req.url ?? '').length + 20)
    if (headBytes > this.limits.maxConnectHeaderBytes) {
      this.denied++
      this.opts.audit.network({ activity: 'open', action: 'denied', host: '-', port: 0, policy: null, reason: `CONNECT request head larger than ${this.limits.maxConnectHeaderBytes} bytes` })
      return refuse(431, 'Request Header Fields Too Large', { error: 'bad_request', detail: 'request head too large' })
    }
    let host: CanonicalHost
    let port: number
    try {
      ;({ host, port } = parseAuthority(req.url ?? ''))
      if (hostHeaderCount(req) > 1) throw new HostError('more than one Host header')
      const h = req.headers.host
      if (h !== undefined) {
        const hh = parseAuthority(h, port)
        if (hh.host.host !== host.host || hh.port !== port) throw new HostError('Host header does not match the CONNECT target')
      }
    } catch (e) {
      this.denied++
      const reason = `malformed CONNECT target: ${(e as Error).message}`
      this.opts.audit.network({ activity: 'open', action: 'denied', host: '-', port: 0, policy: null, reason })
      return refuse(400, 'Bad Request', { error: 'bad_request', detail: reason })
    }
    const engine = this.opts.engine()
    const inspect = this.terminator !== undefined && engine.inspects(host, port)
    const d = engine.decideConnect(host, port, { inspect: this.terminator !== undefined })
    const denyConnect = (reason: string, policy: string | null) => {
      this.denied++
      this.opts.audit.network({ activity: 'open', action: 'denied', mode: 'deny', host: host.host, port, policy, rule: d.matched, reason, providers: d.providers })
      refuse(403, 'Forbidden', { error: 'policy_denied', detail: `CONNECT ${host.host}:${port} not permitted by policy`, reason, policy: policy ?? '-', host: host.host, port })
    }
    if (!d.allowed) return denyConnect(d.reason, d.policy)
    const checked = await this.resolveChecked(d, host, port)
    if (!checked.ok) return denyConnect(checked.reason, d.policy)
    if (client.destroyed) return
    if (inspect) {
      // Terminated: every request inside is decided on its own (src/gateway/tls-terminate.ts);
      // upstream connections are made per request, to the addresses checked here.
      this.allowed++
      this.opts.audit.network({ activity: 'open', action: 'allowed', mode: d.mode, host: host.host, port, policy: d.policy, rule: d.matched, reason: `${d.reason}; TLS inspected: each request is checked against the L7 rules`, providers: d.providers })
      client.setNoDelay(true)
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      this.terminator!.take(client, head, host, port, checked.addresses)
      return
    }
    let up: Dialed
    try {
      up = await dial(checked.addresses, port, this.limits.connectTimeoutMs, client)
    } catch (e) {
      this.allowed++
      this.opts.audit.network({ activity: 'fail', action: 'allowed', mode: d.mode, host: host.host, port, policy: d.policy, rule: d.matched, reason: `upstream unreachable: ${(e as Error).message}`, providers: d.providers })
      return refuse(502, 'Bad Gateway', { error: 'upstream_unreachable', detail: `cannot connect to ${host.host}:${port}` })
    }
    const upstream = up.socket
    if (client.destroyed) {
      upstream.destroy()
      return
    }
    this.allowed++
    this.opts.audit.network({ activity: 'open', action: 'allowed', mode: d.mode, host: host.host, port, ip: up.ip, policy: d.policy, rule: d.matched, reason: d.reason, providers: d.providers })
    const tunnel: Tunnel = { host, port, ip: up.ip, client, upstream, recheck: e => e.decideConnect(host, port) }
    this.tunnels.add(tunnel)
    // A tunnel's TLS is not terminated, but its ClientHello is read: a name other than the CONNECT
    // target is domain fronting (issue 11) and ends the tunnel before a byte reaches the upstream.
    // An IP-literal target has no name to compare (clients send no SNI for it); non-TLS first
    // bytes (SSH and other L4 protocols) pass.
    const gate =
      host.kind === 'name'
        ? (first: Buffer) => {
            const hello = peekClientHello(first)
            if (hello.kind === 'need-more') return 'wait'
            const why = hello.kind === 'invalid' ? hello.reason : hello.kind === 'hello' ? sniMismatch(hello.sni, host) : undefined
            if (why === undefined) return 'pass'
            this.denied++
            this.opts.audit.network({ activity: 'close', action: 'denied', mode: 'deny', host: host.host, port, ip: up.ip, policy: d.policy, rule: d.matched, reason: `tunnel closed: ${why}`, providers: d.providers })
            return 'refuse'
          }
        : undefined
    this.pipeTunnel(tunnel, head, 'HTTP/1.1 200 Connection Established\r\n\r\n', up.arm, gate)
  }

  /** Wires a tunnel (src/gateway/tunnel.ts); it leaves this proxy's table when it closes. */
  private pipeTunnel(t: Tunnel, head: Buffer, greeting: string | Buffer | undefined, arm?: () => void, gate?: TunnelGate, clientFilter?: Transform): void {
    const done = () => {
      this.tunnels.delete(t)
      t.client.destroy()
      t.upstream.destroy()
    }
    pipeTunnel(t, { idleTimeoutMs: this.limits.idleTimeoutMs, done }, head, greeting, arm, gate, clientFilter)
  }

  // -------------------------------------------------------------------------------------------
  // Plain HTTP
  // -------------------------------------------------------------------------------------------

  private badRequest(reply: Reply, detail: string, status: 400 | 414 = 400): void {
    this.denied++
    this.opts.audit.network({ activity: 'open', action: 'denied', host: '-', port: 0, policy: null, reason: `${status === 414 ? 'request target too long' : 'malformed proxy request'}: ${detail}` })
    reply(status, status === 414 ? 'URI Too Long' : 'Bad Request', { error: status === 414 ? 'uri_too_long' : 'bad_request', detail })
  }

  /** A slot of this sandbox's admission, or a 503 (logged) when its queue is full. */
  private async admitSlot(reply: Reply, t: Target, method: string): Promise<(() => void) | undefined> {
    const release = await this.admission.acquire()
    if (release) return release
    this.denied++
    this.opts.audit.http({
      method, host: t.host.host, port: t.port, path: t.path, action: 'denied', mode: 'deny', policy: null, rule: '-', providers: [], status: 503,
      reason: this.admission.refusal,
    })
    reply(503, 'Service Unavailable', { error: 'overloaded', detail: this.admission.refusal })
    return undefined
  }

  /**
   * What every plain-HTTP request and ws:// upgrade goes through before a byte goes upstream: the
   * policy decision, the checked resolution and the dial. A refusal is answered with `reply` and
   * logged as an HTTP event (mode `deny`, whichever step refused); then the result is undefined.
   */
  private async admitHttp(t: Target, method: string, d: Decision, reply: Reply, relay?: ReadRelay): Promise<{ up: Dialed; log: HttpLog } | undefined> {
    const log: HttpLog = (action, status, reason, ip) =>
      this.opts.audit.http({ method, host: t.host.host, port: t.port, path: t.path, action, mode: action === 'denied' ? 'deny' : d.mode, ip, policy: d.policy, rule: d.matched, reason, providers: d.providers, status })
    const deny = (reason: string) => {
      this.denied++
      log('denied', 403, reason)
      reply(403, 'Forbidden', denyBody(this.sandbox, d, method, t.host.host, t.port, t.path, reason))
    }
    if (!d.allowed) return void deny(d.reason)
    const checked = await this.resolveChecked(d, t.host, t.port)
    if (!checked.ok) return void deny(checked.reason)
    try {
      return { up: await dial(checked.addresses, t.port, this.limits.connectTimeoutMs, relay), log }
    } catch (e) {
      this.allowed++
      log('allowed', 502, `upstream unreachable: ${(e as Error).message}`)
      reply(502, 'Bad Gateway', { error: 'upstream_unreachable', detail: `cannot connect to ${t.host.host}:${t.port}` })
      return undefined
    }
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.draining) res.shouldKeepAlive = false
    const reply: Reply = (status, text, body) => sendJson(res, status, text, body)
    const t = proxyTarget(req, this.limits.maxTargetBytes)
    if ('error' in t) return this.badRequest(reply, t.error, t.status)
    const method = req.method ?? 'GET'
    const release = await this.admitSlot(reply, t, method)
    if (!release) return
    res.once('close', release)
    if (res.destroyed || req.destroyed) return release()
    const d = decideEffective(this.opts.engine(), { method, host: t.host, port: t.port, path: t.path, query: t.query }, req)
    if ('error' in d) return this.badRequest(reply, d.error)
    const feed = new HeadFeed()
    const admitted = await this.admitHttp(t, method, d, reply, feed)
    if (!admitted) return
    const { up, log: logHttp } = admitted
    if (res.destroyed || req.destroyed) {
      up.socket.destroy()
      return
    }
    this.allowed++
    forwardAdmitted(req, res, { target: t, method, upstream: up.socket, feed, ip: up.ip, reason: d.reason, log: logHttp, idleTimeoutMs: this.limits.idleTimeoutMs })
  }

  // -------------------------------------------------------------------------------------------
  // Upgrade (ws://)
  // -------------------------------------------------------------------------------------------

  private async onUpgrade(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
    client.on('error', () => client.destroy())
    client.pause()
    const refuse: Reply = (status, text, body) => endJson(client, status, text, body)
    const t = proxyTarget(req, this.limits.maxTargetBytes)
    if ('error' in t) return this.badRequest(refuse, t.error, t.status)
    const method = req.method ?? 'GET'
    const release = await this.admitSlot(refuse, t, method)
    if (!release) return
    client.once('close', release)
    if (client.destroyed) return release()
    const info = { method, host: t.host, port: t.port, path: t.path, query: t.query }
    const d = decideEffective(this.opts.engine(), info, req, { upgrade: true })
    if ('error' in d) return this.badRequest(refuse, d.error)
    const admitted = await this.admitHttp(t, method, d, refuse)
    if (!admitted) return
    const { up, log } = admitted
    if (client.destroyed) return void up.socket.destroy()
    this.allowed++
    const tunnel: Tunnel = { host: t.host, port: t.port, ip: up.ip, client, upstream: up.socket, recheck: e => e.decideHttp(info, { upgrade: true }) }
    this.upgradeOver(tunnel, req, t.path + (t.query !== null ? `?${t.query}` : ''), head, status =>
      log('allowed', status, status === 101 ? d.reason : `upgrade declined by the upstream (${status}); connection closed after the response`, up.ip),
    )
  }

  /** The Upgrade relay (src/gateway/http/upgrade.ts), with this proxy's tunnel table and timeouts. */
  private upgradeOver(t: RelayTunnel, req: IncomingMessage, target: string, held: Buffer, logged: (status: number) => void, opts?: UpgradeOptions): void {
    relayUpgrade(
      {
        headersTimeoutMs: this.limits.headersTimeoutMs,
        opened: (tunnel: RelayTunnel, first: Buffer, clientFilter?: Transform) => {
          this.tunnels.add(tunnel)
          this.pipeTunnel(tunnel, first, undefined, undefined, undefined, clientFilter)
        },
      },
      t,
      req,
      target,
      held,
      logged,
      opts,
    )
  }

  // -------------------------------------------------------------------------------------------
  // Parse errors (smuggling attempts, oversized heads)
  // -------------------------------------------------------------------------------------------

  private onClientError(err: NodeJS.ErrnoException, sock: Socket): void {
    const code = err.code ?? 'ERR'
    if (code === 'ECONNRESET' || !sock.writable) {
      sock.destroy()
      return
    }
    this.denied++
    const tooLarge = code === 'HPE_HEADER_OVERFLOW'
    const timeout = code === 'ERR_HTTP_REQUEST_TIMEOUT'
    this.opts.audit.network({ activity: 'open', action: 'denied', host: '-', port: 0, policy: null, reason: `malformed proxy request rejected (${code}: ${err.message.replace(/^Parse Error: /, '')})` })
    const [status, text] = tooLarge ? [431, 'Request Header Fields Too Large'] : timeout ? [408, 'Request Timeout'] : [400, 'Bad Request']
    const body = JSON.stringify({ error: 'bad_request', detail: tooLarge ? 'request head too large' : 'malformed request' })
    sock.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }
}
