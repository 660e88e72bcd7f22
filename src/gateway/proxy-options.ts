import type { HeldCredential } from './credential-substitution.js'
/** A sandbox proxy's options: the resolver, the limits (with their defaults) and what the gateway hands each SandboxProxy. */
import { lookup } from 'node:dns/promises'
import { parseIp, type IpAddress } from './address.js'
import type { PolicyEngine } from './policy-engine.js'
import type { AuditSink } from './audit.js'
import type { TlsInspection } from './tls-terminate.js'
import { MAX_INSPECTED_HEADER_BYTES } from '../rules/glob.js'
import type { Contention } from './http/admission.js'

/** Resolves a DNS name to all its addresses. */
export type Resolver = (host: string) => Promise<IpAddress[]>

/** The production resolver: getaddrinfo (the gateway container's /etc/hosts and resolv.conf), all families. */
export const systemResolver: Resolver = async host => {
  const res = await lookup(host, { all: true, verbatim: true })
  const out: IpAddress[] = []
  for (const r of res) {
    const ip = parseIp(r.address)
    if (ip) out.push(ip)
  }
  return out
}

export interface ProxyLimits {
  /** Concurrent client connections per sandbox (keep-alive HTTP + tunnels). */
  maxConnections: number
  /** Plain-HTTP and decrypted requests and upgrades of one sandbox served at once (decide, resolve, dial, forward). */
  maxInFlight: number
  /** Requests of one sandbox waiting for an in-flight slot; beyond that: 503, logged. */
  maxQueued: number
  /** maxInFlight while another sandbox is active (ProxyOptions.contention; src/gateway/http/admission.ts). */
  contendedInFlight: number
  /** Max bytes of a request target (URL); longer: 414, logged. */
  maxTargetBytes: number
  /** Max bytes of a CONNECT request head (OpenShell: 8 KiB). */
  maxConnectHeaderBytes: number
  /** Max bytes of a plain-HTTP request head (OpenShell's L7 parser: 16 KiB). */
  maxHttpHeaderBytes: number
  /** Time to receive a request head, ms. */
  headersTimeoutMs: number
  /** Time to establish the upstream TCP connection, per address, ms. */
  connectTimeoutMs: number
  /** DNS resolution deadline, ms. */
  resolveTimeoutMs: number
  /** Idle keep-alive between requests on a client connection, ms. */
  keepAliveTimeoutMs: number
  /** Idle time after which an upstream connection or tunnel is closed, ms (0 = never). */
  idleTimeoutMs: number
  /** Idle upstream connections kept per host for inspected TLS (0 = no pooling; bench/tls.mjs compares). */
  upstreamPoolPerHost: number
}

export const DEFAULT_LIMITS: ProxyLimits = {
  maxConnections: 1024,
  maxInFlight: 32,
  maxQueued: 512,
  contendedInFlight: 4,
  maxTargetBytes: 8 * 1024,
  maxConnectHeaderBytes: 8 * 1024,
  maxHttpHeaderBytes: MAX_INSPECTED_HEADER_BYTES,
  headersTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  resolveTimeoutMs: 10_000,
  keepAliveTimeoutMs: 30_000,
  idleTimeoutMs: 15 * 60_000,
  upstreamPoolPerHost: 16,
}

export interface ProxyOptions {
  sandbox: string
  /** The policy in force for NEW requests; read on every decision, so a reload applies at once. */
  engine: () => PolicyEngine
  /** Version of the policy in force, for the revocation reason in logs. */
  policyVersion: () => number | null
  audit: AuditSink
  resolve: Resolver
  /**
   * Test hook (in-process tests only; see Gateway's constructor): returns true to let an address
   * through that the SSRF rules would refuse (loopback test servers). Undefined in production.
   */
  permitAddress?: ((ip: IpAddress) => boolean) | undefined
  limits?: Partial<ProxyLimits>
  /** The gateway's shared record of active sandboxes (fair share of the event loop); none: no sharing. */
  contention?: Contention | undefined
  /** TLS inspection (src/gateway/tls-terminate.ts); without it, CONNECTs are only ever tunnelled. */
  tls?: TlsInspection | undefined
  /** The sandbox's placeholders and held values (issue 12); none when absent. */
  credentials?: (() => readonly HeldCredential[]) | undefined
}

