/**
 * TLS termination on the CONNECT path: the gateway ends the sandbox's TLS with a leaf certificate
 * from the podshell sandbox CA (src/tls/), decides EVERY request inside with the same L7 engine as
 * plain HTTP, and forwards allowed requests over its own, verified TLS connection to the upstream.
 *
 * When (OpenShell's auto mode; `PolicyEngine.inspects`): a matching endpoint is inspectable L7
 * (`protocol: rest`/`websocket`) and not `tls: skip`. Everything else is tunnelled as before and
 * sees the upstream's own certificate chain.
 *
 * The first bytes after "200 Connection Established" are peeked: a TLS handshake record (0x16) is
 * terminated; anything else is read as plain HTTP under the same rules (no way around the rules by
 * speaking cleartext to port 443).
 *
 * Identity checks (domain fronting: CONNECT to an allowed front, another site's name inside):
 *  - the ClientHello must carry SNI, not an IP literal, equal to the CONNECT host (case-insensitive,
 *    one trailing dot ignored). A ClientHello without SNI, with a NUL or an oversized name (OpenSSL
 *    refuses those itself), or with another name fails the handshake; the attempt is logged.
 *  - every request's Host must name the CONNECT host and port: else 403 `policy_denied` with a
 *    `detail` naming both, logged. The SNI check alone would not do: one TLS connection carries
 *    many requests, each with its own Host.
 *
 * Upstream: Node's TLS client with the host's trust store + `tls.extra_ca_files` (never the image's
 * or Node's built-in list alone), hostname verification on the CONNECT host; a certificate that does
 * not verify or does not name the host fails closed: 502 with the deny body and a log line saying
 * why. Upstream connections are pooled per sandbox (keep-alive), so hundreds of package downloads
 * do not pay a handshake each; the pool is dropped when the policy changes. Connections only ever
 * go to addresses checked against the policy's address rules for this CONNECT (`lookup` answers
 * from the checked list; there is no second DNS lookup).
 *
 * ALPN: http/1.1 only, to the client and to the upstream.
 *
 * Seam for the request pipeline (src/gateway/proxy.ts): the decrypted request's admission,
 * L7 decision and forwarding are `handleRequest` here, built on the proxy's exported pieces
 * (`l7DenyBody`, `forwardHeaders`, `sendJson`) and the `TerminateContext` it passes in. When the
 * proxy grows one shared admission + L7 + forward pipeline for IncomingMessage/ServerResponse, this
 * handler becomes a call into it with `{ host, port, scheme: 'https' }` fixed by the CONNECT.
 */
