/**
 * IP-literal and host-name canonicalisation, and classification of the addresses the gateway is
 * about to connect to.
 *
 * Why this exists: policy decisions are made on names and addresses the *sandbox* chose, so every
 * spelling a resolver or an HTTP client would accept for the same destination must reach the policy
 * engine in one canonical form. `127.1`, `0x7f.0.0.1`, `2130706433`, `017700000001` and
 * `::ffff:127.0.0.1` are all loopback; `Api.Example.com.` is `api.example.com`. A host that cannot be
 * put into canonical form is rejected (fails closed), never passed through.
 *
 * Address classification is the SSRF / DNS-rebinding guard: after the gateway resolves a name it
 * checks EVERY candidate address here and then connects to exactly the address it checked.
 */

export type IpFamily = 4 | 6

/** A parsed IP address: 4 or 16 network-order bytes plus its canonical text (RFC 5952 for v6). */
export interface IpAddress {
  readonly family: IpFamily
  readonly bytes: Uint8Array
  /** Canonical text without brackets: `127.0.0.1`, `2001:db8::1`, `::ffff:127.0.0.1`. */
  readonly text: string
}

export class HostError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'HostError'
  }
}

// ---------------------------------------------------------------------------------------------
// IPv4 (inet_aton / WHATWG URL forms)
// ---------------------------------------------------------------------------------------------

/**
 * Parses one inet_aton part: decimal, octal with a leading 0, or hex with 0x. Returns undefined for
 * anything else (`1e2`, `08`, empty, signs, whitespace). Values are bounded so huge inputs cannot
 * round into range.
 */
function parseV4Part(part: string): number | undefined {
  if (part === '') return undefined
  let digits = part
  let radix = 10
  if (/^0x/i.test(part)) {
    digits = part.slice(2)
    radix = 16
    if (digits === '') return 0 // "0x" is 0 in inet_aton and WHATWG
    if (!/^[0-9a-f]+$/i.test(digits)) return undefined
  } else if (part.length > 1 && part.startsWith('0')) {
    digits = part.slice(1)
    radix = 8
    if (!/^[0-7]+$/.test(digits)) return undefined
  } else if (!/^[0-9]+$/.test(digits)) {
    return undefined
  }
  // Strip leading zeros before the length check so 0x00000000ff still parses.
  const trimmed = digits.replace(/^0+(?=.)/, '')
  if (trimmed.length > 12) return undefined
  const v = parseInt(trimmed, radix)
  return Number.isSafeInteger(v) ? v : undefined
}

/**
 * Parses an IPv4 literal in any form inet_aton and the WHATWG URL parser accept: 1–4 parts, each
 * decimal/octal/hex; the last part fills the remaining bytes. One trailing dot is allowed.
 * Returns undefined when `s` is not an IPv4 literal.
 */
export function parseIPv4(s: string): IpAddress | undefined {
  let parts = s.split('.')
  if (parts.length > 1 && parts[parts.length - 1] === '') parts = parts.slice(0, -1)
  if (parts.length < 1 || parts.length > 4) return undefined
  const nums: number[] = []
  for (const p of parts) {
    const n = parseV4Part(p)
    if (n === undefined) return undefined
    nums.push(n)
  }
  const last = nums[nums.length - 1]!
  const head = nums.slice(0, -1)
  if (head.some(n => n > 255)) return undefined
  const restBytes = 4 - head.length
  if (last >= 2 ** (8 * restBytes)) return undefined
  let value = last
  for (let i = 0; i < head.length; i++) value += head[i]! * 2 ** (8 * (3 - i))
  const bytes = new Uint8Array([(value >>> 24) & 255, (value >>> 16) & 255, (value >>> 8) & 255, value & 255])
  return v4(bytes)
}

function v4(bytes: Uint8Array): IpAddress {
  return { family: 4, bytes, text: `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}` }
}

/**
 * WHATWG "ends in a number": a host whose last label is all digits or 0x-hex is an IPv4 literal or
 * invalid, never a DNS name. `1e2.1.1.1` therefore fails instead of being resolved as a name.
 */
function endsInNumber(host: string): boolean {
  let labels = host.split('.')
  if (labels[labels.length - 1] === '') {
    if (labels.length === 1) return false
    labels = labels.slice(0, -1)
  }
  const last = labels[labels.length - 1]!
  return /^[0-9]+$/.test(last) || /^0x[0-9a-f]*$/i.test(last)
}

// ---------------------------------------------------------------------------------------------
// IPv6
// ---------------------------------------------------------------------------------------------

