/**
 * Plain HTTP through the sandbox proxy: the absolute-form request target, parsed and checked
 * before any policy decision, and the forward of a request the proxy has admitted (decided,
 * resolved, dialled) to its upstream socket with streaming bodies.
 */
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { parseAuthority, type CanonicalHost } from '../address.js'
import { forwardHeaders, requestRefusal, responseHeaders } from './framing.js'
import { hostHeaderCount, sendJson } from '../proxy-io.js'
import type { HeadFeed } from './head-feed.js'

/** An absolute-form request target, parsed and validated. */
export interface Target {
  host: CanonicalHost
  port: number
  path: string
  query: string | null
}

/** Logs the request as an HTTP audit event (the proxy binds method, target and decision). */
export type HttpLog = (action: 'allowed' | 'denied', status: number, reason: string, ip?: string) => void

/** Parses and validates an absolute-form request; returns the pieces or a 400 reason. */
export function proxyTarget(req: IncomingMessage, maxTargetBytes: number): Target | { error: string; status?: 400 | 414 } {
  const url = req.url ?? ''
  const refused = requestRefusal(req, maxTargetBytes)
  if (refused) return { error: refused.detail, status: refused.status }
  if (url.startsWith('/') || url === '*') return { error: 'not a proxy request: origin-form request target (send absolute-form http:// URLs through the proxy)' }
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(#.*)?$/.exec(url)
  if (!m) return { error: 'malformed request target' }
  const scheme = m[1]!.toLowerCase()
  if (scheme !== 'http') return { error: `${scheme}:// request targets are not proxied; use CONNECT (HTTPS_PROXY) for TLS` }
  if (m[5] !== undefined) return { error: 'fragment in request target' }
  const authority = m[2]!
  if (authority.includes('@')) return { error: 'userinfo in request target' }
  let host: CanonicalHost
  let port: number
  try {
    ;({ host, port } = parseAuthority(authority, 80))
  } catch (e) {
    return { error: `bad host in request target: ${(e as Error).message}` }
  }
  // Node keeps only the first Host header, but forwards all of them: a second one could pick
  // another virtual host on the upstream than the one the policy decided on.
  if (hostHeaderCount(req) > 1) return { error: 'more than one Host header' }
  const hh = req.headers.host
  if (hh === undefined) return { error: 'missing Host header' }
  try {
    const h = parseAuthority(hh, 80)
    if (h.host.host !== host.host || h.port !== port) return { error: 'Host header does not match the request target' }
  } catch {
    return { error: 'Host header does not match the request target' }
  }
  return { host, port, path: m[3] === '' ? '/' : m[3]!, query: m[4] ?? null }
}

/** A request the proxy has admitted, and where it goes. */
export interface Admitted {
  target: Target
  method: string
  /** The connected upstream socket (already checked against the address rules), dialled with `feed` as its ReadRelay. */
  upstream: Socket
  feed: HeadFeed
  ip: string
  /** The decision's reason, logged with the upstream's status. */
  reason: string
  log: HttpLog
  idleTimeoutMs: number
}

/**
 * Sends an admitted request upstream on its own socket and streams the response back; logs the
 * upstream's status (or the failure) once. The response head and its framing are Node's parser's
 * (through a HeadFeed); a Content-Length body then streams to the client raw (http/head-feed.ts),
 * any other body through the parser.
 */
export function forwardAdmitted(req: IncomingMessage, res: ServerResponse, f: Admitted): void {
  const t = f.target
  const headers = forwardHeaders(req.rawHeaders)
  // A chunked request body keeps chunked framing upstream (Node re-chunks it); without this a
  // GET/DELETE with a chunked body would be sent unframed.
  if (req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked')
  const feed = f.feed
  const ureq = httpRequest({
    method: f.method,
    path: t.path + (t.query !== null ? `?${t.query}` : ''),
    headers,
    setHost: false,
    // No agent: with createConnection and no agent, Node uses exactly this stream over the
    // (already checked and connected) socket; an agent would dial by name itself.
    createConnection: () => feed.stream,
  })
  if (f.idleTimeoutMs > 0) f.upstream.setTimeout(f.idleTimeoutMs, () => ureq.destroy(new Error('upstream idle timeout')))
  let logged = false
  // The response is complete towards the client: what the upstream side does after is not its business.
  let finished = false
  // A 1xx head: the feed gives the parser the next one.
  ureq.on('information', () => feed.informational())
  ureq.on('response', ures => {
    logged = true
    f.log('allowed', ures.statusCode ?? 0, f.reason, f.ip)
    if (res.destroyed) {
      ures.destroy()
      return
    }
    res.writeHead(ures.statusCode ?? 502, ures.statusMessage, responseHeaders(ures.rawHeaders))
    const sink = {
      data: (b: Buffer, written: () => void) => void res.write(b, written),
      end: () => {
        finished = true
        res.end()
        ureq.destroy()
      },
    }
    if (feed.takeBody(ureq.method, ures, sink, () => res.destroy())) {
      ures.on('error', () => {
        if (!finished) res.destroy()
      })
      return
    }
    ures.pipe(res)
    ures.on('error', () => res.destroy())
  })
  ureq.on('error', e => {
    if (finished) return
    if (!logged) {
      logged = true
      f.log('allowed', 502, `upstream error: ${e.message}`, f.ip)
    }
    if (!res.headersSent) sendJson(res, 502, 'Bad Gateway', { error: 'upstream_error', detail: `request to ${t.host.host}:${t.port} failed` })
    else res.destroy()
  })
  res.on('close', () => {
    if (!res.writableFinished) ureq.destroy()
  })
  req.pipe(ureq)
}
