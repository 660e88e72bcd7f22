import { stringify } from 'yaml'
import { PodshellError } from '../errors.js'

export type OutputFormat = 'table' | 'yaml' | 'json'

export function parseOutputFormat(v: string | undefined, allowed: readonly OutputFormat[] = ['table', 'yaml', 'json']): OutputFormat {
  const f = (v ?? 'table') as OutputFormat
  if (!allowed.includes(f)) {
    throw new PodshellError(`invalid output format ${JSON.stringify(v)}`, { hint: `use -o ${allowed.join('|')}`, exitCode: 2, code: 'INVALID_INPUT' })
  }
  return f
}

/**
 * Renders rows as a left-aligned table with a header line, columns two spaces apart (OpenShell's
 * plain style: `{:<w$}  {:<w$}  {}`). `minWidths` fixes a column's width where OpenShell does
 * (CREATED is always 19, the width of `YYYY-MM-DD HH:MM:SS`).
 */
export function table(headers: readonly string[], rows: readonly (readonly string[])[], minWidths: readonly number[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, minWidths[i] ?? 0, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()
  return [line(headers), ...rows.map(line)].join('\n') + '\n'
}

/** Serialises data for -o yaml|json. Redaction happens before data reaches here. */
export function serialize(data: unknown, format: 'yaml' | 'json'): string {
  return format === 'json' ? JSON.stringify(data, null, 2) + '\n' : stringify(data)
}

export interface Out {
  /** Results (stdout). */
  stdout(text: string): void
  /** Progress and notes (stderr), never mixed into stdout so `-o json` stays parseable. */
  note(text: string): void
}

export const processOut: Out = {
  stdout: t => void process.stdout.write(t),
  note: t => void process.stderr.write(t.endsWith('\n') ? t : t + '\n'),
}

/**
 * A timestamp as OpenShell prints CREATED (`format_epoch_ms`): `YYYY-MM-DD HH:MM:SS` in UTC, "-"
 * when there is none. Accepts epoch milliseconds or an ISO-8601 string (podshell's labels).
 */
export function formatCreated(t: string | number | undefined | null): string {
  if (t === undefined || t === null || t === '') return '-'
  const d = new Date(typeof t === 'number' ? t : /^\d+$/.test(t) ? Number(t) : t)
  if (Number.isNaN(d.getTime()) || d.getTime() < 0) return '-'
  return d.toISOString().slice(0, 19).replace('T', ' ')
}

/** OpenShell's check mark prefix for a completed action (`✓ Deleted sandbox NAME`); no colour codes. */
export const OK = '\u2713'
