/** The audit trail's records: file names and limits, redaction, and OCSF / OpenShell-shorthand rendering of each event (written by ./audit.ts). */
import { readFileSync } from 'node:fs'

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
export const MAX_L7_SAMPLES = 20
/** Destinations remembered for "first denial" (beyond it, first denials are no longer retained). */
export const MAX_SEEN_DESTINATIONS = 20_000

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

