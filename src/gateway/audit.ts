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
import { appendFileSync, statSync, renameSync, rmSync, readFileSync, mkdirSync, openSync, readSync, closeSync, fstatSync } from 'node:fs'
import { join } from 'node:path'
import { sandboxAuditDir } from '../config/paths.js'

export const OCSF_FILE = 'ocsf.jsonl'
export const SHORTHAND_FILE = 'openshell.log'
export const ENGINE = 'podshell'
export const OCSF_VERSION = '1.8.0'
export const RETAINED_OCSF_FILE = 'retained.jsonl'
export const RETAINED_SHORTHAND_FILE = 'retained.log'
export const DEFAULT_MAX_BYTES = 4 * 1024 * 1024
export const DEFAULT_KEEP = 3
export const DEFAULT_RETAINED_MAX_BYTES = 1024 * 1024
export const DEFAULT_DENIAL_LINES_PER_DESTINATION = 5
export const DEFAULT_DENIAL_LINES_PER_SECOND = 50
export const DEFAULT_MAX_AGGREGATION_KEYS = 256
/** L7 samples kept per aggregated destination (OpenShell keeps 20). */
const MAX_L7_SAMPLES = 20
/** Destinations remembered for "first denial" (beyond it, first denials are no longer retained). */
const MAX_SEEN_DESTINATIONS = 20_000

let productVersion: string | undefined
function version(): string {
  if (productVersion === undefined) {
    try {
      productVersion = String((JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0')
    } catch {
      productVersion = '0.0.0'
    }
  }
  return productVersion
}

// ---------------------------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------------------------

const SECRET_KEYS = /^(authorization|proxy-authorization|cookie|set-cookie|password|passwd|secret|token|api[_-]?key|value|credential)$/i

/**
 * Removes what must never reach a log from free text: query strings and fragments of anything
 * URL-like, `Authorization:`-style header lines, bearer/basic tokens, and cookie pairs.
 */
export function redact(s: string): string {
  const t = s
    .replace(/[\r\n]+/g, ' ')
    .replace(/\b(proxy-authorization|authorization|cookie|set-cookie)\s*[:=]\s*[^,;\]]*/gi, '$1: [REDACTED]')
    .replace(/\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}/gi, '$1 [REDACTED]')
  return stripUrlQueries(t)
}

const isSpace = (c: string): boolean => c === '"' || /\s/.test(c)

/**
 * Drops the query/fragment of every URL-like part: from a `?`/`#` that follows a `/` in the same
 * run of characters (no whitespace or `"` between: `/path?q`, `http://h/p#f`) up to whitespace,
 * `"` or `]`. One pass: linear in the length. (The regex this replaces, `(\/[^\s?#"]*|…)[?#]…`,
 * retried every `/` of a long path to its end: quadratic, 80% of the gateway's CPU under a flood
 * of 8 KiB targets, bench/fairness.mjs.)
 */
function stripUrlQueries(s: string): string {
  if (!s.includes('?') && !s.includes('#')) return s
  let out = ''
  let slash = false
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!
    if ((c === '?' || c === '#') && slash) {
      while (i + 1 < s.length && s[i + 1] !== ']' && !isSpace(s[i + 1]!)) i++
      slash = false
      continue
    }
    out += c
    if (c === '/') slash = true
    else if (c === '?' || c === '#' || isSpace(c)) slash = false
  }
  return out
}