/**
 * Parses an IPv6 literal (no brackets, no zone id). Accepts `::` compression and a trailing dotted
 * IPv4 in strict dotted-quad form. Returns undefined for anything else.
 */
export function parseIPv6(s: string): IpAddress | undefined {
  if (s.length < 2 || s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return undefined
  const dbl = s.indexOf('::')
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return undefined
  const words: number[] = []
  const parseSide = (side: string, allowV4: boolean): number[] | undefined => {
    if (side === '') return []
    const groups = side.split(':')
    const out: number[] = []
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!
      if (allowV4 && i === groups.length - 1 && g.includes('.')) {
        const q = parseDottedQuad(g)
        if (!q) return undefined
        out.push((q[0]! << 8) | q[1]!, (q[2]! << 8) | q[3]!)
        continue
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined
      out.push(parseInt(g, 16))
    }
    return out
  }
  if (dbl === -1) {
    const all = parseSide(s, true)
    if (!all || all.length !== 8) return undefined
    words.push(...all)
  } else {
    const left = parseSide(s.slice(0, dbl), false)
    const right = parseSide(s.slice(dbl + 2), true)
    if (!left || !right || left.length + right.length > 7) return undefined
    words.push(...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right)
  }
  const bytes = new Uint8Array(16)
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8
    bytes[2 * i + 1] = w & 255
  })
  return v6(bytes)
}

/** Strict a.b.c.d with decimal 0–255 and no leading zeros (the only v4 form allowed inside v6). */
function parseDottedQuad(s: string): number[] | undefined {
  const p = s.split('.')
  if (p.length !== 4) return undefined
  const out: number[] = []
  for (const x of p) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(x)) return undefined
    const n = Number(x)
    if (n > 255) return undefined
    out.push(n)
  }
  return out
}

function v6(bytes: Uint8Array): IpAddress {
  return { family: 6, bytes, text: formatIPv6(bytes) }
}

