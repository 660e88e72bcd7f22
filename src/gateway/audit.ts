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
 */
import { appendFileSync, statSync, renameSync, rmSync, readFileSync, mkdirSync, openSync, readSync, closeSync, fstatSync } from 'node:fs'
import { join } from 'node:path'
import { sandboxAuditDir } from '../config/paths.js'

export const OCSF_FILE = 'ocsf.jsonl'
export const SHORTHAND_FILE = 'openshell.log'
export const ENGINE = 'podshell'
export const OCSF_VERSION = '1.8.0'
export const DEFAULT_MAX_BYTES = 4 * 1024 * 1024
export const DEFAULT_KEEP = 3

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
  return s
    .replace(/[\r\n]+/g, ' ')
    .replace(/\b(proxy-authorization|authorization|cookie|set-cookie)\s*[:=]\s*[^,;\]]*/gi, '$1: [REDACTED]')
    .replace(/\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}/gi, '$1 [REDACTED]')
    .replace(/(\/[^\s?#"]*|https?:\/\/[^\s?#"]*)[?#][^\s"\]]*/g, '$1')
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
    else if (Array.isArray(v)) out[k] = v.map(x => (typeof x === 'string' ? redact(x) : x))
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
}

/** Appends one line to `file`, rotating first when it would grow past maxBytes. */
function appendRotating(file: string, line: string, maxBytes: number, keep: number): void {
  let size = 0
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
  /** Lines that could not be written. */
  dropped = 0

  constructor(dir: string, sandbox: string, opts: AuditOptions = {}) {
    this.dir = dir
    this.sandbox = sandbox
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES
    this.keep = opts.keep ?? DEFAULT_KEEP
    this.now = opts.now ?? Date.now
  }

  static forSandbox(dataDir: string, sandbox: string, opts: AuditOptions = {}): AuditLog {
    return new AuditLog(sandboxAuditDir(dataDir, sandbox), sandbox, opts)
  }

  network(e: NetworkEvent): void {
    this.write(renderNetwork(this.sandbox, e, this.now()))
  }

  http(e: HttpEvent): void {
    this.write(renderHttp(this.sandbox, e, this.now()))
  }

  config(e: ConfigEvent): void {
    this.write(renderConfig(this.sandbox, e, this.now()))
  }

  lifecycle(e: LifecycleEvent): void {
    this.write(renderLifecycle(this.sandbox, e, this.now()))
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