import type { UpgradeOptions } from './http/upgrade.js'
import { createServer as createHttpServer, request as httpRequest, Agent as HttpAgent, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https'
import { TLSSocket, createSecureContext, connect as tlsConnect, type SecureContext } from 'node:tls'
import { connect as netConnect, type Socket } from 'node:net'
import type { LookupFunction } from 'node:net'
import type { CanonicalHost, IpAddress } from './address.js'
import { hostMismatch, sniMismatch } from './tls-identity.js'
import { FEEDS, FeedingHttpAgent, FeedingHttpsAgent } from './tls-feed.js'
import type { Decision, PolicyEngine } from './policy-engine.js'
import type { AuditSink } from './audit.js'
import type { Leaf } from '../tls/leaf.js'
import { decideEffective, type RequestRefusal } from './http/framing.js'
import type { Admission } from './http/admission.js'
import type { BodySink } from './http/head-feed.js'
import { substituteCredentials, substituteBody, CREDENTIAL_MISMATCH_BODY, MAX_BODY_REWRITE_BYTES, type HeldCredential } from './credential-substitution.js'

/** What the gateway gives a sandbox's proxy for TLS inspection. */
export interface TlsInspection {
  /** A leaf for `host` from the CA this sandbox's bundle holds (looked up per handshake: a restart may change it). */
  leaf(host: string): Promise<Leaf>
  /** Upstream roots (host store + tls.extra_ca_files), PEM; re-read by the caller when they change. */
  readonly upstreamRoots: () => string
}

export interface TerminateLimits {
  /** Time a client has to complete its TLS handshake, ms. */
  handshakeTimeoutMs: number
  maxHttpHeaderBytes: number
  headersTimeoutMs: number
  keepAliveTimeoutMs: number
  idleTimeoutMs: number
  /** Pooled idle upstream connections per sandbox and host. */
  maxFreeSockets: number
}

/** What the sandbox's proxy provides: policy, logging and its shared request pieces. */
export interface TerminateContext {
  readonly sandbox: string
  readonly engine: () => PolicyEngine
  readonly audit: AuditSink
  readonly limits: TerminateLimits
  readonly tls: TlsInspection
  addressCheck(d: Decision, label: string, port: number, addrs: IpAddress[]): { ok: true; addresses: IpAddress[] } | { ok: false; reason: string }
  denyBody(d: Decision, method: string, host: string, port: number, path: string, detail: string): Record<string, unknown>
  forwardHeaders(raw: readonly string[], response?: boolean): string[]
  sendJson(res: ServerResponse, status: number, text: string, body: Record<string, unknown>): void
  /** A JSON answer on a raw socket, then close (upgrades). */
  endJson(sock: Socket, status: number, text: string, body: Record<string, unknown>): void
  /**
   * Hands an upgrade whose request went upstream to the proxy's upgrade relay: only a 101 turns it
   * into a tracked tunnel (re-decided on policy change); anything else is relayed once and closed.
   */
  relayUpgrade(t: RelayTunnel, req: IncomingMessage, target: string, held: Buffer, logged: (status: number) => void, opts?: UpgradeOptions): void
  /** The shared pre-decision checks (src/gateway/http/framing.ts requestRefusal: 414 target size, 400 framing). */
  refusal(req: IncomingMessage): RequestRefusal | undefined
  /** The sandbox's admission (shared with its plain HTTP): no slot = queue full (503). */
  readonly admission: Admission
  counted(allowed: boolean): void
  /** The sandbox's placeholders with the real values the gateway holds (issue 12). */
  credentials(): readonly HeldCredential[]
}

/** Structurally the proxy's tunnel record. */
export interface RelayTunnel {
  readonly host: CanonicalHost
  readonly port: number
  readonly ip: string
  readonly client: Socket
  readonly upstream: Socket
  readonly recheck: (engine: PolicyEngine) => Decision
}

/** The CONNECT this connection came from: fixed for every request on it. */
interface ConnMeta {
  readonly host: CanonicalHost
  readonly port: number
  /** Addresses checked for this CONNECT (the only ones the upstream connection may use). */
  readonly addresses: readonly IpAddress[]
  /** true = decrypted TLS; false = cleartext HTTP after CONNECT. */
  readonly tls: boolean
}


const HANDSHAKE = 0x16
/** Largest request body read and discarded after a denial to keep the connection (else it closes). */
const MAX_DISCARD_BODY = 1024 * 1024

/** OpenSSL/Node codes of an upstream certificate that does not verify or does not name the host. */
const CERT_ERRORS = /^(ERR_TLS_CERT_ALTNAME_INVALID|UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_(HAS_EXPIRED|NOT_YET_VALID|REVOKED|UNTRUSTED|REJECTED|SIGNATURE_FAILURE)|ERR_SSL_.*|INVALID_CA|INVALID_PURPOSE|HOSTNAME_MISMATCH)$/

export class TlsTerminator {
  private readonly ctx: TerminateContext
  private readonly server: Server
  private readonly meta = new WeakMap<object, ConnMeta>()
  private readonly defaultContext: SecureContext
  private pool: { https: HttpsAgent; http: HttpAgent; roots: string } | undefined
  terminated = 0
  refusedHandshakes = 0

  constructor(ctx: TerminateContext) {
    this.ctx = ctx
    // No certificate: a ClientHello without SNI (no SNICallback call) fails the handshake.
    this.defaultContext = createSecureContext({ minVersion: 'TLSv1.2' })
    this.server = createHttpServer({
      maxHeaderSize: ctx.limits.maxHttpHeaderBytes,
      requestTimeout: 0,
      headersTimeout: ctx.limits.headersTimeoutMs,
      keepAliveTimeout: ctx.limits.keepAliveTimeoutMs,
      insecureHTTPParser: false,
      requireHostHeader: false,
      joinDuplicateHeaders: false,
    })
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => this.handleRequest(req, res).catch(() => res.destroy()))
    // Upgrades (wss:// inside terminated TLS, ws:// after CONNECT): decided like ws:// plain HTTP.
    this.server.on('upgrade', (req: IncomingMessage, sock: Socket, head: Buffer) => this.onUpgrade(req, sock, head).catch(() => sock.destroy()))
    this.server.on('clientError', (err: NodeJS.ErrnoException, sock: Socket) => {
      if (err.code !== 'ECONNRESET' && sock.writable) {
        const m = this.meta.get(sock)
        this.ctx.audit.network({ activity: 'open', action: 'denied', host: m?.host.host ?? '-', port: m?.port ?? 0, policy: null, reason: `malformed request inside CONNECT rejected (${err.code ?? 'ERR'})` })
        sock.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
      } else sock.destroy()
    })
  }

  /** Drops pooled upstream connections (policy changed, roots changed, shutdown). */
  dropPool(): void {
    this.pool?.https.destroy()
    this.pool?.http.destroy()
    this.pool = undefined
  }

  private agents(): { https: HttpsAgent; http: HttpAgent } {
    const roots = this.ctx.tls.upstreamRoots()
    if (this.pool && this.pool.roots === roots) return this.pool
    this.dropPool()
    const pool = this.ctx.limits.maxFreeSockets > 0
    // noDelay: a reused connection must not hold a request back behind Nagle (measured: +15 ms per request).
    const common = { keepAlive: pool, noDelay: true, maxFreeSockets: Math.max(1, this.ctx.limits.maxFreeSockets), timeout: this.ctx.limits.idleTimeoutMs || undefined, scheduling: 'lifo' as const }
    // The trust anchors: exactly the host store + extra CAs (an empty list trusts nothing).
    const secureContext = createSecureContext({ ca: roots === '' ? [] : roots, minVersion: 'TLSv1.2' })
    this.pool = { https: new FeedingHttpsAgent({ ...common, secureContext, ALPNProtocols: ['http/1.1'] } as ConstructorParameters<typeof HttpsAgent>[0]), http: new FeedingHttpAgent(common), roots }
    return this.pool
  }

  /**
   * Takes over an allowed CONNECT's client socket after "200 Connection Established" was written:
   * peeks, then terminates TLS or parses cleartext HTTP. `head` = bytes already read after the
   * CONNECT request.
   */
  take(client: Socket, head: Buffer, host: CanonicalHost, port: number, addresses: readonly IpAddress[]): void {
    const go = (first: Buffer) => {
      if (first.length === 0) return
      client.pause()
      client.unshift(first)
      if (first[0] === HANDSHAKE) this.terminate(client, host, port, addresses)
      else this.serveClear(client, host, port, addresses)
    }
    if (head.length > 0) return go(head)
    const timer = setTimeout(() => client.destroy(), this.ctx.limits.handshakeTimeoutMs)
    client.once('data', (chunk: Buffer) => {
      clearTimeout(timer)
      go(chunk)
    })
    client.once('close', () => clearTimeout(timer))
  }

  private serveClear(client: Socket, host: CanonicalHost, port: number, addresses: readonly IpAddress[]): void {
    this.meta.set(client, { host, port, addresses, tls: false })
    this.server.emit('connection', client)
    client.resume()
  }

  private terminate(client: Socket, host: CanonicalHost, port: number, addresses: readonly IpAddress[]): void {
    let refusal: string | undefined
    let sniSeen = false
    const tls = new TLSSocket(client, {
      isServer: true,
      secureContext: this.defaultContext,
      ALPNProtocols: ['http/1.1'],
      SNICallback: (name, cb) => {
        sniSeen = true
        const why = sniMismatch(name, host)
        if (why) {
          refusal = why
          return cb(new Error(why))
        }
        this.ctx.tls.leaf(host.host).then(
          l => cb(null, l.context),
          (e: Error) => {
            refusal = `cannot issue a certificate for ${host.host}: ${e.message}`
            cb(e)
          },
        )
      },
    })
    // A client that stalls its handshake holds its own connection only, and not for long.
    const timer = setTimeout(() => {
      refusal ??= `TLS handshake not completed within ${this.ctx.limits.handshakeTimeoutMs} ms`
      fail()
    }, this.ctx.limits.handshakeTimeoutMs)
    let secure = false
    function failLater(err?: Error) {
      fail(err)
    }
    const fail = (err?: Error) => {
      clearTimeout(timer)
      if (secure) return
      secure = true // log once
      this.refusedHandshakes++
      const reason = refusal ?? (sniSeen ? `TLS handshake failed: ${err?.message ?? 'closed'}` : 'ClientHello without SNI (server name) or not acceptable; the gateway needs the name to check it against the CONNECT target')
      this.ctx.counted(false)
      this.ctx.audit.network({ activity: 'open', action: 'denied', mode: 'deny', host: host.host, port, policy: null, reason: `TLS refused: ${reason}` })
      tls.destroy()
      client.destroy()
    }
    tls.on('error', failLater)
    tls.once('close', () => {
      if (!secure) fail()
    })
    tls.once('secure', () => {
      clearTimeout(timer)
      secure = true
      this.terminated++
      this.meta.set(tls, { host, port, addresses, tls: true })
      tls.removeListener('error', failLater)
      tls.on('error', () => tls.destroy())
      this.server.emit('connection', tls)
    })
    // No client.resume(): the peeked bytes sit in the socket's buffer, and TLSSocket feeds a
    // wrapped socket's buffered data to the TLS engine itself (Node's initRead); resuming would
    // emit them as 'data' nobody reads.
  }

  /**
   * An Upgrade request inside the CONNECT: identity and the L7 decision with `upgrade` (as for
   * ws:// over plain HTTP), then a verified upstream connection to a checked address, the request
   * re-serialised from the parsed head, and the proxy's upgrade relay.
   */
  private async onUpgrade(req: IncomingMessage, sock: Socket, head: Buffer): Promise<void> {
    sock.on('error', () => sock.destroy())
    const m = this.meta.get(sock)
    if (!m) return void sock.destroy()
    const method = req.method ?? 'GET'
    const url = req.url ?? ''
    const { host, port } = m
    const path = pathOf(url)
    const q = url.indexOf('?')
    const query = q === -1 ? null : url.slice(q + 1)
    const info = { method, host, port, path, query }
    const refused = this.ctx.refusal(req)
    const release = refused ? undefined : await this.ctx.admission.acquire()
    if (release) sock.once('close', release)
    const dd = refused || !release ? undefined : decideEffective(this.ctx.engine(), info, req, { upgrade: true })
    const d = dd === undefined || 'error' in dd ? this.ctx.engine().decideHttp(info, { upgrade: true }) : dd
    const log = (action: 'allowed' | 'denied', status: number, reason: string, ip?: string) =>
      this.ctx.audit.http({ scheme: m.tls ? 'https' : 'http', method, host: host.host, port, path, action, mode: action === 'denied' ? 'deny' : d.mode, ip, policy: d.policy, rule: d.matched, reason, providers: d.providers, status })
    const deny = (status: number, reason: string, body?: Record<string, unknown>) => {
      this.ctx.counted(false)
      log('denied', status, reason)
      this.ctx.endJson(sock, status, STATUS_TEXT[status] ?? 'Bad Request', body ?? this.ctx.denyBody({ ...d, allowed: false }, method, host.host, port, path, reason))
    }
    if (refused) return deny(refused.status, refused.detail, { error: refused.status === 414 ? 'uri_too_long' : 'bad_request', detail: refused.detail })
    if (!release) return deny(503, this.ctx.admission.refusal, { error: 'overloaded', detail: this.ctx.admission.refusal })
    if (dd !== undefined && 'error' in dd) return deny(400, dd.error, { error: 'bad_request', detail: dd.error })
    if (!url.startsWith('/')) return deny(400, 'request target must be origin-form (/path) inside a CONNECT', { error: 'bad_request', detail: 'request target must be origin-form' })
    const mismatch = hostMismatch(req, m)
    if (mismatch) return deny(403, mismatch)
    if (!d.allowed) return deny(403, d.reason)
    const checked = this.ctx.addressCheck(d, host.host, port, [...m.addresses])
    if (!checked.ok) return deny(403, checked.reason)
    // Placeholders on an upgrade request: refused outside their binding or without a held value,
    // substituted inside it, like any request.
    const sub = substituteCredentials({ rawHeaders: req.rawHeaders, url }, this.ctx.credentials(), p => m.tls && this.ctx.engine().credentialBound(p, host, port, path))
    if (sub.kind === 'mismatch') return deny(403, `credential_endpoint_mismatch: placeholder of provider ${sub.provider} (${sub.variable}) in ${sub.where} of an upgrade request is not bound to ${host.host}:${port}${path}; not forwarded`, { ...CREDENTIAL_MISMATCH_BODY })
    if (sub.kind === 'unavailable') return deny(403, `credential_unavailable: the gateway holds no value for provider ${sub.provider} (${sub.variable}); not forwarded`, { error: 'credential_unavailable', message: `No credential value is available for provider ${sub.provider}` })
    let up: Socket
    try {
      up = await this.dialUpgrade(checked.addresses, host, port, m.tls)
    } catch (e) {
      const err = e as NodeJS.ErrnoException
      const cert = err.code !== undefined && CERT_ERRORS.test(err.code)
      const reason = cert ? `upstream certificate of ${host.host}:${port} refused: ${err.code} (${err.message})` : `upstream unreachable: ${err.message}`
      return deny(502, reason, cert ? { ...this.ctx.denyBody(d, method, host.host, port, path, reason), error: 'upstream_certificate_invalid' } : { error: 'upstream_unreachable', detail: `cannot connect to ${host.host}:${port}` })
    }
    if (sock.destroyed) return void up.destroy()
    this.ctx.counted(true)
    const ip = up.remoteAddress ?? checked.addresses[0]!.text
    // websocket_credential_rewrite (terminated TLS only): client text messages are rewritten under
    // the same rule (src/gateway/http/websocket-rewrite.ts). Without it frames are relayed unparsed,
    // as OpenShell does: a placeholder in a message reaches the upstream as the inert placeholder.
    const bound = (p: string) => this.ctx.engine().credentialBound(p, host, port, path)
    const rewrite =
      m.tls && this.ctx.credentials().length > 0 && this.ctx.engine().rewritesWebSocket(host, port, path)
        ? {
            credentials: () => this.ctx.credentials(),
            bound,
            substituted: (used: readonly string[]) => log('allowed', 101, `websocket text message: credential substituted: ${used.join(', ')}`, ip),
            log: (code: number, reason: string) => {
              this.ctx.counted(false)
              log('denied', code === 1008 ? 403 : code === 1009 ? 413 : 400, `${reason} (websocket close ${code})`, ip)
            },
          }
        : undefined
    const rawHeaders = sub.kind === 'substituted' ? sub.rawHeaders : undefined
    this.ctx.relayUpgrade(
      { host, port, ip, client: sock, upstream: up, recheck: e => e.decideHttp(info, { upgrade: true }) },
      req,
      sub.kind === 'substituted' ? sub.url : url,
      head,
      status => log('allowed', status, status === 101 ? d.reason : `upgrade declined by the upstream (${status}); connection closed after the response`, ip),
      { rawHeaders, rewrite },
    )
  }

  /** A dedicated (not pooled) upstream connection for an upgrade, TLS-verified like the pool's. */
  private async dialUpgrade(addrs: readonly IpAddress[], host: CanonicalHost, port: number, tls: boolean): Promise<Socket> {
    const a = addrs[0]!
    return new Promise<Socket>((resolve, reject) => {
      const s: Socket = tls
        ? tlsConnect({ host: a.text, port, servername: host.host, secureContext: createSecureContext({ ca: this.ctx.tls.upstreamRoots() || [], minVersion: 'TLSv1.2' }), ALPNProtocols: ['http/1.1'] })
        : netConnect({ host: a.text, port })
      // A WebSocket message larger than one segment must not wait behind Nagle for the upstream's
      // delayed ACK (measured: a 64 KiB message 59.6 ms through the relay without it, docs/credentials.md).
      s.setNoDelay(true)
      const t = setTimeout(() => s.destroy(new Error(`connect to ${a.text}:${port} timed out`)), 10_000)
      s.once(tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(t)
        s.removeAllListeners('error')
        resolve(s)
      })
      s.once('error', e => {
        clearTimeout(t)
        reject(e)
      })
    })
  }

  /**
   * A refusal of one decrypted request, audited, in OpenShell's deny format (or `custom`). A 400
   * (framing in doubt) closes the connection. A policy denial keeps it: the request body is read
   * and discarded (its end is known from the parsed framing, so nothing of it can be taken for the
   * next request, which is decided on its own). Closing right after the 403 raced the client's body
   * through the bridge: the client could see the connection reset before the answer (measured with
   * python's urllib). A body over 1 MiB still closes it. A 413 (body over the rewrite buffer) is
   * answered the same way: the client is still sending when it is refused (closing at once reset
   * curl's connection before it read the 413: Podman 5 lane).
   */
  private deny(r: RequestCtx, status: number, d: Decision | undefined, path: string, reason: string, custom?: Record<string, unknown>): void {
    const { req, res, m, method } = r
    const { host, port } = m
    this.ctx.counted(false)
    this.ctx.audit.http({ scheme: m.tls ? 'https' : 'http', method, host: host.host, port, path, action: 'denied', mode: 'deny', policy: d?.policy ?? null, rule: d?.matched, reason, providers: d?.providers, status })
    const body = custom ?? (d ? this.ctx.denyBody(d, method, host.host, port, path, reason) : { error: status === 503 ? 'overloaded' : status === 414 ? 'uri_too_long' : 'bad_request', detail: reason })
    const len = Number(req.headers['content-length'] ?? 0)
    if ((status !== 403 && status !== 413) || req.headers['transfer-encoding'] !== undefined || len > MAX_DISCARD_BODY) {
      req.resume()
      return this.ctx.sendJson(res, status, STATUS_TEXT[status] ?? 'Bad Request', body)
    }
    req.resume()
    const json = JSON.stringify(body)
    res.writeHead(status, STATUS_TEXT[status], { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(json)) })
    res.end(json)
  }

  /** One decrypted (or cleartext-after-CONNECT) request: identity, L7 decision, credentials, forward. */
  private async handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const m = this.meta.get(req.socket)
    if (!m) return void res.destroy()
    const method = req.method ?? 'GET'
    const url = req.url ?? ''
    const { host, port } = m
    const r: RequestCtx = { req, res, m, method }
    const deny = (status: number, d: Decision | undefined, path: string, reason: string, custom?: Record<string, unknown>) => this.deny(r, status, d, path, reason, custom)
    // Origin-form only: the target of every request is the CONNECT's host.
    if (!url.startsWith('/')) return deny(400, undefined, '-', 'request target must be origin-form (/path) inside a CONNECT')
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    const query = q === -1 ? null : url.slice(q + 1)
    if (path.includes('#') || (query ?? '').includes('#')) return deny(400, undefined, path, 'fragment in request target')
    const refused = this.ctx.refusal(req)
    if (refused) return deny(refused.status, undefined, path, refused.detail)
    const release = await this.ctx.admission.acquire()
    if (!release) return deny(503, undefined, path, this.ctx.admission.refusal)
    res.once('close', release)
    if (res.destroyed) return release()
    const dd = decideEffective(this.ctx.engine(), { method, host, port, path, query }, req)
    if ('error' in dd) return deny(400, undefined, path, dd.error)
    const d = dd
    const mismatch = hostMismatch(req, m)
    if (mismatch) {
      const fronting: Decision = { ...d, allowed: false, mode: 'deny', layer: 'l7', rule: `${method} ${path}`, addressRules: [] }
      return deny(403, fronting, path, mismatch)
    }
    if (!d.allowed) return deny(403, d, path, d.reason)
    const checked = this.ctx.addressCheck(d, host.host, port, [...m.addresses])
    if (!checked.ok) return deny(403, d, path, checked.reason)
    // Placeholder credentials (issue 12), after network and L7 admission: substituted only on
    // decrypted TLS and only within the provider's binding; anything else is refused, not forwarded.
    const sub = substituteCredentials({ rawHeaders: req.rawHeaders, url }, this.ctx.credentials(), p => m.tls && this.ctx.engine().credentialBound(p, host, port, path))
    if (sub.kind === 'mismatch') {
      const why = m.tls ? `is not bound to ${host.host}:${port}${path}` : 'cannot be substituted on plain HTTP'
      return deny(403, d, path, `credential_endpoint_mismatch: placeholder of provider ${sub.provider} (${sub.variable}) in ${sub.where} ${why}; not forwarded`, { ...CREDENTIAL_MISMATCH_BODY })
    }
    if (sub.kind === 'unavailable') {
      const reason = `credential_unavailable: the gateway holds no value for provider ${sub.provider} (${sub.variable}) (provider deleted, or the gateway restarted: \`podshell sandbox restart\` reloads it); not forwarded`
      return deny(403, d, path, reason, { error: 'credential_unavailable', message: `No credential value is available for provider ${sub.provider}` })
    }
    let substituted = sub.kind === 'substituted' ? `; credential substituted: ${[...new Set(sub.used.map(u => `${u.provider}/${u.variable} in ${u.where}`))].join(', ')}` : ''
    const rewritten = await this.rewriteBody(r, d, path)
    if (rewritten === 'refused') return
    if (rewritten?.substituted) substituted += '; credential substituted in body'
    this.ctx.counted(true)
    let headers = this.ctx.forwardHeaders(sub.kind === 'substituted' ? sub.rawHeaders : req.rawHeaders)
    const body = rewritten?.body
    if (body !== undefined) {
      const kept: string[] = []
      for (let i = 0; i + 1 < headers.length; i += 2) if (!/^(content-length|transfer-encoding)$/i.test(headers[i]!)) kept.push(headers[i]!, headers[i + 1]!)
      headers = [...kept, 'Content-Length', String(body.length)]
    } else if (req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked')
    this.forward(r, { d, path, target: sub.kind === 'substituted' ? sub.url : url, headers, body, addrs: checked.addresses, substituted })
  }

  /**
   * Opt-in body rewrite (`request_body_credential_rewrite`): the body is buffered (OpenShell's
   * 256 KiB limit; larger is refused, not forwarded unrewritten) and put under the same rule as the
   * headers. Undefined: no rewrite applies (the body streams); 'refused': answered already.
   */
  private async rewriteBody(r: RequestCtx, d: Decision, path: string): Promise<{ body: Buffer; substituted: boolean } | 'refused' | undefined> {
    const { req, m } = r
    const { host, port } = m
    const creds = this.ctx.credentials()
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0
    if (!m.tls || creds.length === 0 || !hasBody || !this.ctx.engine().rewritesBody(host, port, path)) return undefined
    const read = await readBounded(req, MAX_BODY_REWRITE_BYTES)
    if (read === undefined) {
      const why = `request body over ${MAX_BODY_REWRITE_BYTES} bytes on an endpoint with request_body_credential_rewrite (buffer limit); not forwarded`
      this.deny(r, 413, d, path, why, { error: 'payload_too_large', detail: why })
      return 'refused'
    }
    const b = substituteBody(read, creds, p => this.ctx.engine().credentialBound(p, host, port, path))
    if (b.kind === 'mismatch') {
      this.deny(r, 403, d, path, `credential_endpoint_mismatch: placeholder of provider ${b.provider} (${b.variable}) in body is not bound to ${host.host}:${port}${path}; not forwarded`, { ...CREDENTIAL_MISMATCH_BODY })
      return 'refused'
    }
    if (b.kind === 'unavailable') {
      this.deny(r, 403, d, path, `credential_unavailable: the gateway holds no value for provider ${b.provider} (${b.variable}); not forwarded`, { error: 'credential_unavailable', message: `No credential value is available for provider ${b.provider}` })
      return 'refused'
    }
    return { body: b.kind === 'substituted' ? b.body : read, substituted: b.kind === 'substituted' }
  }

  /** Sends an allowed request upstream (pooled) and relays the response; audited once. */
  private forward(r: RequestCtx, f: { d: Decision; path: string; target: string; headers: string[]; body: Buffer | undefined; addrs: readonly IpAddress[]; substituted: string }): void {
    const { req, res, m, method } = r
    const { host, port } = m
    const { d, path, body, addrs, substituted } = f
    const lookup: LookupFunction = (_name, opts, cb) => {
      const all = (opts as { all?: boolean }).all
      if (all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, addrs.map(a => ({ address: a.text, family: a.family })))
      else cb(null, addrs[0]!.text, addrs[0]!.family)
    }
    const agents = this.agents()
    const opts = {
      host: host.host,
      port,
      method,
      path: f.target,
      headers: f.headers,
      setHost: false,
      lookup,
      agent: m.tls ? agents.https : agents.http,
      ...(m.tls ? { servername: host.host } : {}),
    }
    // A pooled connection the upstream closed while idle fails the next request with a reset
    // before any response; a request without a body that is safe to repeat is then sent once more
    // on a new connection (Node's documented `reusedSocket` pattern). Anything else is a 502.
    const bodyless = req.headers['transfer-encoding'] === undefined && Number(req.headers['content-length'] ?? 0) === 0
    const retryable = bodyless && (method === 'GET' || method === 'HEAD' || method === 'OPTIONS')
    const send = (attempt: number): void => {
      const ureq = m.tls ? httpsRequest(opts) : httpRequest(opts)
      if (this.ctx.limits.idleTimeoutMs > 0) ureq.setTimeout(this.ctx.limits.idleTimeoutMs, () => ureq.destroy(new Error('upstream idle timeout')))
      let logged = false
      const ip = () => ureq.socket?.remoteAddress
      // The upstream connection's feed (http/head-feed.ts): a 1xx head makes it feed the next one.
      const feed = () => (ureq.socket ? FEEDS.get(ureq.socket) : undefined)
      ureq.on('information', () => feed()?.informational())
      // The response is complete towards the client (a raw body relayed whole).
      let finished = false
      ureq.on('response', ures => {
        logged = true
        this.ctx.audit.http({ scheme: m.tls ? 'https' : 'http', method, host: host.host, port, path, action: 'allowed', mode: d.mode, ip: ip(), policy: d.policy, rule: d.matched, reason: d.reason + substituted, providers: d.providers, status: ures.statusCode ?? 0 })
        if (res.destroyed) return void ures.destroy()
        res.writeHead(ures.statusCode ?? 502, ures.statusMessage, this.ctx.forwardHeaders(ures.rawHeaders, true))
        // A Content-Length body of at least RAW_MIN bytes goes from the upstream TLS socket's reads
        // straight into the client's TLS socket; that upstream connection is closed after it.
        const sink: BodySink = {
          data: (b, written) => void res.write(b, written),
          end: () => {
            finished = true
            res.end()
            ureq.destroy()
          },
        }
        if (feed()?.takeBody(ureq.method, ures, sink, () => res.destroy())) {
          ures.on('error', () => {
            if (!finished) res.destroy()
          })
          return
        }
        ures.pipe(res)
        ures.on('error', () => res.destroy())
      })
      ureq.on('error', (e: NodeJS.ErrnoException) => {
        if (finished) return
        if (!logged && attempt === 0 && retryable && ureq.reusedSocket && e.code === 'ECONNRESET' && !res.destroyed) return send(1)
        const cert = e.code !== undefined && CERT_ERRORS.test(e.code)
        const reason = cert
          ? `upstream certificate of ${host.host}:${port} refused: ${e.code} (${e.message}); the gateway trusts the host's trust store and tls.extra_ca_files`
          : `upstream error: ${e.message}`
        if (!logged) {
          logged = true
          this.ctx.audit.http({ scheme: m.tls ? 'https' : 'http', method, host: host.host, port, path, action: cert ? 'denied' : 'allowed', mode: cert ? 'deny' : d.mode, ip: ip(), policy: d.policy, rule: d.matched, reason, providers: d.providers, status: 502 })
        }
        if (res.headersSent) return void res.destroy()
        const body = cert
          ? { ...this.ctx.denyBody(d, method, host.host, port, path, reason), error: 'upstream_certificate_invalid' }
          : { error: 'upstream_error', detail: `request to ${host.host}:${port} failed` }
        this.ctx.sendJson(res, 502, 'Bad Gateway', body)
      })
      res.once('close', () => {
        if (!res.writableFinished) ureq.destroy()
      })
      if (body !== undefined) ureq.end(body)
      else if (attempt === 0) req.pipe(ureq)
      else ureq.end()
    }
    send(0)
  }
}

/** One decrypted request being handled: its two ends, its connection's CONNECT facts, its method. */
interface RequestCtx {
  req: IncomingMessage
  res: ServerResponse
  m: ConnMeta
  method: string
}

/** The request body, or undefined once it exceeds `limit` bytes (the rest is left for the caller to drain). */
function readBounded(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise(resolve => {
    const chunks: Buffer[] = []
    let n = 0
    const onData = (c: Buffer) => {
      n += c.length
      if (n > limit) {
        req.removeListener('data', onData)
        req.removeListener('end', onEnd)
        req.pause()
        return resolve(undefined)
      }
      chunks.push(c)
    }
    const onEnd = () => resolve(Buffer.concat(chunks))
    req.on('data', onData)
    req.once('end', onEnd)
    req.once('error', () => resolve(undefined))
  })
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 413: 'Payload Too Large', 414: 'URI Too Long', 502: 'Bad Gateway', 503: 'Service Unavailable' }

function pathOf(url: string): string {
  const q = url.search(/[?#]/)
  return q === -1 ? url : url.slice(0, q)
}
