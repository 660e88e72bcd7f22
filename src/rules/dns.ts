/**
 * The gateway's name resolution, one resolver per sandbox.
 *
 * Why not `dns.lookup` (getaddrinfo): it runs on libuv's thread pool (4 threads shared by the whole
 * gateway process, and by fs work too). A sandbox that asks for slow names (an attacker's
 * authoritative server that never answers) holds those threads for the resolver timeout, and every
 * other sandbox's lookups — and file writes — queue behind them (the red team's lead in issue 9).
 *
 * What this does instead:
 *  - /etc/hosts first, read by this module (re-read when its mtime changes): the gateway
 *    container's hosts file is where podman (and the e2e tests) put fixed names, and getaddrinfo
 *    would have consulted it first too;
 *  - then c-ares (`dns.promises.Resolver`: A and AAAA queries on the event loop, no thread pool),
 *    1 s per try, 2 tries, and an overall deadline (5 s). Measured difference: where a DNS server
 *    is unreachable, glibc fails within milliseconds (its connected UDP socket gets the ICMP
 *    error) while c-ares waits for its timeouts — such a lookup fails at the deadline instead;
 *  - per sandbox, at most `maxInFlight` lookups at once and `maxQueued` waiting; past that a lookup
 *    fails at once ("too many concurrent DNS lookups"). One sandbox's flood therefore costs other
 *    sandboxes nothing: there is no shared pool left to exhaust.
 *
 * The policy decides BEFORE anything is resolved (Decision.resolve in policy-engine.ts): names
 * that no policy allows never reach this module.
 */
import { Resolver as CaresResolver } from 'node:dns/promises'
import { readFileSync, statSync } from 'node:fs'
import { parseIp, type IpAddress } from './ip.js'

/** Resolves a DNS name to all its addresses. */
export type NameResolver = (host: string) => Promise<IpAddress[]>

export interface SandboxResolverOptions {
  /** Concurrent lookups per sandbox (default 8). */
  readonly maxInFlight?: number
  /** Lookups waiting for a slot per sandbox (default 64); more fail at once. */
  readonly maxQueued?: number
  /** Overall deadline of one lookup, ms (default 5000). */
  readonly timeoutMs?: number
  /** The hosts file (default /etc/hosts). */
  readonly hostsFile?: string
  /** The DNS backend (default c-ares A + AAAA). Tests inject one. */
  readonly backend?: NameResolver
}

class ResolveError extends Error {
  constructor(message: string, readonly code: string) {
    super(message)
  }
}

// ---------------------------------------------------------------------------------------------
// /etc/hosts
// ---------------------------------------------------------------------------------------------

interface HostsCache {
  file: string
  mtimeMs: number
  map: Map<string, IpAddress[]>
}
const hostsCaches = new Map<string, HostsCache>()

/** Parses hosts-file text: `address name [aliases…]`, `#` comments. */
export function parseHostsFile(text: string): Map<string, IpAddress[]> {
  const map = new Map<string, IpAddress[]>()
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/#.*/, '').trim()
    if (!line) continue
    const [addr, ...names] = line.split(/\s+/)
    const ip = parseIp(addr!)
    if (!ip) continue
    for (const n of names) {
      const key = n.toLowerCase().replace(/\.$/, '')
      const list = map.get(key) ?? []
      if (!list.some(x => x.text === ip.text)) list.push(ip)
      map.set(key, list)
    }
  }
  return map
}

function hostsLookup(file: string, host: string): IpAddress[] | undefined {
  let st
  try {
    st = statSync(file)
  } catch {
    return undefined
  }
  let c = hostsCaches.get(file)
  if (!c || c.mtimeMs !== st.mtimeMs) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch {
      return undefined
    }
    c = { file, mtimeMs: st.mtimeMs, map: parseHostsFile(text) }
    hostsCaches.set(file, c)
  }
  return c.map.get(host.toLowerCase())
}

// ---------------------------------------------------------------------------------------------
// c-ares
// ---------------------------------------------------------------------------------------------

/** A and AAAA through c-ares; fails only when both fail (then with the A query's error code). */
export function caresBackend(timeoutMs = 1000, tries = 2): NameResolver {
  const r = new CaresResolver({ timeout: timeoutMs, tries })
  return async host => {
    const [a, aaaa] = await Promise.allSettled([r.resolve4(host), r.resolve6(host)])
    const out: IpAddress[] = []
    for (const res of [a, aaaa]) {
      if (res.status !== 'fulfilled') continue
      for (const s of res.value) {
        const ip = parseIp(s)
        if (ip) out.push(ip)
      }
    }
    if (out.length === 0) {
      const err = (a.status === 'rejected' ? a.reason : aaaa.status === 'rejected' ? aaaa.reason : undefined) as NodeJS.ErrnoException | undefined
      throw new ResolveError(`cannot resolve ${host}`, err?.code ?? 'ENODATA')
    }
    return out
  }
}

// ---------------------------------------------------------------------------------------------
// Per-sandbox bound
// ---------------------------------------------------------------------------------------------

/** Test/stats view of one sandbox resolver. */
export interface SandboxResolver extends NameResolver {
  readonly inFlight: () => number
  readonly queued: () => number
}

/** One resolver per sandbox: hosts file, then the backend, with this sandbox's own limits. */
export function createSandboxResolver(opts: SandboxResolverOptions = {}): SandboxResolver {
  const maxInFlight = opts.maxInFlight ?? 8
  const maxQueued = opts.maxQueued ?? 64
  const timeoutMs = opts.timeoutMs ?? 5000
  const hostsFile = opts.hostsFile ?? '/etc/hosts'
  const backend = opts.backend ?? caresBackend()
  let inFlight = 0
  const waiting: (() => void)[] = []

  // A finishing lookup hands its slot straight to the oldest waiter (no window for overshoot).
  const release = () => {
    const next = waiting.shift()
    if (next) next()
    else inFlight--
  }

  /** Runs a lookup in a slot the caller already holds. */
  const run = async (host: string): Promise<IpAddress[]> => {
    let timer: NodeJS.Timeout | undefined
    try {
      return await Promise.race([
        backend(host),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ResolveError(`DNS resolution of ${host} timed out`, 'ETIMEOUT')), timeoutMs)
          timer.unref()
        }),
      ])
    } finally {
      if (timer) clearTimeout(timer)
      release()
    }
  }

  const resolve = (async (host: string): Promise<IpAddress[]> => {
    const fixed = hostsLookup(hostsFile, host)
    if (fixed && fixed.length > 0) return [...fixed]
    if (inFlight < maxInFlight) {
      inFlight++
      return run(host)
    }
    if (waiting.length >= maxQueued) {
      throw new ResolveError(`too many concurrent DNS lookups from this sandbox (${maxInFlight} running, ${maxQueued} waiting)`, 'EBUSY')
    }
    await new Promise<void>(r => waiting.push(r))
    return run(host)
  }) as SandboxResolver
  Object.assign(resolve, { inFlight: () => inFlight, queued: () => waiting.length })
  return resolve
}
