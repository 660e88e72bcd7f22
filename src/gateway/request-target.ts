/** A request target as the L7 rules see it: the canonical path and the decoded query (shared by plain HTTP and inspected TLS). */

/**
 * Decodes a query string the way form-decoding servers do ("+" is a space, %XX decoded), so a rule
 * sees the value the upstream will see. Returns undefined for malformed percent-encoding (the
 * caller denies: an undecodable value cannot be judged).
 */
export function parseQuery(q: string | null): Map<string, string[]> | undefined {
  const out = new Map<string, string[]>()
  if (q === null || q === '') return out
  for (const pair of q.split('&')) {
    if (pair === '') continue
    const eq = pair.indexOf('=')
    const rawK = eq === -1 ? pair : pair.slice(0, eq)
    const rawV = eq === -1 ? '' : pair.slice(eq + 1)
    let k: string
    let v: string
    try {
      k = decodeURIComponent(rawK.replace(/\+/g, ' '))
      v = decodeURIComponent(rawV.replace(/\+/g, ' '))
    } catch {
      return undefined
    }
    const list = out.get(k)
    if (list) list.push(v)
    else out.set(k, [v])
  }
  return out
}

export type CanonicalPath = { ok: true; path: string } | { ok: false; reason: string }

/**
 * The path the L7 rules see: percent-decoded, `;params` stripped from segments, dot-segments
 * resolved, repeated slashes collapsed (OpenShell's invariant for `input.request.path`). Encoded
 * slashes (`%2F`) are rejected unless the endpoint sets allow_encoded_slash; encoded backslashes,
 * NUL and malformed escapes are always rejected, because servers disagree on what they mean and a
 * rule can only be judged against one meaning.
 */
export function canonicalizePath(raw: string, allowEncodedSlash = false): CanonicalPath {
  if (!raw.startsWith('/')) return { ok: false, reason: 'path must start with "/"' }
  const pct = raw.includes('%')
  if (pct) {
    if (/%(?![0-9a-fA-F]{2})/.test(raw)) return { ok: false, reason: 'malformed percent-encoding in path' }
    if (/%00/.test(raw)) return { ok: false, reason: 'encoded NUL in path' }
    if (/%5c/i.test(raw)) return { ok: false, reason: 'backslash in path' }
    if (!allowEncodedSlash && /%2f/i.test(raw)) return { ok: false, reason: 'encoded slash (%2F) in path (set allow_encoded_slash on the endpoint to permit it)' }
  }
  if (raw.includes('\\')) return { ok: false, reason: 'backslash in path' }
  // Already canonical (nothing to decode, strip, collapse or resolve): the path as it is. This is
  // most requests, and a flood of long targets (bench/fairness.mjs: this function was 16% of the
  // gateway's CPU, one decodeURIComponent per segment); the loop below gives the same result.
  if (!pct && !raw.includes(';') && !raw.includes('//') && !/\/\.\.?(?:\/|$)/.test(raw)) return { ok: true, path: raw }
  const out: string[] = []
  const segs = raw.split('/')
  const trailing = raw.length > 1 && raw.endsWith('/')
  for (let i = 1; i < segs.length; i++) {
    let seg = segs[i]!
    try {
      if (seg.includes('%')) seg = decodeURIComponent(seg)
    } catch {
      return { ok: false, reason: 'malformed percent-encoding in path' }
    }
    const semi = seg.indexOf(';')
    if (semi !== -1) seg = seg.slice(0, semi)
    if (seg === '' || seg === '.') continue
    if (seg === '..') {
      out.pop()
      continue
    }
    out.push(seg)
  }
  let path = '/' + out.join('/')
  if (trailing && out.length > 0) path += '/'
  return { ok: true, path }
}