/** RFC 5952 text: lowercase, longest run (≥2) of zero groups compressed, v4-mapped as dotted quad. */
export function formatIPv6(b: Uint8Array): string {
  const words: number[] = []
  for (let i = 0; i < 8; i++) words.push((b[2 * i]! << 8) | b[2 * i + 1]!)
  if (words.slice(0, 5).every(w => w === 0) && words[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`
  }
  let bestStart = -1
  let bestLen = 0
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const hex = words.map(w => w.toString(16))
  if (bestStart === -1) return hex.join(':')
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`
}

/** Parses an IP literal in any accepted spelling (v4 inet_aton forms, v6 with or without brackets). */
export function parseIp(s: string): IpAddress | undefined {
  if (s.startsWith('[') && s.endsWith(']')) return parseIPv6(s.slice(1, -1))
  if (s.includes(':')) return parseIPv6(s)
  return endsInNumber(s) ? parseIPv4(s) : undefined
}

// ---------------------------------------------------------------------------------------------
// Host canonicalisation
// ---------------------------------------------------------------------------------------------

export type CanonicalHost =
  | { readonly kind: 'ip'; readonly host: string; readonly ip: IpAddress }
  | { readonly kind: 'name'; readonly host: string }

const MAX_HOST = 253

/**
 * Canonicalises a host as a sandbox sent it (CONNECT authority, absolute URL, Host header):
 * lowercase, one trailing dot removed, IP literals in canonical text. Punycode (`xn--`) labels are
 * kept as they are; raw non-ASCII is rejected (clients send punycode on the wire). Throws HostError
 * for anything that could smuggle a second meaning past the policy: CR/LF, spaces, `@` (userinfo),
 * `#`, `/`, `\`, `?`, `%`, empty labels, over-long names, and hosts that end in a number but are not
 * a valid IPv4 literal (`1e2.1.1.1`).
 */
export function canonicalizeHost(raw: string): CanonicalHost {
  if (raw.length === 0) throw new HostError('empty host')
  if (raw.length > MAX_HOST + 2) throw new HostError('host is too long')
  if (/[\r\n\0]/.test(raw)) throw new HostError('host contains CR, LF or NUL')
  if (/[\s@#/\\?%]/.test(raw)) throw new HostError('host contains a forbidden character (space, @, #, /, \\, ? or %)')
  // eslint-disable-next-line no-control-regex
  if (/[^\x21-\x7e]/.test(raw)) throw new HostError('host contains non-ASCII or control characters (use the punycode xn-- form)')
  if (raw.startsWith('[') || raw.includes(':')) {
    const inner = raw.startsWith('[') ? (raw.endsWith(']') ? raw.slice(1, -1) : '') : raw
    const ip = parseIPv6(inner)
    if (!ip) throw new HostError('invalid IPv6 literal')
    return { kind: 'ip', host: ip.text, ip }
  }
  const lower = raw.toLowerCase()
  if (endsInNumber(lower)) {
    const ip = parseIPv4(lower)
    if (!ip) throw new HostError('host ends in a number but is not a valid IPv4 address')
    return { kind: 'ip', host: ip.text, ip }
  }
  const name = lower.endsWith('.') ? lower.slice(0, -1) : lower
  if (name.length === 0 || name.length > MAX_HOST) throw new HostError('invalid host length')
  const labels = name.split('.')
  for (const l of labels) {
    if (l.length === 0) throw new HostError('host has an empty label')
    if (l.length > 63) throw new HostError('host has a label longer than 63 characters')
    if (!/^[a-z0-9_-]+$/.test(l)) throw new HostError('host contains characters outside letters, digits, "-" and "_"')
  }
  return { kind: 'name', host: name }
}

/**
 * Splits an authority (`host:port`, `[v6]:port`) as found in a CONNECT request target. The port is
 * mandatory (CONNECT has no default) and must be decimal 1–65535.
 */
export function parseAuthority(authority: string, defaultPort?: number): { host: CanonicalHost; port: number } {
  let hostPart: string
  let portPart: string | undefined
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']')
    if (close === -1) throw new HostError('unterminated IPv6 literal')
    hostPart = authority.slice(0, close + 1)
    const rest = authority.slice(close + 1)
    if (rest !== '') {
      if (!rest.startsWith(':')) throw new HostError('garbage after IPv6 literal')
      portPart = rest.slice(1)
    }
  } else {
    const i = authority.lastIndexOf(':')
    if (i !== -1) {
      if (authority.indexOf(':') !== i) throw new HostError('IPv6 literals must be in brackets')
      hostPart = authority.slice(0, i)
      portPart = authority.slice(i + 1)
    } else {
      hostPart = authority
    }
  }
  let port: number
  if (portPart === undefined) {
    if (defaultPort === undefined) throw new HostError('port is required')
    port = defaultPort
  } else {
    port = parsePort(portPart)
  }
  return { host: canonicalizeHost(hostPart), port }
}

export function parsePort(s: string): number {
  if (!/^[0-9]{1,5}$/.test(s)) throw new HostError('invalid port')
  const n = Number(s)
  if (n < 1 || n > 65535) throw new HostError('port out of range')
  return n
}

// ---------------------------------------------------------------------------------------------
// CIDR
// ---------------------------------------------------------------------------------------------

export interface Cidr {
  readonly family: IpFamily
  readonly bytes: Uint8Array
  readonly prefix: number
  readonly text: string
}

/** Parses `a.b.c.d/n`, `v6/n` or a bare address (= /32, /128). Strict dotted quad for v4. */
export function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf('/')
  const addrPart = slash === -1 ? s : s.slice(0, slash)
  const ip = addrPart.includes(':') ? parseIPv6(addrPart) : parseDottedQuad(addrPart) ? parseIPv4(addrPart) : undefined
  if (!ip) return undefined
  const max = ip.family === 4 ? 32 : 128
  let prefix = max
  if (slash !== -1) {
    const p = s.slice(slash + 1)
    if (!/^[0-9]{1,3}$/.test(p)) return undefined
    prefix = Number(p)
    if (prefix > max) return undefined
  }
  const bytes = maskBytes(ip.bytes, prefix)
  const base = ip.family === 4 ? v4(bytes).text : formatIPv6(bytes)
  return { family: ip.family, bytes, prefix, text: `${base}/${prefix}` }
}

function maskBytes(b: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(b.length)
  for (let i = 0; i < b.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - 8 * i))
    out[i] = b[i]! & (bits === 0 ? 0 : (0xff << (8 - bits)) & 0xff)
  }
  return out
}

/**
 * True when `cidr` covers `ip`. A v4 CIDR also covers the v4-mapped v6 form (`::ffff:a.b.c.d`) of
 * its addresses, so `allowed_ips: [10.0.0.0/8]` means the same destination whichever family the
 * resolver returned.
 */
export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  let addr = ip
  if (cidr.family === 4 && ip.family === 6) {
    const m = mappedV4(ip)
    if (!m) return false
    addr = m
  }
  if (cidr.family !== addr.family) return false
  const masked = maskBytes(addr.bytes, cidr.prefix)
  for (let i = 0; i < masked.length; i++) if (masked[i] !== cidr.bytes[i]) return false
  return true
}

// ---------------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------------

