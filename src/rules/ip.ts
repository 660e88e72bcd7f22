/**
 * THE IP/CIDR module: address parsing (ipaddr.js for IPv6 text and CIDRs; the WHATWG/inet_aton IPv4
 * host forms below), the ONE always-blocked list and the ONE private list, address classification
 * (the gateway's SSRF guard) and the allowed_ips validation rule. Policy validation
 * (src/policy/schema.ts), the enterprise ceiling (src/config/enterprise.ts) and the gateway
 * (src/gateway/address.ts, policy-engine.ts) all use this module, so validation can never accept
 * what the gateway always refuses without saying so (issue 10: 224.0.0.0/4, 240.0.0.0/4 and
 * 100.100.100.200/32 loaded silently while the gateway refused them).
 *
 * The IPv4 host parser stays hand-written on purpose: it implements the WHATWG URL "IPv4 parser"
 * (1–4 parts, decimal/octal/hex, `0x` alone, one trailing dot, "ends in a number") that HTTP
 * clients apply to a host — ipaddr.js's lenient parser accepts a different set (no trailing dot,
 * no bare `0x`), and the gateway must see the address the client will connect to.
 */
import ipaddr from 'ipaddr.js'

export type IpFamily = 4 | 6

/** A parsed IP address: 4 or 16 network-order bytes plus its canonical text (RFC 5952 for v6). */
export interface IpAddress {
  readonly family: IpFamily
  readonly bytes: Uint8Array
  /** Canonical text without brackets: `127.0.0.1`, `2001:db8::1`, `::ffff:127.0.0.1`. */
  readonly text: string
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
export function endsInNumber(host: string): boolean {
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
 * Parses an IPv6 literal (no brackets, no zone id) with ipaddr.js. Accepts `::` compression and a
 * trailing dotted IPv4 in strict dotted-quad form. Returns undefined for anything else.
 *
 * The dotted tail is converted to two hex groups here first: ipaddr.js reads every dotted tail as
 * v4-mapped (`::1.2.3.4` would become `::ffff:1.2.3.4`, another address), and accepts leading
 * zeros in it.
 */
export function parseIPv6(s: string): IpAddress | undefined {
  if (s.length < 2 || s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return undefined // no zone ids
  let text = s
  const lastColon = s.lastIndexOf(':')
  const tail = s.slice(lastColon + 1)
  if (tail.includes('.')) {
    const q = parseDottedQuad(tail)
    if (!q) return undefined
    text = `${s.slice(0, lastColon + 1)}${((q[0]! << 8) | q[1]!).toString(16)}:${((q[2]! << 8) | q[3]!).toString(16)}`
  }
  if (!ipaddr.IPv6.isValid(text)) return undefined
  return v6(Uint8Array.from(ipaddr.IPv6.parse(text).toByteArray()))
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
// CIDR
// ---------------------------------------------------------------------------------------------

export interface Cidr {
  readonly family: IpFamily
  readonly bytes: Uint8Array
  readonly prefix: number
  readonly text: string
}

/**
 * Parses `a.b.c.d/n`, `v6/n` or a bare address (= /32, /128) with ipaddr.js: strict dotted quad
 * for v4 (no leading zeros, no short forms), host bits cleared (`10.1.2.3/8` is `10.0.0.0/8`).
 */
export function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf('/')
  const addrPart = slash === -1 ? s : s.slice(0, slash)
  let ip: IpAddress | undefined
  if (addrPart.includes(':')) ip = parseIPv6(addrPart)
  else if (ipaddr.IPv4.isValidFourPartDecimal(addrPart)) ip = v4(Uint8Array.from(ipaddr.IPv4.parse(addrPart).toByteArray()))
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

/** A named address range of the one list. */
export interface NamedRange {
  readonly cidr: Cidr
  readonly category: string
}

const named = (list: [string, string][]): NamedRange[] => list.map(([c, category]) => ({ cidr: parseCidr(c)!, category }))

/**
 * THE always-blocked list: never connectable, whatever the policy says — the gateway refuses them
 * after resolution (checkAddress) and policy validation refuses allowed_ips entries inside them
 * (allowedIpsProblem). Cloud metadata first, so it names the category.
 */
export const ALWAYS_BLOCKED: readonly NamedRange[] = named([
  ['169.254.169.254/32', 'cloud metadata'],
  ['100.100.100.200/32', 'cloud metadata'],
  ['168.63.129.16/32', 'cloud metadata'],
  ['fd00:ec2::254/128', 'cloud metadata'],
  ['0.0.0.0/8', 'this-network (0.0.0.0/8)'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['224.0.0.0/4', 'multicast'],
  ['255.255.255.255/32', 'broadcast'],
  ['240.0.0.0/4', 'reserved (240.0.0.0/4)'],
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['::/96', 'IPv4-compatible (deprecated, ::/96)'],
  ['fe80::/10', 'link-local'],
  ['ff00::/8', 'multicast'],
  ['100::/64', 'discard-only (100::/64)'],
])

/** THE private list: connectable only when the endpoint's allowed_ips covers the address. */
export const PRIVATE_RANGES: readonly NamedRange[] = named([
  ['10.0.0.0/8', 'private (RFC 1918)'],
  ['172.16.0.0/12', 'private (RFC 1918)'],
  ['192.168.0.0/16', 'private (RFC 1918)'],
  ['100.64.0.0/10', 'carrier-grade NAT (100.64.0.0/10)'],
  ['198.18.0.0/15', 'benchmarking (198.18.0.0/15)'],
  ['192.0.0.0/24', 'IETF protocol assignments (192.0.0.0/24)'],
  ['192.0.2.0/24', 'documentation (TEST-NET-1)'],
  ['198.51.100.0/24', 'documentation (TEST-NET-2)'],
  ['203.0.113.0/24', 'documentation (TEST-NET-3)'],
  ['fc00::/7', 'unique local (fc00::/7)'],
  ['fec0::/10', 'site-local (fec0::/10)'],
  ['2001:db8::/32', 'documentation (2001:db8::/32)'],
])

/**
 * OpenShell's `is_always_blocked_net` ranges: an allowed_ips entry that merely TOUCHES one of these
 * is refused (proxy bypass via loopback, metadata via link-local, the unspecified address).
 */
const TOUCH_REFUSED: readonly NamedRange[] = named([
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['0.0.0.0/32', 'unspecified'],
  ['::1/128', 'loopback'],
  ['::/128', 'unspecified'],
  ['fe80::/10', 'link-local'],
  ['::ffff:127.0.0.0/104', 'loopback (v4-mapped)'],
  ['::ffff:169.254.0.0/112', 'link-local (v4-mapped)'],
  ['::ffff:0.0.0.0/128', 'unspecified (v4-mapped)'],
])

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

function inList(list: readonly NamedRange[], ip: IpAddress): NamedRange | undefined {
  // Family-exact here: v4-mapped and other embedded forms are judged through embeddedV4.
  return list.find(r => r.cidr.family === ip.family && cidrContains(r.cidr, ip))
}

function classifyV4(ip: IpAddress): AddressClass {
  const a = inList(ALWAYS_BLOCKED, ip)
  if (a) return { verdict: 'always', category: a.category }
  const p = inList(PRIVATE_RANGES, ip)
  if (p) return { verdict: 'private', category: p.category }
  return { verdict: 'public', category: 'public' }
}

const RANK: Record<AddressVerdict, number> = { public: 0, private: 1, always: 2 }

/** Classifies a resolved address; see AddressVerdict. */
export function classifyAddress(ip: IpAddress): AddressClass {
  if (ip.family === 4) return classifyV4(ip)
  const a = inList(ALWAYS_BLOCKED, ip)
  if (a) return { verdict: 'always', category: a.category }
  let worst: AddressClass | undefined
  for (const e of embeddedV4(ip)) {
    const c = classifyV4(e)
    if (!worst || RANK[c.verdict] > RANK[worst.verdict]) worst = { verdict: c.verdict, category: `${c.category} (embedded in ${ip.text})`, embedded: e }
  }
  if (worst && worst.verdict !== 'public') return worst
  const p = inList(PRIVATE_RANGES, ip)
  if (p) return { verdict: 'private', category: p.category }
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

function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false
  const p = Math.min(a.prefix, b.prefix)
  const x = maskBytes(a.bytes, p)
  const y = maskBytes(b.bytes, p)
  return x.every((v, i) => v === y[i])
}

/** `a` lies entirely inside `b`. */
export function cidrWithin(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.prefix >= b.prefix && overlaps(a, b)
}

/** A v4-mapped v6 CIDR (`::ffff:a.b.c.d/n`, n ≥ 96) as the v4 CIDR it denotes; others unchanged. */
function unmapped(c: Cidr): Cidr {
  if (c.family !== 6 || c.prefix < 96) return c
  const m = mappedV4({ family: 6, bytes: c.bytes, text: c.text })
  if (!m) return c
  return parseCidr(`${m.text}/${c.prefix - 96}`)!
}

/** The validation verdict on one allowed_ips entry. */
export type AllowedIpsVerdict =
  | { readonly ok: true; readonly cidr: Cidr; readonly warning?: string }
  | { readonly ok: false; readonly error: string }

/**
 * THE allowed_ips rule, applied by policy validation (src/policy/schema.ts) with the same list
 * the gateway enforces (ALWAYS_BLOCKED). One consistent rule:
 *  - refused: an entry that is not a CIDR/IP; an entry that touches loopback, link-local or the
 *    unspecified address (OpenShell's rule, e.g. 0.0.0.0/0); an entry lying entirely inside an
 *    always-blocked range (224.0.0.0/4, 240.0.0.0/4, 100.100.100.200/32 …) — it could never
 *    permit anything, so writing it is a mistake the user must hear about;
 *  - warned: an entry that merely contains an always-blocked range (100.64.0.0/10 contains the
 *    100.100.100.200 metadata address): the rest of it works, those addresses stay refused.
 */
export function checkAllowedIpsEntry(entry: string): AllowedIpsVerdict {
  const c = parseCidr(entry.trim())
  if (!c) return { ok: false, error: `invalid CIDR/IP in allowed_ips: ${entry}` }
  const u = unmapped(c)
  const touched = TOUCH_REFUSED.find(r => overlaps(r.cidr, c) || overlaps(r.cidr, u))
  if (touched) {
    return { ok: false, error: `allowed_ips entry ${entry} falls within always-blocked range (${touched.category} ${touched.cidr.text}); the gateway refuses these destinations regardless of policy` }
  }
  const inside = ALWAYS_BLOCKED.find(r => cidrWithin(u, r.cidr))
  if (inside) {
    return { ok: false, error: `allowed_ips entry ${entry} lies within always-blocked range (${inside.category} ${inside.cidr.text}); the gateway refuses these destinations regardless of policy, so remove it` }
  }
  const partial = ALWAYS_BLOCKED.filter(r => overlaps(r.cidr, u))
  if (partial.length > 0) {
    return { ok: true, cidr: c, warning: `allowed_ips entry ${entry} includes always-blocked ${partial.map(r => `${r.category} ${r.cidr.text}`).join(', ')}; the gateway still refuses those addresses` }
  }
  return { ok: true, cidr: c }
}
