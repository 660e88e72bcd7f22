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

/** Renders rows as a left-aligned table with a header line (OpenShell's plain style). */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd()
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