/** A path as logged: no query, no fragment, redacted. */
export function logPath(path: string): string {
  const cut = path.search(/[?#]/)
  return redact(cut === -1 ? path : path.slice(0, cut))
}

function redactDetail(detail: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(detail)) {
    if (SECRET_KEYS.test(k)) out[k] = '[REDACTED]'
    else if (typeof v === 'string') out[k] = redact(v)
    else if (Array.isArray(v)) out[k] = (v as unknown[]).map(x => (typeof x === 'string' ? redact(x) : x))
    else if (v === null || typeof v === 'number' || typeof v === 'boolean') out[k] = v
    else if (typeof v === 'object') out[k] = redactDetail(v as Record<string, unknown>)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

export type AuditAction = 'allowed' | 'denied'

export interface NetworkEvent {
  /** open = a CONNECT decision; close = a tunnel closed by the gateway (e.g. policy revoked it); fail = upstream unreachable. */
  readonly activity: 'open' | 'close' | 'fail'
  readonly action: AuditAction
  /** audit = allowed only because enforcement is audit. */
  readonly mode?: 'allow' | 'audit' | 'deny'
  readonly host: string
  readonly port: number
  /** The address the gateway connected to (never a second lookup). */
  readonly ip?: string
  readonly policy: string | null
  readonly rule?: string
  readonly reason?: string
  readonly providers?: readonly string[]
  readonly bytesIn?: number
  readonly bytesOut?: number
}

export interface HttpEvent {
  readonly method: string
  readonly host: string
  readonly port: number
  /** Request path; anything after "?" or "#" is cut before writing. */
  readonly path: string
  readonly action: AuditAction
  readonly mode?: 'allow' | 'audit' | 'deny'
  readonly ip?: string
  readonly policy: string | null
  readonly rule?: string
  readonly reason?: string
  readonly providers?: readonly string[]
  /** Response status the client got (403 for denials, the upstream's otherwise). */
  readonly status?: number
  /** `https` for requests decrypted by TLS inspection (src/gateway/tls-terminate.ts); default http. */
  readonly scheme?: 'http' | 'https'
}

export interface ConfigEvent {
  readonly state: 'loaded' | 'failed'
  readonly version: number
  readonly hash?: string
  readonly error?: string
  readonly message?: string
}

export interface LifecycleEvent {
  /** created, started, stopping, stopped, deleting, credential_injected, … */
  readonly event: string
  readonly [detail: string]: unknown
}

const SEVERITY = { 1: 'Informational', 2: 'Low', 3: 'Medium', 4: 'High' } as const
type Sev = keyof typeof SEVERITY
const SEV_TAG: Record<Sev, string> = { 1: '[INFO]', 2: '[LOW]', 3: '[MED]', 4: '[HIGH]' }

const HTTP_ACTIVITY: Record<string, [number, string]> = {
  CONNECT: [1, 'Connect'], DELETE: [2, 'Delete'], GET: [3, 'Get'], HEAD: [4, 'Head'], OPTIONS: [5, 'Options'],
  POST: [6, 'Post'], PUT: [7, 'Put'], TRACE: [8, 'Trace'], PATCH: [9, 'Patch'],
}
const NET_ACTIVITY = { open: [1, 'Open'], close: [2, 'Close'], fail: [4, 'Fail'] } as const
const LIFECYCLE_ACTIVITY: Record<string, [number, string]> = {
  created: [1, 'Install'], create: [1, 'Install'],
  deleting: [2, 'Remove'], deleted: [2, 'Remove'], delete: [2, 'Remove'],
  starting: [3, 'Start'], started: [3, 'Start'], start: [3, 'Start'],
  stopping: [4, 'Stop'], stopped: [4, 'Stop'], stop: [4, 'Stop'],
  restarted: [5, 'Restart'],
}

function base(classUid: number, className: string, categoryUid: number, categoryName: string, activityId: number, activityName: string, sev: Sev, time: number): Record<string, unknown> {
  return {
    class_uid: classUid,
    class_name: className,
    category_uid: categoryUid,
    category_name: categoryName,
    activity_id: activityId,
    activity_name: activityName,
    type_uid: classUid * 100 + activityId,
    type_name: `${className}: ${activityName}`,
    time,
    severity_id: sev,
    severity: SEVERITY[sev],
  }
}

function metadata(sandbox: string, profiles: string[]) {
  return {
    version: OCSF_VERSION,
    product: { name: 'podshell gateway', vendor_name: 'podshell', version: version() },
    profiles,
    uid: sandbox,
  }
}

function clip(s: string, max = 256): string {
  return s.length <= max ? s : `${s.slice(0, max)}...`
}

function ctxEscape(s: string): string {
  return s.replace(/[\\[\]]/g, m => `\\${m}`).replace(/\s/g, '_')
}

function actionFields(action: AuditAction) {
  return action === 'allowed'
    ? { action_id: 1, action: 'Allowed', disposition_id: 1, disposition: 'Allowed' }
    : { action_id: 2, action: 'Denied', disposition_id: 2, disposition: 'Blocked' }
}

function statusFields(ok: boolean) {
  return ok ? { status_id: 1, status: 'Success' } : { status_id: 2, status: 'Failure' }
}

export interface Rendered {
  readonly json: Record<string, unknown>
  readonly shorthand: string
}

export function renderNetwork(sandbox: string, e: NetworkEvent, time: number): Rendered {
  const [aid, aname] = NET_ACTIVITY[e.activity]
  const sev: Sev = e.action === 'denied' ? 3 : e.mode === 'audit' || e.activity === 'fail' ? 2 : 1
  const reason = e.reason ? clip(redact(e.reason)) : undefined
  const policy = e.policy ?? '-'
  const json: Record<string, unknown> = {
    ...base(4001, 'Network Activity', 4, 'Network Activity', aid, aname, sev, time),
    ...statusFields(e.action === 'allowed' && e.activity !== 'fail'),
    message: `CONNECT ${e.action === 'allowed' ? 'allowed' : 'denied'} ${e.host}:${e.port}`,
    ...(reason ? { status_detail: reason } : {}),
    metadata: metadata(sandbox, ['security_control', 'network_proxy']),
    dst_endpoint: { domain: e.host, ...(e.ip ? { ip: e.ip } : {}), port: e.port },
    firewall_rule: { name: policy, type: ENGINE },
    ...actionFields(e.action),
    unmapped: stripUndef({
      sandbox,
      mode: e.mode,
      rule: e.rule ? redact(e.rule) : undefined,
      providers: e.providers && e.providers.length ? [...e.providers] : undefined,
      bytes_in: e.bytesIn,
      bytes_out: e.bytesOut,
    }),
  }
  const act = e.activity === 'fail' ? 'FAILED' : e.action === 'allowed' ? 'ALLOWED' : 'DENIED'
  let line = `NET:${aname.toUpperCase()} ${SEV_TAG[sev]} ${act} -> ${e.host}:${e.port} [policy:${ctxEscape(policy)} engine:${ENGINE}]`
  if (reason && (e.action === 'denied' || e.mode === 'audit' || e.activity !== 'open')) line += ` [reason:${reason}]`
  return { json, shorthand: line }
}

export function renderHttp(sandbox: string, e: HttpEvent, time: number): Rendered {
  const method = e.method.toUpperCase()
  const [aid, aname] = HTTP_ACTIVITY[method] ?? [99, 'Other']
  const sev: Sev = e.action === 'denied' ? 3 : e.mode === 'audit' ? 2 : 1
  const path = logPath(e.path)
  const reason = e.reason ? clip(redact(e.reason)) : undefined
  const policy = e.policy ?? '-'
  const scheme = e.scheme ?? 'http'
  const json: Record<string, unknown> = {
    ...base(4002, 'HTTP Activity', 4, 'Network Activity', aid, aname, sev, time),
    ...statusFields(e.action === 'allowed'),
    message: `${method} ${scheme}://${e.host}:${e.port}${path} ${e.action}`,
    ...(reason ? { status_detail: reason } : {}),
    metadata: metadata(sandbox, ['security_control', 'network_proxy']),
    http_request: { http_method: method, url: { scheme, hostname: e.host, path, port: e.port } },
    ...(e.status !== undefined ? { http_response: { code: e.status } } : {}),
    dst_endpoint: { domain: e.host, ...(e.ip ? { ip: e.ip } : {}), port: e.port },
    firewall_rule: { name: policy, type: ENGINE },
    ...actionFields(e.action),
    unmapped: stripUndef({
      sandbox,
      mode: e.mode,
      rule: e.rule ? logPath(e.rule) : undefined,
      providers: e.providers && e.providers.length ? [...e.providers] : undefined,
    }),
  }
  const url = `${scheme}://${e.host}${e.port === (scheme === 'https' ? 443 : 80) ? '' : `:${e.port}`}${path}`
  let line = `HTTP:${method} ${SEV_TAG[sev]} ${e.action === 'allowed' ? 'ALLOWED' : 'DENIED'} ${method} ${url} [policy:${ctxEscape(policy)} engine:${ENGINE}]`
  if (reason && (e.action === 'denied' || e.mode === 'audit')) line += ` [reason:${reason}]`
  return { json, shorthand: line }
}

export function renderConfig(sandbox: string, e: ConfigEvent, time: number): Rendered {
  const ok = e.state === 'loaded'
  const sev: Sev = ok ? 1 : 3
  const msg = e.message ?? (ok ? `policy revision ${e.version} loaded` : `policy revision ${e.version} failed to load`)
  const err = e.error ? clip(redact(e.error), 512) : undefined
  const json: Record<string, unknown> = {
    ...base(5019, 'Device Config State Change', 5, 'Discovery', 1, 'Log', sev, time),
    ...statusFields(ok),
    message: msg,
    ...(err ? { status_detail: err } : {}),
    metadata: metadata(sandbox, ['security_control']),
    state_id: 99,
    state: ok ? 'Loaded' : 'Failed',
    unmapped: stripUndef({ sandbox, policy_version: String(e.version), policy_hash: e.hash }),
  }
  let line = `CONFIG:${ok ? 'LOADED' : 'FAILED'} ${SEV_TAG[sev]} ${msg} [version:${e.version}${e.hash ? ` hash:${e.hash}` : ''}]`
  if (err) line += ` [reason:${err}]`
  return { json, shorthand: line }
}

export function renderLifecycle(sandbox: string, e: LifecycleEvent, time: number): Rendered {
  const { event, ...rest } = e
  const ev = String(event)
  const [aid, aname] = LIFECYCLE_ACTIVITY[ev] ?? [99, 'Other']
  const detail = redactDetail(rest)
  const failed = /fail|error/i.test(ev)
  const sev: Sev = failed ? 3 : 1
  const json: Record<string, unknown> = {
    ...base(6002, 'Application Lifecycle', 6, 'Application Activity', aid, aname, sev, time),
    ...statusFields(!failed),
    message: `sandbox ${sandbox} ${ev}`,
    metadata: metadata(sandbox, ['container']),
    app: { name: `podshell sandbox ${sandbox}`, vendor_name: 'podshell', version: version() },
    unmapped: { sandbox, event: ev, ...detail },
  }
  const fields = Object.entries(detail)
    .filter(([, v]) => v !== undefined && v !== '' && (typeof v !== 'object' || (Array.isArray(v) && v.length > 0)))
    .map(([k, v]) => `${ctxEscape(k)}:${ctxEscape(clip(Array.isArray(v) ? v.join(',') : String(v), 120))}`)
  const line = `LIFECYCLE:${aname.toUpperCase()} ${SEV_TAG[sev]} sandbox ${sandbox} ${failed ? 'failure' : 'success'} [event:${ctxEscape(ev)}${fields.length ? ' ' + fields.join(' ') : ''}]`
  return { json, shorthand: line }
}

/** One destination's denials in one window, summarised (OpenShell's FlushableDenialSummary shape). */
export interface DenialSummary {
  readonly host: string
  readonly port: number
  /** Denials in the window that were NOT written line by line. */
  readonly count: number
  readonly firstSeenMs: number
  readonly lastSeenMs: number
  readonly policy: string | null
  readonly reason?: string
  readonly l7Samples: readonly { readonly method: string; readonly path: string; readonly count: number }[]
}

export function renderDenialSummary(sandbox: string, e: DenialSummary, time: number): Rendered {
  const reason = e.reason ? clip(redact(e.reason)) : undefined
  const policy = e.policy ?? '-'
  const json: Record<string, unknown> = {
    ...base(4001, 'Network Activity', 4, 'Network Activity', 99, 'Other', 3, time),
    ...statusFields(false),
    message: `${e.count} more denials to ${e.host}:${e.port} aggregated`,
    ...(reason ? { status_detail: reason } : {}),
    metadata: metadata(sandbox, ['security_control', 'network_proxy']),
    count: e.count,
    start_time: e.firstSeenMs,
    end_time: e.lastSeenMs,
    dst_endpoint: { domain: e.host, port: e.port },
    firewall_rule: { name: policy, type: ENGINE },
    ...actionFields('denied'),
    unmapped: stripUndef({
      sandbox,
      aggregated: true,
      first_seen_ms: e.firstSeenMs,
      last_seen_ms: e.lastSeenMs,
      l7_samples: e.l7Samples.length ? e.l7Samples.map(x => ({ method: x.method, path: logPath(x.path), count: x.count })) : undefined,
    }),
  }
  let line = `NET:AGGREGATE ${SEV_TAG[3]} DENIED x${e.count} -> ${e.host}:${e.port} [policy:${ctxEscape(policy)} engine:${ENGINE}] [window:${new Date(e.firstSeenMs).toISOString()}..${new Date(e.lastSeenMs).toISOString()}]`
  if (reason) line += ` [reason:${reason}]`
  return { json, shorthand: line }
}

/** "N records dropped": what the audit could not keep, said once per flush. */
export function renderDropped(sandbox: string, n: number, why: string, time: number): Rendered {
  const json: Record<string, unknown> = {
    ...base(6002, 'Application Lifecycle', 6, 'Application Activity', 99, 'Other', 4, time),
    ...statusFields(false),
    message: `${n} audit records dropped: ${why}`,
    metadata: metadata(sandbox, ['security_control']),
    count: n,
    app: { name: `podshell sandbox ${sandbox}`, vendor_name: 'podshell', version: version() },
    unmapped: { sandbox, event: 'audit_records_dropped', dropped: n, reason: why },
  }
  return { json, shorthand: `AUDIT:DROPPED ${SEV_TAG[4]} ${n} records dropped [reason:${ctxEscape(why)}]` }
}

function stripUndef(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v
  return out
}

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

// ---------------------------------------------------------------------------------------------
// Reading (the CLI's `logs`)
// ---------------------------------------------------------------------------------------------

export type LogSource = 'gateway' | 'sandbox'
export type LogLevel = 'ERROR' | 'WARN' | 'INFO' | 'DEBUG' | 'TRACE'

export interface LogEntry {
  /** ms since epoch */
  readonly time: number
  readonly source: LogSource
  readonly level: LogLevel
  readonly target: string
  readonly message: string
}

export interface ReadLogsOptions {
  /** Last N entries (default 200). */
  readonly lines?: number
  /** Only entries at or after this time (ms since epoch). */
  readonly since?: number
  /** Sources to include; empty/undefined = all. */
  readonly source?: readonly (LogSource | 'all')[] | LogSource | 'all'
  /** Minimum level (default everything). */
  readonly level?: LogLevel
}

const LEVEL_RANK: Record<LogLevel, number> = { ERROR: 0, WARN: 1, INFO: 2, DEBUG: 3, TRACE: 4 }

const SEV_LEVEL: Record<string, LogLevel> = { INFO: 'INFO', LOW: 'INFO', MED: 'WARN', HIGH: 'ERROR', CRIT: 'ERROR', FATAL: 'ERROR' }

/** Parses one line of openshell.log; undefined for lines that are not podshell/OpenShell shorthand. */
export function parseShorthandLine(line: string): LogEntry | undefined {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z) OCSF (([A-Z]+):\S* \[([A-Z]+)\].*)$/.exec(line)
  if (!m) return undefined
  const time = Date.parse(m[1]!)
  if (Number.isNaN(time)) return undefined
  return {
    time,
    source: m[3] === 'LIFECYCLE' ? 'sandbox' : 'gateway',
    level: SEV_LEVEL[m[4]!] ?? 'INFO',
    target: 'ocsf',
    message: m[2]!,
  }
}

function normSources(s: ReadLogsOptions['source']): Set<LogSource> | undefined {
  const list = s === undefined ? [] : Array.isArray(s) ? s : [s]
  if (list.length === 0 || list.includes('all')) return undefined
  return new Set(list as LogSource[])
}

function matches(e: LogEntry, o: ReadLogsOptions, sources: Set<LogSource> | undefined): boolean {
  if (o.since !== undefined && e.time < o.since) return false
  if (sources && !sources.has(e.source)) return false
  if (o.level && LEVEL_RANK[e.level] > LEVEL_RANK[o.level]) return false
  return true
}

/** The last `lines` entries of a sandbox's shorthand log (rotated files included), oldest first. */
export function readLogs(dataDir: string, name: string, o: ReadLogsOptions = {}): LogEntry[] {
  const dir = sandboxAuditDir(dataDir, name)
  const want = o.lines ?? 200
  const sources = normSources(o.source)
  const out: LogEntry[] = []
  // Newest file first, so we can stop once we have enough.
  const files = [join(dir, SHORTHAND_FILE), ...Array.from({ length: DEFAULT_KEEP + 2 }, (_, i) => join(dir, `${SHORTHAND_FILE}.${i + 1}`))]
  for (const f of files) {
    let text: string
    try {
      text = readFileSync(f, 'utf8')
    } catch {
      continue
    }
    const batch: LogEntry[] = []
    for (const line of text.split('\n')) {
      const e = parseShorthandLine(line)
      if (e && matches(e, o, sources)) batch.push(e)
    }
    out.unshift(...batch)
    if (out.length >= want) break
  }
  return want > 0 ? out.slice(-want) : []
}

/** OpenShell's `logs` line: `[secs.mmm] [source ] [LEVEL] [target] message`. */
export function formatLogEntry(e: LogEntry): string {
  const secs = Math.floor(e.time / 1000)
  const ms = String(e.time % 1000).padStart(3, '0')
  return `[${secs}.${ms}] [${e.source.padEnd(7)}] [${e.level.padEnd(5)}] [${e.target}] ${e.message}`
}

/**
 * Follows a sandbox's shorthand log: calls `onEntry` for every new matching line until `signal`
 * aborts. Polls (bind-mounted dirs and rotation make inotify unreliable); survives rotation and the
 * file not existing yet.
 */
export async function followLogs(
  dataDir: string,
  name: string,
  o: ReadLogsOptions,
  onEntry: (e: LogEntry) => void,
  signal: AbortSignal,
  intervalMs = 250,
): Promise<void> {
  const file = join(sandboxAuditDir(dataDir, name), SHORTHAND_FILE)
  const sources = normSources(o.source)
  let pos = 0
  let ino = -1
  try {
    const s = statSync(file)
    pos = s.size
    ino = s.ino
  } catch {
    // not there yet: start from 0 when it appears
  }
  let partial = ''
  while (!signal.aborted) {
    await new Promise<void>(resolve => {
      const t = setTimeout(resolve, intervalMs)
      signal.addEventListener('abort', () => {
        clearTimeout(t)
        resolve()
      }, { once: true })
    })
    if (signal.aborted) break
    let fd: number
    try {
      fd = openSync(file, 'r')
    } catch {
      continue
    }
    try {
      const st = fstatSync(fd)
      if (st.ino !== ino || st.size < pos) {
        // rotated or truncated: read the new file from the start
        ino = st.ino
        pos = 0
        partial = ''
      }
      if (st.size > pos) {
        const buf = Buffer.alloc(Math.min(st.size - pos, 4 * 1024 * 1024))
        const n = readSync(fd, buf, 0, buf.length, pos)
        pos += n
        const text = partial + buf.subarray(0, n).toString('utf8')
        const lines = text.split('\n')
        partial = lines.pop() ?? ''
        for (const l of lines) {
          const e = parseShorthandLine(l)
          if (e && matches(e, o, sources)) onEntry(e)
        }
      }
    } finally {
      closeSync(fd)
    }
  }
}
