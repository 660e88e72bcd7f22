/**
 * Endpoint ambiguity: two endpoints of one policy document that can authorize the same request but
 * handle it differently (OpenShell refuses such documents). Used by the policy schema's document
 * checks (schema.ts).
 */
import { HostPattern } from '../rules/host-pattern.js'
import { endpointPorts, isL7, type AddIssue } from './checks.js'
import { formatKeyPath } from './limits.js'
import type { Endpoint } from './schema.js'

const normTls = (t: string | undefined) => (t === 'skip' ? 'skip' : 'auto')
const normEnforcement = (e: string | undefined) => (e === 'enforce' ? 'enforce' : 'audit')
const normIps = (ips: readonly string[] | undefined) => [...new Set((ips ?? []).map(s => s.trim().toLowerCase()))].sort().join(',')
const pathSpecificity = (p: string) => [...p].filter(c => c !== '*').length
const pathsCertainlyOverlap = (a: string, b: string) =>
  a === '' || b === '' || a === '**' || a === '/**' || b === '**' || b === '/**' || a === b
const contributesRequestMetadata = (e: Endpoint) =>
  isL7(e.protocol) || (e.allowed_ips?.length ?? 0) > 0 || e.tls !== undefined || e.credential_binding !== undefined

interface Ref {
  idx: number
  key: string
  i: number
  ep: Endpoint
  host: string
  literal: string | undefined
  pat: HostPattern | undefined
  path: string
}

