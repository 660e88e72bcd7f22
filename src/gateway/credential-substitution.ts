/**
 * Placeholder → real value substitution on a decrypted request (issue 12). Pure: the caller
 * (src/gateway/tls-terminate.ts handleRequest) runs it after network and L7 admission and decides
 * what to do with the result.
 *
 * Where a placeholder is looked for and replaced: every request header value (so `Authorization:
 * Bearer <p>` and custom headers such as `x-api-key`), the credentials inside `Authorization` /
 * `Proxy-Authorization: Basic` (base64 decoded, substituted, re-encoded), and the request target
 * (path segments and query values; placeholders are made of [A-Za-z0-9_-], which URL encoding
 * leaves as they are). Bodies only where the endpoint opts in (not here).
 *
 * The rule (OpenShell's): a request that carries a placeholder is substituted only when EVERY
 * placeholder it carries belongs to a provider whose binding covers the request (`bound`);
 * otherwise nothing is substituted and the request is refused (`mismatch`). A placeholder whose
 * real value the gateway does not hold (provider deleted, gateway restarted) is `unavailable`:
 * refused too, never forwarded with a stale or literal value. Placeholders of other sandboxes are
 * unknown here and stay what they are: random strings that are not credentials.
 */

export interface HeldCredential {
  readonly provider: string
  readonly variable: string
  readonly placeholder: string
  /** undefined = the gateway does not hold the value (fail closed). */
  readonly value: string | undefined
}

export interface CredentialRequest {
  readonly rawHeaders: readonly string[]
  /** Origin-form request target (path and query). */
  readonly url: string
}

export type SubstitutionResult =
  | { readonly kind: 'none' }
  | { readonly kind: 'substituted'; readonly rawHeaders: string[]; readonly url: string; readonly used: readonly { provider: string; variable: string; where: string }[] }
  | { readonly kind: 'mismatch'; readonly provider: string; readonly variable: string; readonly where: string }
  | { readonly kind: 'unavailable'; readonly provider: string; readonly variable: string; readonly where: string }

/** OpenShell's body for a placeholder outside its binding (openshell-supervisor-network l7/relay.rs). */
export const CREDENTIAL_MISMATCH_BODY = { error: 'credential_endpoint_mismatch', message: 'Credential is not authorized for this request endpoint' } as const

const BASIC = /^(\s*basic\s+)([A-Za-z0-9+/=_-]+)(\s*)$/i

function decodeBasic(v: string): { pre: string; decoded: string; post: string } | undefined {
  const m = BASIC.exec(v)
  if (!m) return undefined
  const decoded = Buffer.from(m[2]!, 'base64').toString('latin1')
  return { pre: m[1]!, decoded, post: m[3]! }
}

/** Where each held placeholder occurs in the request (header name, `basic`, `path`, `query`). */
export function findPlaceholders(req: CredentialRequest, creds: readonly HeldCredential[]): { cred: HeldCredential; where: string }[] {
  const found: { cred: HeldCredential; where: string }[] = []
  if (creds.length === 0) return found
  const q = req.url.indexOf('?')
  const path = q === -1 ? req.url : req.url.slice(0, q)
  const query = q === -1 ? '' : req.url.slice(q + 1)
  for (const c of creds) {
    if (path.includes(c.placeholder)) found.push({ cred: c, where: 'path' })
    if (query.includes(c.placeholder)) found.push({ cred: c, where: 'query' })
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]!.toLowerCase()
      const v = req.rawHeaders[i + 1]!
      if (v.includes(c.placeholder)) found.push({ cred: c, where: `header ${name}` })
      else if (name === 'authorization' || name === 'proxy-authorization') {
        const b = decodeBasic(v)
        if (b && b.decoded.includes(c.placeholder)) found.push({ cred: c, where: `header ${name} (basic)` })
      }
    }
  }
  return found
}

/**
 * Substitutes the held placeholders found in `req`. `bound(provider)` says whether the provider's
 * binding covers this request's host, port and path.
 */
export function substituteCredentials(req: CredentialRequest, creds: readonly HeldCredential[], bound: (provider: string) => boolean): SubstitutionResult {
  const found = findPlaceholders(req, creds)
  if (found.length === 0) return { kind: 'none' }
  for (const f of found) {
    if (!bound(f.cred.provider)) return { kind: 'mismatch', provider: f.cred.provider, variable: f.cred.variable, where: f.where }
  }
  for (const f of found) {
    if (f.cred.value === undefined) return { kind: 'unavailable', provider: f.cred.provider, variable: f.cred.variable, where: f.where }
  }
  const live = [...new Map(found.map(f => [f.cred.placeholder, f.cred])).values()]
  const swap = (s: string) => {
    let out = s
    for (const c of live) out = out.split(c.placeholder).join(c.value!)
    return out
  }
  const rawHeaders: string[] = []
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!
    let v = req.rawHeaders[i + 1]!
    const lower = name.toLowerCase()
    if (lower === 'authorization' || lower === 'proxy-authorization') {
      const b = decodeBasic(v)
      if (b && live.some(c => b.decoded.includes(c.placeholder))) v = `${b.pre}${Buffer.from(swap(b.decoded), 'latin1').toString('base64')}${b.post}`
    }
    rawHeaders.push(name, swap(v))
  }
  return { kind: 'substituted', rawHeaders, url: swap(req.url), used: found.map(f => ({ provider: f.cred.provider, variable: f.cred.variable, where: f.where })) }
}

/** OpenShell's buffer limit for request body rewriting (`request_body_credential_rewrite`). */
export const MAX_BODY_REWRITE_BYTES = 256 * 1024

/**
 * The same rule on a buffered request body (opt-in endpoints only): every placeholder in it must be
 * bound and held, else the request is refused; otherwise all are replaced. Bytes are handled as
 * latin1, so a binary body passes through unchanged where it holds no placeholder.
 */
export function substituteBody(
  body: Buffer,
  creds: readonly HeldCredential[],
  bound: (provider: string) => boolean,
  where = 'body',
): { kind: 'none' } | { kind: 'substituted'; body: Buffer; providers: string[] } | { kind: 'mismatch' | 'unavailable'; provider: string; variable: string; where: string } {
  const text = body.toString('latin1')
  const found = creds.filter(c => text.includes(c.placeholder))
  if (found.length === 0) return { kind: 'none' }
  for (const c of found) if (!bound(c.provider)) return { kind: 'mismatch', provider: c.provider, variable: c.variable, where }
  for (const c of found) if (c.value === undefined) return { kind: 'unavailable', provider: c.provider, variable: c.variable, where }
  let out = text
  for (const c of found) out = out.split(c.placeholder).join(c.value!)
  return { kind: 'substituted', body: Buffer.from(out, 'latin1'), providers: [...new Set(found.map(c => `${c.provider}/${c.variable}`))] }
}