/**
 * always  — never connectable, whatever the policy says (loopback, link-local, metadata, …)
 * private — connectable only when the endpoint's allowed_ips covers it
 * public  — connectable
 */
export type AddressVerdict = 'always' | 'private' | 'public'

export interface AddressClass {
  readonly verdict: AddressVerdict
  /** Human-readable category, used in deny reasons: "loopback", "cloud metadata", "RFC 1918", … */
  readonly category: string
  /** The embedded IPv4 address that decided the verdict for mapped/NAT64/6to4/Teredo forms. */
  readonly embedded?: IpAddress
}

const cidrs = (list: string[]) => list.map(c => parseCidr(c)!)

/** Cloud metadata endpoints: never reachable (AWS/GCP/Azure IMDS, AWS IMDSv6, Alibaba, Azure WireServer). */
const METADATA = cidrs(['169.254.169.254/32', 'fd00:ec2::254/128', '100.100.100.200/32', '168.63.129.16/32'])

const V4_ALWAYS: [Cidr, string][] = [
  [parseCidr('0.0.0.0/8')!, 'this-network (0.0.0.0/8)'],
  [parseCidr('127.0.0.0/8')!, 'loopback'],
  [parseCidr('169.254.0.0/16')!, 'link-local'],
  [parseCidr('224.0.0.0/4')!, 'multicast'],
  [parseCidr('255.255.255.255/32')!, 'broadcast'],
  [parseCidr('240.0.0.0/4')!, 'reserved (240.0.0.0/4)'],
]

const V4_PRIVATE: [Cidr, string][] = [
  [parseCidr('10.0.0.0/8')!, 'private (RFC 1918)'],
  [parseCidr('172.16.0.0/12')!, 'private (RFC 1918)'],
  [parseCidr('192.168.0.0/16')!, 'private (RFC 1918)'],
  [parseCidr('100.64.0.0/10')!, 'carrier-grade NAT (100.64.0.0/10)'],
  [parseCidr('198.18.0.0/15')!, 'benchmarking (198.18.0.0/15)'],
  [parseCidr('192.0.0.0/24')!, 'IETF protocol assignments (192.0.0.0/24)'],
  [parseCidr('192.0.2.0/24')!, 'documentation (TEST-NET-1)'],
  [parseCidr('198.51.100.0/24')!, 'documentation (TEST-NET-2)'],
  [parseCidr('203.0.113.0/24')!, 'documentation (TEST-NET-3)'],
]

const V6_ALWAYS: [Cidr, string][] = [
  [parseCidr('::/128')!, 'unspecified'],
  [parseCidr('::1/128')!, 'loopback'],
  [parseCidr('::/96')!, 'IPv4-compatible (deprecated, ::/96)'],
  [parseCidr('fe80::/10')!, 'link-local'],
  [parseCidr('ff00::/8')!, 'multicast'],
  [parseCidr('100::/64')!, 'discard-only (100::/64)'],
]

const V6_PRIVATE: [Cidr, string][] = [
  [parseCidr('fc00::/7')!, 'unique local (fc00::/7)'],
  [parseCidr('fec0::/10')!, 'site-local (fec0::/10)'],
  [parseCidr('2001:db8::/32')!, 'documentation (2001:db8::/32)'],
]

/** `::ffff:a.b.c.d` (v4-mapped) → a.b.c.d */
function mappedV4(ip: IpAddress): IpAddress | undefined {
  const b = ip.bytes
  if (ip.family !== 6) return undefined
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return undefined
  if (b[10] !== 0xff || b[11] !== 0xff) return undefined
  return v4(b.slice(12, 16))
}

/**
 * IPv6 forms that carry an IPv4 address a router or translator may deliver to: v4-mapped,
 * v4-compatible (deprecated), SIIT v4-translated, NAT64 (well-known and local-use), 6to4 and Teredo
 * (client address, stored inverted; the server address too). The v6 address is judged by the
 * strictest verdict of what it embeds, so `64:ff9b::7f00:1` is loopback.
 */
