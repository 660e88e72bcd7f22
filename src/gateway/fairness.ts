/**
 * Fairness between sandboxes (issue 9): one sandbox's flood must not delay another's requests.
 *
 * Every sandbox is served on the gateway's main event loop (its proxy costs a few hundred KB). A
 * sandbox that keeps requests queued behind its own admission (src/gateway/http/admission.ts)
 * while another sandbox is active is MOVED to a worker thread of its own, which lowers its own
 * priority (setpriority(2) applies to the calling thread on Linux; an unprivileged process can
 * only lower it): the kernel then gives the quiet sandbox's thread the CPU first, and the
 * flooding one whatever is left. It moves back (the worker ends) after it has been calm for a
 * while. Measured in bench/fairness.mjs; the figures are in docs/security.md.
 *
 * The move keeps the socket: the worker binds a temporary name next to the sandbox's socket and
 * renames it over the socket path (src/gateway/proxy.ts listen); the main loop's proxy for the
 * sandbox stops accepting and finishes what it has (`Connection: close`; tunnels run to the end).
 *
 * What crosses the thread boundary is data only: the worker builds its own Gateway from the data
 * dir (the same loaders; it is a "follower": it writes no policy-status marks and no policy audit
 * records, the main thread does), gets the held credential values and serialisable test hooks in
 * its workerData, and control requests as JSON lines. Its audit records are forwarded in batches
 * to the sandbox's one AuditLog on the main thread (ForwardedAudit): the files have one writer,
 * with the same aggregation and retention as ever; a record is stamped when the main thread
 * writes it (at most FORWARD_MS later than it happened).
 *
 * This module: the worker-side audit forwarder, the serialisable test hooks, and the main-side
 * handle of one worker (SandboxWorker). The policy of when to move is in src/gateway/server.ts.
 */
import { Worker } from 'node:worker_threads'
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AuditSink, ConfigEvent, HttpEvent, NetworkEvent } from './audit.js'
import { parseIp, parseCidr, cidrContains, type IpAddress } from './address.js'
import type { Resolver, ProxyLimits } from './proxy-options.js'
import type { AuditOptions } from './audit.js'

export interface FairnessOptions {
  /** Move a sandbox that exceeds its share to a low-priority worker thread. */
  workers: boolean
  /** The worker thread's nice value (default 19). */
  nice?: number
  /** How often the main thread checks the sandboxes' admission queues, ms (default 100). */
  checkMs?: number
  /** Consecutive checks with a queue while another sandbox is active before a move (default 3). */
  strikes?: number
  /** A moved sandbox with an empty queue for this long moves back, ms (default 5000). */
  calmMs?: number
  /** The worker's script (default: dist/bundle/sandbox-worker.js, else dist/gateway/sandbox-worker.js). */
  workerScript?: string
}

/** Test hooks as data (they must cross to a worker thread): a hosts map and permitted CIDRs. */
export interface SerialTestHooks {
  /** Name → addresses; any other name fails to resolve (ENOTFOUND). */
  hosts?: Record<string, string[]>
  /** Addresses in these CIDRs skip the SSRF rules (loopback test servers). */
  permitCidrs?: string[]
}

export function hostsResolver(hosts: Record<string, string[]>): Resolver {
  return async host => {
    const list = Object.hasOwn(hosts, host) ? hosts[host]! : undefined
    if (!list) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
    return list.map(a => parseIp(a)).filter((a): a is IpAddress => a !== undefined)
  }
}

export function cidrPermit(cidrs: string[]): (ip: IpAddress) => boolean {
  const parsed = cidrs.map(c => {
    const p = parseCidr(c)
    if (!p) throw new Error(`invalid CIDR ${JSON.stringify(c)} in the gateway's test hooks`)
    return p
  })
  return ip => parsed.some(c => cidrContains(c, ip))
}

/** What the main thread hands a worker (structured-cloned). */
export interface SandboxWorkerData {
  readonly kind: 'podshell-sandbox-worker'
  readonly dataDir: string
  readonly name: string
  readonly nice: number
  readonly tls: boolean
  readonly limits?: Partial<ProxyLimits>
  readonly audit?: Omit<AuditOptions, 'now'>
  readonly testHooks?: SerialTestHooks
  /** Held credential values (memory only, issue 12), as the main thread holds them. */
  readonly values: [string, { provider: string; variable: string; value: string }][]
}

export type AuditCall = ['network', NetworkEvent] | ['http', HttpEvent] | ['config', ConfigEvent]

/** Worker → main messages. */
export type FromWorker =
  | { type: 'ready' }
  | { type: 'failed'; error: string }
  | { type: 'audit'; calls: AuditCall[] }
  | { type: 'log'; line: string }
  | { type: 'stats'; connections: number; allowed: number; denied: number; queued: number; inFlight: number; policyVersion: number | null }
  | { type: 'reply'; id: number; reply: Record<string, unknown> }
  | { type: 'drained' }

/** Main → worker messages. */
export type ToWorker = { type: 'control'; id: number; line: string } | { type: 'drain' } | { type: 'stop' }

export const FORWARD_MS = 20
/** A worker that does not answer a control request in this time is ended (and its sandbox taken back). */
export const CONTROL_TIMEOUT_MS = 10_000
const FORWARD_MAX = 256

