import { PodshellError } from '../errors.js'

/** OpenShell policy limits, the policy error type and key-path formatting (shared by the schema, its checks and the loader). */

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/** OpenShell's MAX_POLICY_SIZE (crates/openshell-server/src/grpc/mod.rs). */
export const MAX_POLICY_BYTES = 256 * 1024
/** OpenShell's MAX_FILESYSTEM_PATHS (read_only + read_write). */
export const MAX_FILESYSTEM_PATHS = 256
/** OpenShell's MAX_PATH_LENGTH, in bytes. */
export const MAX_PATH_BYTES = 4096
/** OpenShell's MAX_MIDDLEWARE_CONFIGS. */
export const MAX_MIDDLEWARES = 10
/** OpenShell's MAX_MIDDLEWARE_SELECTOR_PATTERNS (include + exclude). */
export const MAX_MIDDLEWARE_SELECTOR_PATTERNS = 32
/**
 * Nesting limit for the parsed document. A real policy nests about ten levels (params matchers and
 * middleware config a few more); the limit keeps recursive code (validation, hashing, YAML output)
 * far from the JS stack limit whatever the input.
 */
export const MAX_POLICY_DEPTH = 64
/** YAML alias expansion budget handed to the `yaml` package (stops "billion laughs"). */
export const MAX_YAML_ALIAS_COUNT = 100
export const MIN_SANDBOX_ID = 1
export const MAX_SANDBOX_ID = 4294967294 // u32::MAX - 1: u32::MAX is the "invalid id" sentinel

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/**
 * Messages quote values from the document; a value may hold newlines or terminal escape sequences.
 * Control characters are shown escaped so every issue stays one line and cannot drive the terminal.
 */
export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/**
 * A policy document that cannot be used. `issues` lists every problem as `key.path: message`;
 * the one-line message names the source, the first problem and how many there are.
 */
export class PolicyError extends PodshellError {
  readonly issues: string[]
  readonly source: string

  /** `opts.summary` replaces the "invalid policy SOURCE: …" line (file-level errors such as "not found"). */
  constructor(source: string, issues: string[], opts: { hint?: string; code?: string; cause?: unknown; summary?: string } = {}) {
    const list = issues.length > 0 ? issues.map(printable) : ['(document): invalid policy']
    const more = list.length > 1 ? ` (and ${list.length - 1} more problem${list.length > 2 ? 's' : ''})` : ''
    super(opts.summary !== undefined ? printable(opts.summary) : `invalid policy ${source}: ${list[0]}${more}`, {
      hint: opts.hint ?? `fix the policy; \`podshell policy validate ${source}\` lists every problem`,
      code: opts.code ?? 'POLICY_INVALID',
      exitCode: 1,
      cause: opts.cause,
    })
    this.name = 'PolicyError'
    this.issues = list
    this.source = source
  }
}

// ---------------------------------------------------------------------------------------------
// Key paths
// ---------------------------------------------------------------------------------------------

const BARE_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/

/** `['network_policies','gh','endpoints',0,'host']` → `network_policies.gh.endpoints[0].host`. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') {
      out += `[${seg}]`
      continue
    }
    const s = String(seg)
    if (BARE_KEY.test(s) && s.length <= 80) out += out ? `.${s}` : s
    else {
      const shown = s.length > 60 ? `${s.slice(0, 60)}…` : s
      out += `[${JSON.stringify(shown)}]`
    }
  }
  return out || '(document)'
}
