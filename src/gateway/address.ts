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

import { parseIPv4, parseIPv6, endsInNumber, type IpAddress } from '../rules/ip.js'

// The IP/CIDR rules live in src/rules/ip.ts (one module, one always-blocked list); re-exported
// here for the gateway's existing importers.
export {
  parseIPv4, parseIPv6, parseIp, formatIPv6, parseCidr, cidrContains, cidrWithin, classifyAddress, checkAddress, embeddedV4,
  checkAllowedIpsEntry, ALWAYS_BLOCKED, PRIVATE_RANGES,
} from '../rules/ip.js'
export type { IpFamily, IpAddress, Cidr, AddressVerdict, AddressClass, AddressCheck, NamedRange } from '../rules/ip.js'

export class HostError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'HostError'
  }
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