/** Every endpoint of the document, in document order, under each port it names. */
function indexByPort(p: { network_policies?: Record<string, { endpoints?: Endpoint[] }> }): Map<number, Ref[]> {
  const byPort = new Map<number, Ref[]>()
  let idx = 0
  for (const [key, rule] of Object.entries(p.network_policies ?? {})) {
    ;(rule.endpoints ?? []).forEach((ep, i) => {
      const host = (ep.host ?? '').toLowerCase()
      const ref: Ref = { idx: idx++, key, i, ep, host, literal: /[*?[]/.test(host) ? undefined : host, pat: undefined, path: ep.path ?? '' }
      if (ref.literal === undefined) ref.pat = HostPattern.parse(host)
      for (const port of new Set(endpointPorts(ep).filter(x => x > 0))) {
        const list = byPort.get(port) ?? []
        list.push(ref)
        byPort.set(port, list)
      }
    })
  }
  return byPort
}

const connSig = (e: Endpoint) => `${e.protocol === 'tcp'}|${normTls(e.tls)}|${normIps(e.allowed_ips)}`
const proto = (e: Endpoint) => (e.protocol === 'tcp' ? '' : (e.protocol ?? ''))
const reqSig = (e: Endpoint) =>
  contributesRequestMetadata(e)
    ? JSON.stringify([
        proto(e),
        normEnforcement(e.enforcement),
        !!e.allow_encoded_slash,
        !!e.websocket_credential_rewrite,
        !!e.request_body_credential_rewrite,
        e.credential_signing ?? '',
        e.signing_service ?? '',
        e.signing_region ?? '',
        e.credential_binding?.provider ?? '',
      ])
    : '-'

/** The metadata two overlapping endpoints disagree on: connection metadata always, request metadata where the paths certainly overlap. */
function conflictsBetween(l: Ref, r: Ref): string[] {
  const conflicts: string[] = []
  const cmp = (field: string, u: unknown, v: unknown) => {
    if (u !== v) conflicts.push(`${field}=${JSON.stringify(u)} vs ${JSON.stringify(v)}`)
  }
  cmp('transparent_tcp', l.ep.protocol === 'tcp', r.ep.protocol === 'tcp')
  cmp('tls', normTls(l.ep.tls), normTls(r.ep.tls))
  cmp('allowed_ips', normIps(l.ep.allowed_ips), normIps(r.ep.allowed_ips))
  if (
    contributesRequestMetadata(l.ep) &&
    contributesRequestMetadata(r.ep) &&
    pathsCertainlyOverlap(l.path, r.path) &&
    pathSpecificity(l.path) === pathSpecificity(r.path)
  ) {
    cmp('protocol', proto(l.ep), proto(r.ep))
    cmp('enforcement', normEnforcement(l.ep.enforcement), normEnforcement(r.ep.enforcement))
    cmp('allow_encoded_slash', !!l.ep.allow_encoded_slash, !!r.ep.allow_encoded_slash)
    cmp('websocket_credential_rewrite', !!l.ep.websocket_credential_rewrite, !!r.ep.websocket_credential_rewrite)
    cmp('request_body_credential_rewrite', !!l.ep.request_body_credential_rewrite, !!r.ep.request_body_credential_rewrite)
    cmp('credential_signing', l.ep.credential_signing ?? '', r.ep.credential_signing ?? '')
    cmp('signing_service', l.ep.signing_service ?? '', r.ep.signing_service ?? '')
    cmp('signing_region', l.ep.signing_region ?? '', r.ep.signing_region ?? '')
    cmp('credential_binding.provider', l.ep.credential_binding?.provider ?? '', r.ep.credential_binding?.provider ?? '')
  }
  return conflicts
}

/**
 * OpenShell rejects two endpoints that can authorize the same request (overlapping host pattern
 * and port) yet disagree on how the connection is handled, because iteration order would decide.
 * Connection metadata (tcp, tls, allowed_ips) is checked fully; request metadata only where the
 * paths certainly overlap (OpenShell also compares partially overlapping path globs).
 *
 * The steps mirror OpenShell's pairwise comparison (index by port, pair, compare connection
 * metadata, then request metadata: conflictsBetween), which is how it is checked against
 * OpenShell's source.
 */
export function endpointAmbiguities(p: { network_policies?: Record<string, { endpoints?: Endpoint[] }> }, add: AddIssue) {
  const byPort = indexByPort(p)
  const hostsOverlap = (l: Ref, r: Ref): boolean => {
    if (l.host === '' || r.host === '') return true
    if (l.literal !== undefined && r.literal !== undefined) return l.literal === r.literal
    if (l.literal !== undefined && r.pat) return r.pat.matches(l.literal)
    if (r.literal !== undefined && l.pat) return l.pat.matches(r.literal)
    if (l.pat && r.pat) {
      wildcardChecks++
      return l.pat.overlaps(r.pat)
    }
    return l.host === r.host
  }
  // Only endpoints whose handling differs can conflict, so pairs are compared across classes of
  // identical handling. A 256 KiB document holds a few thousand endpoints at most; the budget
  // keeps a hostile one (thousands of wildcards with alternating settings) from taking seconds.
  let wildcardChecks = 0
  let pairs = 0
  const reported = new Map<string, { l: Ref; r: Ref; ports: number[]; conflicts: string[] }>()
  outer: for (const [port, refs] of byPort) {
    const classes = new Map<string, Ref[]>()
    for (const r of refs) {
      const sig = `${connSig(r.ep)}#${reqSig(r.ep)}`
      const c = classes.get(sig) ?? []
      c.push(r)
      classes.set(sig, c)
    }
    if (classes.size <= 1) continue
    const list = [...classes.values()]
    for (let a = 0; a < list.length; a++) {
      for (let b = a + 1; b < list.length; b++) {
        for (const x of list[a]!) {
          for (const y of list[b]!) {
            if (++pairs > 5_000_000 || wildcardChecks > 200_000) {
              add([], 'too many overlapping endpoints with differing settings to check for ambiguity; split the network policies')
              return
            }
            const [l, r] = x.idx < y.idx ? [x, y] : [y, x]
            const id = `${l.idx}:${r.idx}`
            const prev = reported.get(id)
            if (prev) {
              prev.ports.push(port)
              continue
            }
            if (!hostsOverlap(l, r)) continue
            const conflicts = conflictsBetween(l, r)
            if (conflicts.length > 0) {
              reported.set(id, { l, r, ports: [port], conflicts })
              if (reported.size >= 50) break outer
            }
          }
        }
      }
    }
  }
  for (const { l, r, ports, conflicts } of reported.values()) {
    const sel = (x: Ref) => `${x.ep.host || '<any-host>'}:${endpointPorts(x.ep).join(',')}${x.path}`
    add(
      ['network_policies', r.key, 'endpoints', r.i],
      `overlaps ${formatKeyPath(['network_policies', l.key, 'endpoints', l.i])} (${sel(l)} vs ${sel(r)}) on port(s) ${ports.sort((a, b) => a - b).join(',')} with conflicting metadata: ${conflicts.join('; ')}`,
    )
  }
}
