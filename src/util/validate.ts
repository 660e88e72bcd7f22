import { z } from 'zod'
import { isAbsolute, normalize } from 'node:path'
import { PodshellError } from '../errors.js'
import { SANDBOX_NAME_RE, ENV_KEY_RE } from './patterns.js'

/**
 * Validation of every string that comes from outside (flags, spec files, config) before it reaches
 * podman. Podman reads arguments that start with `-` as flags and splits some values on `,` `=` `:`;
 * the rules below keep every value unambiguous for it.
 */

export { SANDBOX_NAME_RE }
export const sandboxName = z
  .string()
  .regex(SANDBOX_NAME_RE, 'must be a DNS-1123 label of 1-63 characters: lowercase letters, digits and "-", starting and ending with a letter or digit')
  .describe('Sandbox name: a DNS-1123 label of at most 63 characters')

/** Provider and other object names: DNS-1123 subdomain-ish, at most 63. */
export const objectName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/, 'must be 1-63 lowercase letters, digits, ".", "_" or "-", starting and ending with a letter or digit')

/** Label keys: Kubernetes-style qualified names. Values: <= 253 printable chars, no newlines. */
export const labelKey = z
  .string()
  .regex(/^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/, 'must be a label key like "team" or "example.com/team" (letters, digits, ".", "_", "-")')
  .refine(k => !k.startsWith('io.podshell'), 'the io.podshell prefix is reserved for podshell')
export const labelValue = z
  .string()
  .max(253, 'must be at most 253 characters')
  .regex(/^[\x20-\x7e]*$/, 'must be printable ASCII without newlines')
  .refine(v => !v.startsWith('-'), 'must not start with "-"')

/** POSIX environment variable names. Values: no NUL, <= 128 KiB (MAX_ARG_STRLEN). */
export const envKey = z
  .string()
  .regex(ENV_KEY_RE, 'must be a POSIX name: letters, digits and "_", not starting with a digit')
export const envValue = z
  .string()
  .max(128 * 1024, 'must be at most 128 KiB')
  .refine(v => !v.includes('\0'), 'must not contain NUL')

/** Absolute host paths: no NUL, no newline, no "..", no ":" or "," (podman's mount separators). */
export const hostPath = z
  .string()
  .min(1)
  .max(4096, 'must be at most 4096 characters')
  .refine(p => isAbsolute(p), 'must be an absolute path')
  .refine(p => !/[\0\n\r]/.test(p), 'must not contain NUL or newlines')
  .refine(p => !p.split('/').includes('..'), 'must not contain ".."')
  .refine(p => !/[:,]/.test(p), 'must not contain ":" or "," (podman uses them as mount separators)')

export function normalizePath(p: string): string {
  const n = normalize(p)
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n
}

/** Parses with a zod schema and throws a one-line PodshellError naming the input. */
export function check<T>(schema: z.ZodType<T>, value: unknown, what: string, hint?: string): T {
  const r = schema.safeParse(value)
  if (r.success) return r.data
  const issue = r.error.issues[0]!
  const path = issue.path.length ? `.${issue.path.join('.')}` : ''
  const shown = typeof value === 'string' ? ` ${JSON.stringify(value.length > 60 ? value.slice(0, 60) + '…' : value)}` : ''
  throw new PodshellError(`invalid ${what}${path}${shown}: ${issue.message}`, { hint, code: 'INVALID_INPUT', exitCode: 2 })
}

/** Splits K=V; the key is validated with `keySchema`, the value with `valueSchema`. */
export function parseKeyValue(
  raw: string,
  what: string,
  keySchema: z.ZodType<string>,
  valueSchema: z.ZodType<string>,
): [string, string] {
  const i = raw.indexOf('=')
  if (i <= 0) throw new PodshellError(`invalid ${what} ${JSON.stringify(raw.slice(0, 60))}: expected KEY=VALUE`, { code: 'INVALID_INPUT', exitCode: 2 })
  const k = check(keySchema, raw.slice(0, i), `${what} key`)
  const v = check(valueSchema, raw.slice(i + 1), `${what} value for ${k}`)
  return [k, v]
}

/** Formats a zod error as `path.to.key: message` lines (policy, spec and config files). */
export function formatZodIssues(err: z.ZodError, prefix = ''): string[] {
  return err.issues.map(i => {
    const path = [prefix, ...i.path.map(String)].filter(Boolean).join('.')
    return `${path || '(document)'}: ${i.message}`
  })
}