export function embeddedV4(ip: IpAddress): IpAddress[] {
  if (ip.family !== 6) return []
  const b = ip.bytes
  const zero = (from: number, to: number) => b.slice(from, to).every(x => x === 0)
  const tail = () => v4(b.slice(12, 16))
  const out: IpAddress[] = []
  const mapped = mappedV4(ip)
  if (mapped) out.push(mapped)
  // v4-compatible ::a.b.c.d (except :: and ::1 which are classified on their own)
  if (zero(0, 12) && !zero(12, 15)) out.push(tail())
  // SIIT ::ffff:0:a.b.c.d
  if (zero(0, 8) && b[8] === 0xff && b[9] === 0xff && b[10] === 0 && b[11] === 0) out.push(tail())
  // NAT64 well-known 64:ff9b::/96
  if (b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12)) out.push(tail())
  // NAT64 local-use 64:ff9b:1::/48 (RFC 8215): the v4 address is in the last 32 bits for a /96 prefix
  if (b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && b[4] === 0 && b[5] === 1) out.push(tail())
  // 6to4 2002:AABB:CCDD::/48
  if (b[0] === 0x20 && b[1] === 0x02) out.push(v4(b.slice(2, 6)))
  // Teredo 2001:0000::/32 — server at bytes 4..7, client = bytes 12..15 XOR 0xff
  if (b[0] === 0x20 && b[1] === 0x01 && b[2] === 0 && b[3] === 0) {
    out.push(v4(b.slice(4, 8)))
    out.push(v4(b.slice(12, 16).map(x => x ^ 0xff)))
  }
  return out
}

function classifyV4(ip: IpAddress): AddressClass {
  for (const m of METADATA) if (cidrContains(m, ip)) return { verdict: 'always', category: 'cloud metadata' }
  for (const [c, name] of V4_ALWAYS) if (cidrContains(c, ip)) return { verdict: 'always', category: name }
  for (const [c, name] of V4_PRIVATE) if (cidrContains(c, ip)) return { verdict: 'private', category: name }
  return { verdict: 'public', category: 'public' }
}

const RANK: Record<AddressVerdict, number> = { public: 0, private: 1, always: 2 }

/** Classifies a resolved address; see AddressVerdict. */
export function classifyAddress(ip: IpAddress): AddressClass {
  if (ip.family === 4) return classifyV4(ip)
  for (const m of METADATA) if (m.family === 6 && cidrContains(m, ip)) return { verdict: 'always', category: 'cloud metadata' }
  for (const [c, name] of V6_ALWAYS) if (cidrContains(c, ip)) return { verdict: 'always', category: name }
  let worst: AddressClass | undefined
  for (const e of embeddedV4(ip)) {
    const c = classifyV4(e)
    if (!worst || RANK[c.verdict] > RANK[worst.verdict]) worst = { verdict: c.verdict, category: `${c.category} (embedded in ${ip.text})`, embedded: e }
  }
  if (worst && worst.verdict !== 'public') return worst
  for (const [c, name] of V6_PRIVATE) if (cidrContains(c, ip)) return { verdict: 'private', category: name }
  return worst ?? { verdict: 'public', category: 'public' }
}

/** Result of checking one resolved address against an endpoint's allowed_ips. */
export type AddressCheck = { readonly ok: true } | { readonly ok: false; readonly reason: string }

/**
 * The SSRF decision for one address the gateway is about to connect to.
 *
 *  - always-blocked addresses are refused even when allowed_ips covers them (the list is a
 *    convenience for private services, never a way to reach the host, its loopback or metadata);
 *  - when `allowedIps` is given (non-empty), the address must be inside it — public or private —
 *    as OpenShell does: allowed_ips pins the endpoint to those networks;
 *  - otherwise private addresses are refused and public ones pass.
 */
export function checkAddress(ip: IpAddress, allowedIps: readonly Cidr[] | undefined, label = ip.text): AddressCheck {
  const cls = classifyAddress(ip)
  if (cls.verdict === 'always') return { ok: false, reason: `${label} resolves to ${cls.category} address ${ip.text}, which is always blocked` }
  if (allowedIps && allowedIps.length > 0) {
    if (allowedIps.some(c => cidrContains(c, ip))) return { ok: true }
    return { ok: false, reason: `${label} resolves to ${ip.text}, which is not in the endpoint's allowed_ips` }
  }
  if (cls.verdict === 'private') return { ok: false, reason: `${label} resolves to ${cls.category} address ${ip.text}; add it to the endpoint's allowed_ips to permit it` }
  return { ok: true }
}

/** True when a CIDR overlaps an always-blocked range (such allowed_ips entries can never help). */
export function cidrOverlapsAlwaysBlocked(c: Cidr): boolean {
  const ranges = c.family === 4 ? [...METADATA.filter(m => m.family === 4), ...V4_ALWAYS.map(x => x[0])] : [...METADATA.filter(m => m.family === 6), ...V6_ALWAYS.map(x => x[0])]
  return ranges.some(r => {
    const p = Math.min(r.prefix, c.prefix)
    const a = maskBytes(r.bytes, p)
    const b = maskBytes(c.bytes, p)
    return a.every((x, i) => x === b[i])
  })
}
