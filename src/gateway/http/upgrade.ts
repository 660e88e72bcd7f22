import { request as httpRequest, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Transform } from 'node:stream'
import { forwardHeaders } from './framing.js'
import { responseHead } from '../proxy-io.js'
import type { RelayTunnel } from '../tls-terminate.js'
import { closeFrame, wsClientRewriter, type WsRewriteOptions } from './websocket-rewrite.js'

/** What the relay needs from the proxy that owns the connection. */
export interface UpgradeContext {
  /** How long the upstream may take to answer the Upgrade request. */
  readonly headersTimeoutMs: number
  /** A 101 came: track the tunnel and relay both ways, starting with the client's held bytes. */
  opened(tunnel: RelayTunnel, held: Buffer, clientFilter?: Transform): void
}

/** Per-request options of an upgrade on terminated TLS (issue 12). */
export interface UpgradeOptions {
  /** The request's headers with placeholders already substituted (forwarded instead of req's). */
  readonly rawHeaders?: readonly string[]
  /**
   * `websocket_credential_rewrite`: client→server text messages go through wsClientRewriter;
   * `log` records why a connection was closed (the close frames are sent here).
   */
  readonly rewrite?: Omit<WsRewriteOptions, 'violation'> & { log(code: number, reason: string): void }
}

const CLOSE_REASON: Record<number, string> = { 1008: 'credential endpoint mismatch', 1009: 'message too big', 1002: 'protocol error' }

/**
 * Sends a decided Upgrade request over the tunnel's connected upstream socket (plain TCP, or the
 * verified TLS socket of an inspected CONNECT) with http.request. Only a 101 that Node's parser
 * reads from the upstream (http's 'upgrade' event) turns the connection into a tracked tunnel.
 * An upstream that declines answers the request as an ordinary one and would then read whatever
 * the client sends next as a NEW request on its keep-alive connection — a request no policy
 * decision covered (h2c-style smuggling past L7 rules, test/e2e/attack-network.test.ts #24). So
 * nothing from the client goes upstream before the 101 (`held` and later bytes wait), and a
 * declined upgrade gets that one response relayed (de-framed by Node, close-delimited to the
 * client) and both connections closed.
 */
export function relayUpgrade(ctx: UpgradeContext, t: RelayTunnel, req: IncomingMessage, target: string, held: Buffer, logged: (status: number) => void, opts: UpgradeOptions = {}): void {
  const { client, upstream } = t
  client.pause()
  // Connection/Upgrade are what this request is about; framing headers are dropped (the held
  // bytes after the head are not a body: they go upstream only after a 101).
  // With message rewriting no extension is negotiated (a compressed message cannot be rewritten).
  let raw = opts.rawHeaders ?? req.rawHeaders
  if (opts.rewrite) raw = raw.filter((_v, i, a) => !/^sec-websocket-extensions$/i.test(a[i - (i % 2)]!))
  const headers = forwardHeaders(raw, { keep: ['connection', 'upgrade'], dropFraming: true })
  const ureq = httpRequest({ method: req.method ?? 'GET', path: target, headers, setHost: false, createConnection: () => upstream })
  let settled = false
  const abort = () => {
    settled = true
    clearTimeout(timer)
    ureq.destroy()
    client.destroy()
    upstream.destroy()
  }
  const timer = setTimeout(abort, ctx.headersTimeoutMs)
  client.once('close', () => {
    if (!settled) abort()
  })
  ureq.on('error', () => {
    if (!settled) abort()
  })
  ureq.on('upgrade', (ures: IncomingMessage, usock: Socket, uhead: Buffer) => {
    settled = true
    clearTimeout(timer)
    logged(101)
    client.write(responseHead(ures, ures.rawHeaders))
    if (uhead.length > 0) client.write(uhead)
    const rw = opts.rewrite
    const filter = rw
      ? wsClientRewriter({
          ...rw,
          violation: (code, reason) => {
            rw.log(code, reason)
            const why = CLOSE_REASON[code] ?? 'closed'
            client.end(closeFrame(code, why, false))
            usock.end(closeFrame(code, why, true))
          },
        })
      : undefined
    ctx.opened({ ...t, upstream: usock }, held, filter)
    client.resume()
  })
  ureq.on('response', (ures: IncomingMessage) => {
    settled = true
    clearTimeout(timer)
    logged(ures.statusCode ?? 0)
    client.write(responseHead(ures, [...forwardHeaders(ures.rawHeaders, { dropFraming: true }), 'Connection', 'close']))
    const finish = () => {
      client.end()
      upstream.destroy()
    }
    client.on('error', finish)
    ures.on('error', finish)
    ures.on('end', finish)
    ures.pipe(client, { end: false })
  })
  ureq.end()
}
