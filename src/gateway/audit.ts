/**
 * The per-sandbox audit trail: `sandboxes/<name>/audit/ocsf.jsonl` (OCSF v1.8.0 JSON lines, one
 * event per line) and `sandboxes/<name>/audit/openshell.log` (OpenShell's one-line shorthand, e.g.
 * `2026-01-01T00:00:00.000Z OCSF NET:OPEN [INFO] ALLOWED -> api.github.com:443 [policy:github_api engine:podshell]`).
 *
 * Classes and fields as OpenShell's openshell-ocsf crate emits them: Network Activity 4001 for
 * CONNECT, HTTP Activity 4002 for plain-HTTP requests, Device Config State Change 5019 for policy
 * loads and failures, Application Lifecycle 6002 for sandbox lifecycle.
 *
 * What is never written: query strings, Authorization / Proxy-Authorization / Cookie values, header
 * values of any kind, request or response bodies. The proxy only hands paths (without query) and
 * policy reasons to this module, and every string is passed through `redact()` on the way in as a
 * second line of defence (a reason could quote a request target a client sent).
 *
 * Size is bounded: each file rotates at `maxBytes` (default 4 MiB) keeping `keep` (default 3)
 * rotated copies (`.1` newest … `.3` oldest). Writes are synchronous appends (O_APPEND, one write
 * per line), so the gateway and the CLI (lifecycle events) can append to the same files.
 *
 * An agent cannot flush the evidence (issue 9 finding 5: 1,500 denials in 2 s rotated the earlier
 * probe's lines away):
 *  - denials are AGGREGATED past a rate, as OpenShell's denial aggregator does (per destination
 *    host:port): per destination and second, the first `denialLinesPerDestination` denials are
 *    logged line by line, sandbox-wide at most `denialLinesPerSecond`; the rest are counted and
 *    written as ONE summary record per destination and second (`NET:AGGREGATE … DENIED xN`, OCSF
 *    `count`, `start_time`/`end_time`, up to 20 method/path samples);
 *  - security-relevant records are RETAINED: also appended to `retained.jsonl` / `retained.log`,
 *    which are never rotated while the sandbox exists — the first denial per destination, every
 *    policy load or failure, and whatever other modules report through `retain()` /
 *    `appendRetained()` (quarantines, credential mismatches). They are bounded
 *    (`retainedMaxBytes` each): once full, newer retained records are dropped (the OLDEST evidence
 *    is what an attacker wants gone, so it is what stays) and one "retained log full" record says so;
 *  - whatever is not written is counted and reported: an `AUDIT:DROPPED … N records dropped`
 *    record in the rotating log (destinations past `maxAggregationKeys` per second, retained
 *    records past the cap). Total size per sandbox ≤ 2 × (keep + 1) × maxBytes + 2 × retainedMaxBytes
 *    (34 MiB with the defaults).
 */
