/**
 * Identity checks of an inspected connection (issue 11): the SNI of its ClientHello and the Host of
 * every decrypted request must name the CONNECT target (case-insensitive, no trailing-dot games);
 * anything else is domain fronting and refused with a detail saying which name differed.
 */
import type { IncomingMessage } from 'node:http'
import { canonicalizeHost, parseAuthority, type CanonicalHost } from './address.js'

/** Why an SNI is refused, or undefined when it names the CONNECT host. */
export function sniMismatch(sni: string | false | undefined | null, connectHost: CanonicalHost): string | undefined {
  if (!sni) return 'ClientHello without SNI (server name); the gateway needs it to check the name against the CONNECT target'
  if (sni.length > 253) return `SNI of ${sni.length} bytes is not a host name`
  if (/[\0-\x20\x7f-\uffff]/.test(sni)) return 'SNI contains control, space or non-ASCII characters'
  let h: CanonicalHost
  try {
    h = canonicalizeHost(sni)
  } catch (e) {
    return `SNI ${JSON.stringify(sni)} is not a host name (${(e as Error).message})`
  }
  if (h.kind === 'ip') return `SNI ${JSON.stringify(sni)} is an IP literal (RFC 6066 forbids it; a name is needed to check the target)`
  if (h.host !== connectHost.host) return `SNI ${h.host} does not match the CONNECT target ${connectHost.host} (domain fronting)`
  return undefined
}

/** Why a decrypted request's Host is refused, or undefined when it names the CONNECT host and port. */
export function hostMismatch(req: IncomingMessage, meta: { host: CanonicalHost; port: number; tls: boolean }): string | undefined {
  let n = 0
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === 'host') n++
  if (n === 0) return 'request without Host header'
  if (n > 1) return 'more than one Host header'
  const raw = req.headers.host!
  try {
    const h = parseAuthority(raw, meta.tls ? 443 : 80)
    if (h.host.host === meta.host.host && h.port === meta.port) return undefined
    return `Host ${h.host.host}:${h.port} does not match the CONNECT target ${meta.host.host}:${meta.port} (domain fronting)`
  } catch {
    return `Host header ${JSON.stringify(raw.slice(0, 100))} is not a valid authority`
  }
}
