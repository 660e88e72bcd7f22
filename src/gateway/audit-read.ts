/** Reading a sandbox's audit trail for the CLI's `logs` (written by ./audit.ts). */
import { statSync, readFileSync, openSync, readSync, closeSync, fstatSync } from 'node:fs'
import { join } from 'node:path'
import { sandboxAuditDir } from '../config/paths.js'
import { DEFAULT_KEEP, SHORTHAND_FILE } from './audit-events.js'

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