import { appendFileSync, statSync, renameSync, rmSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { sandboxAuditDir } from '../config/paths.js'
import {
  DEFAULT_DENIAL_LINES_PER_DESTINATION,
  DEFAULT_DENIAL_LINES_PER_SECOND,
  DEFAULT_KEEP,
  DEFAULT_MAX_AGGREGATION_KEYS,
  DEFAULT_MAX_BYTES,
  DEFAULT_RETAINED_MAX_BYTES,
  MAX_L7_SAMPLES,
  MAX_SEEN_DESTINATIONS,
  OCSF_FILE,
  RETAINED_OCSF_FILE,
  RETAINED_SHORTHAND_FILE,
  SHORTHAND_FILE,
  renderConfig,
  renderDenialSummary,
  renderDropped,
  renderHttp,
  renderLifecycle,
  renderNetwork,
  type ConfigEvent,
  type HttpEvent,
  type LifecycleEvent,
  type NetworkEvent,
  type Rendered,
} from './audit-events.js'

export * from './audit-events.js'
export * from './audit-read.js'

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

export interface AuditOptions {
  readonly maxBytes?: number
  readonly keep?: number
  readonly now?: () => number
  /** Cap of each retained file (never rotated). */
  readonly retainedMaxBytes?: number
  /** Denials per destination and second written line by line before aggregation. */
  readonly denialLinesPerDestination?: number
  /** Denial lines per second, all destinations together, before aggregation. */
  readonly denialLinesPerSecond?: number
  /** Destinations aggregated per second; denials to more are counted as dropped. */
  readonly maxAggregationKeys?: number
}

interface DenialWindow {
  host: string
  port: number
  count: number
  firstSeenMs: number
  lastSeenMs: number
  policy: string | null
  reason: string | undefined
  samples: { method: string; path: string; count: number }[]
}

/** Appends one line to `file`, rotating first when it would grow past maxBytes. */
function appendRotating(file: string, line: string, maxBytes: number, keep: number): void {
  let size: number
  try {
    size = statSync(file).size
  } catch {
    size = 0
  }
  if (size > 0 && size + Buffer.byteLength(line) > maxBytes) rotate(file, keep)
  appendFileSync(file, line, { mode: 0o600 })
}

function rotate(file: string, keep: number): void {
  try {
    rmSync(`${file}.${keep}`, { force: true })
    for (let i = keep - 1; i >= 1; i--) {
      try {
        renameSync(`${file}.${i}`, `${file}.${i + 1}`)
      } catch {
        // missing generation: nothing to shift
      }
    }
    if (keep >= 1) renameSync(file, `${file}.1`)
    else rmSync(file, { force: true })
  } catch {
    // Another writer rotated concurrently; appending to whatever is there now is fine.
  }
}

/**
 * What a sandbox's proxy writes its records to: the sandbox's AuditLog on the main thread, or, in
 * a worker thread that serves a sandbox moved off the main loop (src/gateway/fairness.ts), a
 * forwarder to that same AuditLog. One writer per sandbox's files, always.
 */
export interface AuditSink {
  network(e: NetworkEvent): void
  http(e: HttpEvent): void
  config(e: ConfigEvent): void
  close(): void
  readonly dropped: number
}

/**
 * Audit writer for one sandbox. A value: the gateway holds one per served sandbox. Failures to
 * write (disk full, the sandbox dir deleted under us) never throw into the proxy: the decision has
 * already been made and enforced; losing an audit line must not turn into an open or a crash.
 * The count of lost lines is kept for `stats`.
 */
export class AuditLog {
  readonly dir: string
  readonly sandbox: string
  private readonly maxBytes: number
  private readonly keep: number
  private readonly now: () => number
  private readonly retainedMaxBytes: number
  private readonly perDestination: number
  private readonly perSecond: number
  private readonly maxKeys: number
  /** Lines that could not be written (disk errors), plus records deliberately dropped. */
  dropped = 0
  /** Current second (floor(now / 1000)) and the denial lines written in it. */
  private second = -1
  private linesThisSecond = 0
  private readonly lineCounts = new Map<string, number>()
  private readonly windows = new Map<string, DenialWindow>()
  private readonly seen = new Set<string>()
  private droppedPending: { n: number; why: string }[] = []
  /** Retained files this writer found full (their "full" marker is written once). */
  private readonly fullFiles = new Set<string>()
  private timer: NodeJS.Timeout | undefined

  constructor(dir: string, sandbox: string, opts: AuditOptions = {}) {
    this.dir = dir
    this.sandbox = sandbox
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES
    this.keep = opts.keep ?? DEFAULT_KEEP
    this.now = opts.now ?? Date.now
    this.retainedMaxBytes = opts.retainedMaxBytes ?? DEFAULT_RETAINED_MAX_BYTES
    this.perDestination = opts.denialLinesPerDestination ?? DEFAULT_DENIAL_LINES_PER_DESTINATION
    this.perSecond = opts.denialLinesPerSecond ?? DEFAULT_DENIAL_LINES_PER_SECOND
    this.maxKeys = opts.maxAggregationKeys ?? DEFAULT_MAX_AGGREGATION_KEYS
  }

  static forSandbox(dataDir: string, sandbox: string, opts: AuditOptions = {}): AuditLog {
    return new AuditLog(sandboxAuditDir(dataDir, sandbox), sandbox, opts)
  }

  network(e: NetworkEvent): void {
    const r = renderNetwork(this.sandbox, e, this.now())
    if (e.action === 'denied') this.denial(e.host, e.port, e.policy, e.reason, undefined, r)
    else this.write(r)
  }

  http(e: HttpEvent): void {
    const r = renderHttp(this.sandbox, e, this.now())
    if (e.action === 'denied') this.denial(e.host, e.port, e.policy, e.reason, { method: e.method.toUpperCase(), path: e.path }, r)
    else this.write(r)
  }

  /** Policy loads and failures are security-relevant: always retained. */
  config(e: ConfigEvent): void {
    this.retain(renderConfig(this.sandbox, e, this.now()), 'policy change')
  }

  lifecycle(e: LifecycleEvent): void {
    this.write(renderLifecycle(this.sandbox, e, this.now()))
  }

  /**
   * Writes a security-relevant record to the rotating log AND the retained files (never rotated
   * while the sandbox exists). For other modules: quarantines, credential mismatches, … Use
   * `appendRetained` from another process.
   */
  retain(r: Rendered, why: string): void {
    this.write(r)
    this.retainOnly(r, why)
  }

  /** Appends to the retained files only (the rolling log gets a summary instead). */
  private retainOnly(r: Rendered, why: string): void {
    const json = { ...r.json, unmapped: { ...((r.json.unmapped as Record<string, unknown> | undefined) ?? {}), retained: why } }
    const ts = new Date(r.json.time as number).toISOString()
    const a = this.appendCapped(RETAINED_OCSF_FILE, JSON.stringify(json) + '\n')
    const b = this.appendCapped(RETAINED_SHORTHAND_FILE, `${ts} OCSF ${r.shorthand}\n`)
    if (!a || !b) this.noteDropped(1, 'retained audit log full (the oldest retained records are kept)')
  }

  /** A security-relevant lifecycle event (quarantine, credential mismatch …), retained. */
  retainedLifecycle(e: LifecycleEvent): void {
    this.retain(renderLifecycle(this.sandbox, e, this.now()), String(e.event))
  }

  /** Writes every pending aggregation and dropped-count record now (stop, tests). */
  flush(): void {
    this.rollSecond(Number.POSITIVE_INFINITY)
    this.flushDropped()
  }

  /** Flushes and stops the timer. */
  close(): void {
    this.flush()
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  // ---------------------------------------------------------------------------------------------

  private denial(host: string, port: number, policy: string | null, reason: string | undefined, sample: { method: string; path: string } | undefined, r: Rendered): void {
    const now = this.now()
    this.rollSecond(Math.floor(now / 1000))
    // The destination, as OpenShell's aggregator keys it. HTTP denials to one destination share a
    // key (their methods and paths go into the summary's samples); CONNECT/TLS refusals are keyed
    // by their reason too (first 48 characters: "TLS refused: SNI … is an IP literal" must not
    // vanish into a summary of other refusals). Refusals with no destination (malformed requests,
    // connection limits: host "-") are keyed by their reason alone. Every key count is bounded
    // (maxAggregationKeys per second, MAX_SEEN_DESTINATIONS in all).
    const stage = sample ? '' : (reason ?? '').slice(0, 48)
    const key = host === '-' ? `-:${(reason ?? '').slice(0, 64)}` : `${host}:${port}|${stage}`
    const budget = this.linesThisSecond < this.perSecond
    if (!this.seen.has(key) && this.seen.size < MAX_SEEN_DESTINATIONS) {
      // The first denial per destination is the probe an investigation needs: always retained
      // (the retained files are capped), and in the rolling log while the second's budget lasts —
      // so many NEW destinations cannot flood the rolling log either.
      this.seen.add(key)
      if (budget) {
        this.linesThisSecond++
        this.lineCounts.set(key, (this.lineCounts.get(key) ?? 0) + 1)
        this.retain(r, 'first denial for this destination')
        return
      }
      this.retainOnly(r, 'first denial for this destination')
    } else {
      const lines = this.lineCounts.get(key) ?? 0
      if (lines < this.perDestination && budget) {
        this.lineCounts.set(key, lines + 1)
        this.linesThisSecond++
        this.write(r)
        return
      }
    }
    let w = this.windows.get(key)
    if (!w) {
      if (this.windows.size >= this.maxKeys) {
        this.noteDropped(1, `denials to more than ${this.maxKeys} destinations in one second`)
        return
      }
      w = { host, port, count: 0, firstSeenMs: now, lastSeenMs: now, policy, reason, samples: [] }
      this.windows.set(key, w)
      this.arm()
    }
    w.count++
    w.lastSeenMs = now
    if (sample) {
      const hit = w.samples.find(x => x.method === sample.method && x.path === sample.path)
      if (hit) hit.count++
      else if (w.samples.length < MAX_L7_SAMPLES) w.samples.push({ ...sample, count: 1 })
    }
  }

  /** Moves to `second`: writes the previous second's summaries and resets the line budgets. */
  private rollSecond(second: number): void {
    if (second === this.second) return
    const t = this.now()
    for (const w of this.windows.values()) {
      this.write(renderDenialSummary(this.sandbox, { host: w.host, port: w.port, count: w.count, firstSeenMs: w.firstSeenMs, lastSeenMs: w.lastSeenMs, policy: w.policy, reason: w.reason, l7Samples: w.samples }, t))
    }
    this.windows.clear()
    this.lineCounts.clear()
    this.linesThisSecond = 0
    this.second = second
    this.flushDropped()
  }

  private noteDropped(n: number, why: string): void {
    const p = this.droppedPending.find(x => x.why === why)
    if (p) p.n += n
    else this.droppedPending.push({ n, why })
    this.dropped += n
    this.arm()
  }

  private flushDropped(): void {
    const pending = this.droppedPending
    this.droppedPending = []
    for (const p of pending) this.write(renderDropped(this.sandbox, p.n, p.why, this.now()))
  }

  /** A timer (unref'd) so a burst's summary is written even if no further denial arrives. */
  private arm(): void {
    if (this.timer) return
    this.timer = setInterval(() => {
      this.rollSecond(Math.floor(this.now() / 1000))
      if (this.windows.size === 0 && this.droppedPending.length === 0 && this.timer) {
        clearInterval(this.timer)
        this.timer = undefined
      }
    }, 1000)
    this.timer.unref()
  }

  /** Appends to a retained file unless that would pass the cap; the first refusal writes a marker. */
  private appendCapped(file: string, line: string): boolean {
    const path = join(this.dir, file)
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 })
      let size: number
      try {
        size = statSync(path).size
      } catch {
        size = 0
      }
      const marker = 1024 // room kept for the "full" marker
      if (size + Buffer.byteLength(line) > this.retainedMaxBytes - marker) {
        if (!this.fullFiles.has(file) && size + marker <= this.retainedMaxBytes) {
          const r = renderDropped(this.sandbox, 0, `retained audit log full at ${this.retainedMaxBytes} bytes; newer retained records are dropped and counted in ${SHORTHAND_FILE}`, this.now())
          appendFileSync(path, file === RETAINED_OCSF_FILE ? JSON.stringify(r.json) + '\n' : `${new Date(r.json.time as number).toISOString()} OCSF ${r.shorthand}\n`, { mode: 0o600 })
        }
        this.fullFiles.add(file)
        return false
      }
      appendFileSync(path, line, { mode: 0o600 })
      return true
    } catch {
      this.dropped++
      return false
    }
  }

  write(r: Rendered): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 })
      const ts = new Date(r.json.time as number).toISOString()
      appendRotating(join(this.dir, OCSF_FILE), JSON.stringify(r.json) + '\n', this.maxBytes, this.keep)
      appendRotating(join(this.dir, SHORTHAND_FILE), `${ts} OCSF ${r.shorthand}\n`, this.maxBytes, this.keep)
    } catch {
      this.dropped++
    }
  }
}

/**
 * Appends a lifecycle event (create/start/stop/delete/…) to a sandbox's audit log. Called by the CLI
 * on the host; the gateway writes to the same files. Never throws.
 */
export function appendLifecycle(dataDir: string, name: string, event: LifecycleEvent, opts: AuditOptions = {}): void {
  AuditLog.forSandbox(dataDir, name, opts).lifecycle(event)
}

/**
 * Appends a SECURITY-RELEVANT event (a quarantine, a credential mismatch, …) to a sandbox's audit
 * log and to its retained files, which no flood of later records can rotate away. For modules
 * outside the gateway (the CLI, the watcher). Never throws.
 */
export function appendRetained(dataDir: string, name: string, event: LifecycleEvent, opts: AuditOptions = {}): void {
  AuditLog.forSandbox(dataDir, name, opts).retainedLifecycle(event)
}