/** Worker side: an AuditSink that forwards every record to the main thread's AuditLog. */
export class ForwardedAudit implements AuditSink {
  private calls: AuditCall[] = []
  private timer: NodeJS.Timeout | undefined
  dropped = 0
  constructor(private readonly post: (m: FromWorker) => void) {}
  network(e: NetworkEvent): void {
    this.push(['network', e])
  }
  http(e: HttpEvent): void {
    this.push(['http', e])
  }
  config(e: ConfigEvent): void {
    this.push(['config', e])
  }
  private push(c: AuditCall): void {
    this.calls.push(c)
    if (this.calls.length >= FORWARD_MAX) this.flush()
    else this.timer ??= setTimeout(() => this.flush(), FORWARD_MS)
  }
  flush(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (!this.calls.length) return
    const calls = this.calls
    this.calls = []
    try {
      this.post({ type: 'audit', calls })
    } catch {
      // An event that cannot be cloned: counted, never thrown into the proxy.
      this.dropped += calls.length
    }
  }
  close(): void {
    this.flush()
  }
}

/** Main side: writes forwarded records to the sandbox's AuditLog. */
export function replayAudit(audit: AuditSink, calls: AuditCall[]): void {
  for (const c of calls) {
    if (c[0] === 'network') audit.network(c[1])
    else if (c[0] === 'http') audit.http(c[1])
    else if (c[0] === 'config') audit.config(c[1])
  }
}

/** The worker script: the bundled one in the gateway image, the compiled one in a checkout. */
export function defaultWorkerScript(): string {
  // Two levels below the package root (src/gateway, dist/gateway, dist/bundle).
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
  const bundled = join(root, 'dist', 'bundle', 'sandbox-worker.js')
  return existsSync(bundled) ? bundled : join(root, 'dist', 'gateway', 'sandbox-worker.js')
}

export interface WorkerStats {
  connections: number
  allowed: number
  denied: number
  queued: number
  inFlight: number
  policyVersion: number | null
}

/**
 * Main side: one worker thread serving one sandbox. `ready` settles once the worker listens on the
 * sandbox's socket (or failed); `exited` once the thread is gone.
 */
export class SandboxWorker {
  readonly name: string
  readonly threadId: number
  readonly ready: Promise<void>
  readonly exited: Promise<number>
  stats: WorkerStats = { connections: 0, allowed: 0, denied: 0, queued: 0, inFlight: 0, policyVersion: null }
  /** Last time the worker reported a queue (ms, performance.now()). */
  lastQueued = performance.now()
  /** Set when the main thread asked it to stop or drain (its exit is then not a crash). */
  retiring = false
  private readonly worker: Worker
  private nextId = 1
  private readonly replies = new Map<number, (r: Record<string, unknown>) => void>()
  private drainedCb: (() => void) | undefined

  constructor(
    script: string,
    data: SandboxWorkerData,
    hooks: { audit: (calls: AuditCall[]) => void; log: (line: string) => void },
  ) {
    this.name = data.name
    this.worker = new Worker(script, { workerData: data, resourceLimits: { maxOldGenerationSizeMb: 256 } })
    this.threadId = this.worker.threadId
    let ok: () => void
    let fail: (e: Error) => void
    this.ready = new Promise<void>((res, rej) => {
      ok = res
      fail = rej
    })
    // A worker that never reports is handled like one that failed.
    this.ready.catch(() => undefined)
    this.worker.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'ready':
          return ok()
        case 'failed':
          return fail(new Error(m.error))
        case 'audit':
          return hooks.audit(m.calls)
        case 'log':
          return hooks.log(m.line)
        case 'stats': {
          const { type: _t, ...s } = m
          void _t
          this.stats = s
          if (s.queued > 0) this.lastQueued = performance.now()
          return
        }
        case 'reply': {
          const cb = this.replies.get(m.id)
          this.replies.delete(m.id)
          return cb?.(m.reply)
        }
        case 'drained':
          return this.drainedCb?.()
      }
    })
    this.exited = new Promise<number>(res => {
      this.worker.once('exit', code => {
        fail(new Error(`worker exited (code ${code}) before it served`))
        for (const cb of this.replies.values()) cb({ ok: false, error: 'worker exited' })
        this.replies.clear()
        this.drainedCb?.()
        res(code)
      })
    })
    this.worker.on('error', (e: Error) => hooks.log(`worker for ${this.name} failed: ${e.message}`))
  }


  /**
   * Sends one control request (a JSON line, as on the control socket); resolves to the reply, or
   * to `{ ok: false, timedOut: true }` after `timeoutMs` (the caller ends a worker that hangs).
   */
  control(line: string, timeoutMs = CONTROL_TIMEOUT_MS): Promise<Record<string, unknown>> {
    const id = this.nextId++
    return new Promise(res => {
      const t = setTimeout(() => {
        this.replies.delete(id)
        res({ ok: false, timedOut: true, error: `no answer within ${timeoutMs} ms` })
      }, timeoutMs)
      t.unref()
      this.replies.set(id, r => {
        clearTimeout(t)
        res(r)
      })
      try {
        this.worker.postMessage({ type: 'control', id, line } satisfies ToWorker)
      } catch (e) {
        this.replies.delete(id)
        res({ ok: false, error: (e as Error).message })
      }
    })
  }

  /** Stops accepting; resolves when its connections have ended (the thread then exits). */
  drain(): Promise<void> {
    this.retiring = true
    const done = new Promise<void>(res => (this.drainedCb = res))
    this.post({ type: 'drain' })
    return done
  }

  /** Closes its proxy (every connection) and waits for the thread to exit (terminated after `graceMs`). */
  async stop(graceMs = 5000): Promise<void> {
    this.retiring = true
    this.post({ type: 'stop' })
    const t = setTimeout(() => void this.worker.terminate(), graceMs)
    await this.exited
    clearTimeout(t)
  }

  /** Ends the thread at once (tests: a crash). */
  terminate(): Promise<number> {
    return this.worker.terminate()
  }

  private post(m: ToWorker): void {
    try {
      this.worker.postMessage(m)
    } catch {
      // exited already
    }
  }
}
