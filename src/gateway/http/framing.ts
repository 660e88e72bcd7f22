/**
 * Request framing and semantics rules for EVERY HTTP path of the gateway: plain http:// and ws://
 * (src/gateway/proxy.ts) and requests decrypted from, or sent in cleartext inside, a CONNECT
 * tunnel (src/gateway/tls-terminate.ts). Each rule exists here once. Pure functions over what
 * Node's llhttp parser (strict mode) produced: the parser does the framing (request line, header
 * syntax, obsolete line folding, differing duplicate Content-Length, bare LF); these rules refuse
 * the requests it accepts but a proxy must not forward.
 */
import type { IncomingMessage } from 'node:http'
import type { Decision, HttpRequestInfo, PolicyEngine } from '../policy-engine.js'

/** A request refused before any policy decision: its status (400 or 414) and why. */
export interface RequestRefusal {
  readonly status: 400 | 414
  readonly detail: string
}

/**
 * The checks every request meets before its policy decision, in order: the request target's size
 * (414 over `maxTargetBytes`: a long target is refused before the L7 matcher sees it), then the
 * framing rules (400, framingError).
 */
export function requestRefusal(req: IncomingMessage, maxTargetBytes: number): RequestRefusal | undefined {
  const len = Buffer.byteLength(req.url ?? '')
  if (len > maxTargetBytes) return { status: 414, detail: `request target of ${len} bytes is longer than ${maxTargetBytes}` }
  const f = framingError(req)
  return f === undefined ? undefined : { status: 400, detail: f }
}

/**
 * The policy decision for a request, with every method-override claim (METHOD_OVERRIDE_HEADERS,
 * `_method` query) decided as the effective method too: a POST carrying
 * `X-HTTP-Method-Override: DELETE` is allowed only where DELETE is (frameworks that honour the
 * header execute a DELETE). Under an L4 endpoint (full access) every method is allowed, so claims
 * change nothing there. `{ error }` = a malformed claim (400).
 */
export function decideEffective(engine: PolicyEngine, info: HttpRequestInfo, req: IncomingMessage, opts: { upgrade?: boolean } = {}): Decision | { error: string } {
  const d = engine.decideHttp(info, opts)
  if (!d.allowed) return d
  const ov = overrideMethods(req, info.query)
  if ('error' in ov) return ov
  for (const m of ov.methods) {
    const o = engine.decideHttp({ ...info, method: m }, opts)
    if (!o.allowed) return { ...o, rule: `${m} ${info.path}`, reason: `method override to ${m} (${info.method} claiming ${m}) refused: ${o.reason}` }
  }
  return d
}

/**
 * Headers that frame the message or say whom it is for. A request that names one of them in
 * `Connection` asks every hop to DROP it: a proxy that obeys forwards a body without its framing
 * (the upstream reads it as the next request: smuggling) or a request without the Host the policy
 * checked. OpenShell refuses such requests; so does podshell (400), never stripping them quietly.
 */
const CONNECTION_FORBIDDEN = new Set(['content-length', 'transfer-encoding', 'host'])

/** Returns why the request's framing is unacceptable, or undefined. Linear in the header list. */
export function framingError(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders
  let te: string | undefined
  let cl = 0
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase()
    if (k === 'connection' || k === 'proxy-connection') {
      for (const token of raw[i + 1]!.split(',')) {
        const t = token.trim().toLowerCase()
        if (CONNECTION_FORBIDDEN.has(t)) return `${raw[i]} names ${t}, an end-to-end framing/identity header (a hop may not drop it)`
      }
    } else if (k === 'transfer-encoding') {
      if (te !== undefined) return 'more than one Transfer-Encoding header'
      te = raw[i + 1]!
    } else if (k === 'content-length') {
      cl++
    }
  }
  // llhttp already refuses differing duplicates; identical ones are refused here too (no guessing).
  if (cl > 1) return 'more than one Content-Length header'
  if (te !== undefined) {
    if (cl > 0) return 'both Transfer-Encoding and Content-Length'
    if (te.trim().toLowerCase() !== 'chunked') return 'unsupported Transfer-Encoding'
  }
  return undefined
}

/**
 * Header names by which frameworks let a request claim another method (Rails, Express
 * method-override, Google APIs, Symfony, Laravel: `_method`). The gateway checks every claimed
 * method as the effective method against the L7 rules: a POST claiming DELETE is allowed only where
 * DELETE is.
 */
export const METHOD_OVERRIDE_HEADERS = ['x-http-method-override', 'x-method-override', 'x-http-method'] as const

/** Upper bound of distinct override claims checked per request (each is one policy decision). */
const MAX_OVERRIDES = 8

/**
 * Every method the request claims besides its own (headers and `_method` query parameters),
 * upper-cased and de-duplicated; `{ error }` for a claim that is not a method token or too many.
 */
export function overrideMethods(req: IncomingMessage, query: string | null): { methods: string[] } | { error: string } {
  const claims = new Set<string>()
  const add = (v: string, where: string): string | undefined => {
    for (const part of v.split(',')) {
      const m = part.trim().toUpperCase()
      if (m === '') continue
      if (!/^[A-Z][A-Z0-9_-]{0,31}$/.test(m)) return `method override in ${where} is not a method name`
      claims.add(m)
    }
    return undefined
  }
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase()
    if ((METHOD_OVERRIDE_HEADERS as readonly string[]).includes(k)) {
      const e = add(raw[i + 1]!, raw[i]!)
      if (e) return { error: e }
    }
  }
  if (query !== null && query.includes('_method')) {
    for (const v of new URLSearchParams(query).getAll('_method')) {
      const e = add(v, 'the _method query parameter')
      if (e) return { error: e }
    }
  }
  if (claims.size > MAX_OVERRIDES) return { error: `more than ${MAX_OVERRIDES} method overrides` }
  const own = (req.method ?? 'GET').toUpperCase()
  claims.delete(own)
  return { methods: [...claims] }
}

/** Hop-by-hop headers never forwarded (RFC 9110 §7.6.1 plus the proxy's own). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect'])

/**
 * Drops hop-by-hop headers and those named in Connection from a raw header list (linear).
 * `keep` names hop-by-hop headers to keep (an upgrade keeps Connection/Upgrade);
 * `dropFraming` also drops Content-Length (the side that re-frames the body sets its own).
 */
export function forwardHeaders(raw: readonly string[], opts: { keep?: readonly string[]; dropFraming?: boolean } = {}): string[] {
  const keep = new Set(opts.keep ?? [])
  const named = new Set<string>()
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const n of raw[i + 1]!.split(',')) named.add(n.trim().toLowerCase())
  }
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase()
    if (!keep.has(k) && (HOP_BY_HOP.has(k) || named.has(k))) continue
    if (opts.dropFraming && k === 'content-length') continue
    out.push(raw[i]!, raw[i + 1]!)
  }
  return out
}

/**
 * A response's headers for the client: hop-by-hop ones dropped, and Content-Length dropped when
 * the upstream also sent Transfer-Encoding (Node frames the body towards the client itself).
 */
export function responseHeaders(raw: readonly string[]): string[] {
  let te = false
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === 'transfer-encoding') te = true
  return forwardHeaders(raw, { dropFraming: te })
}
