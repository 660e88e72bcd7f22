import { PodshellError } from '../errors.js'
import type { Env } from '../config/paths.js'
import { check, envKey } from '../util/validate.js'
import { PROVIDER_TYPES, PROVIDER_TYPE_NAMES, type ProviderTypeName } from './types.js'

/**
 * Parsing of `--credential KEY[=VALUE]`, `--config K=V` and `--from-existing`.
 *
 * Every error here names the variable, never its value: validate.ts's `check()` quotes the
 * offending input in its message, which is right for names and paths and wrong for a secret, so
 * values are checked by hand below.
 */

/** Largest single environment string the kernel accepts (MAX_ARG_STRLEN, "KEY=VALUE\0"). */
export const MAX_ENV_STRING = 128 * 1024
/**
 * The one rule for a credential value's characters: printable ASCII, non-empty. The gateway puts it
 * into headers and URLs; it checks values arriving on its control socket with the same rule.
 */
export function isPrintableCredentialValue(value: string): boolean {
  return /^[\x20-\x7e]+$/.test(value)
}

/** Config values are not secret but become environment variables and pod metadata. */
export const MAX_CONFIG_VALUE = 4096

/**
 * Names a provider may not set, with the reason. A credential or config variable lands in the
 * agent's environment next to podshell's own; these would redirect egress around the proxy,
 * change which code the agent loads or which TLS roots it trusts, or fake podshell's control
 * variables (peer case 56: control env spoofed from a template). Matching is case-insensitive
 * because curl and Python read lower-case proxy variables too.
 */
const RESERVED_EXACT: ReadonlyMap<string, string> = new Map([
  ...['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'FTP_PROXY', 'GRPC_PROXY', 'NODE_USE_ENV_PROXY'].map(
    k => [k, 'podshell sets it to route egress through its proxy'] as const,
  ),
  ...['HOME', 'PATH', 'USER', 'LOGNAME', 'SHELL', 'HOSTNAME', 'TERM', 'PWD'].map(k => [k, 'the sandbox sets it'] as const),
  ...['NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO', 'DENO_CERT'].map(
    k => [k, 'it changes code loading or TLS trust, which is not a credential'] as const,
  ),
  ['__PROTO__', 'it is not usable as a map key'],
])
const RESERVED_PREFIX: readonly [string, string][] = [
  ['PODSHELL_', "podshell's control variables cannot come from a provider"],
  ['OPENSHELL_', "OpenShell's control variables cannot come from a provider"],
  ['LD_', 'it changes code loading, which is not a credential'],
]

/** Why `name` may not be set by a provider, or undefined when it may. */
export function reservedReason(name: string): string | undefined {
  const u = name.toUpperCase()
  const exact = RESERVED_EXACT.get(u)
  if (exact) return exact
  return RESERVED_PREFIX.find(([p]) => u.startsWith(p))?.[1]
}

/** Validates a variable name a provider will set (credential or config). */
export function checkVariableName(name: string, what: 'credential' | 'config'): string {
  check(envKey, name, `${what} name`, 'use a POSIX variable name such as GITHUB_TOKEN')
  const why = reservedReason(name)
  if (why) {
    throw new PodshellError(`${what} name ${name} is reserved: ${why}`, {
      hint: 'choose another variable name',
      code: 'INVALID_INPUT',
      exitCode: 2,
    })
  }
  return name
}

/**
 * Validates a credential value without ever quoting it. Empty values are refused: Podman cannot
 * store an empty secret ("secret data must be larger than 0"), and an empty token is a mistake.
 */
export function checkCredentialValue(name: string, value: string): string {
  const bad = (problem: string, hint: string) =>
    new PodshellError(`credential ${name} ${problem}`, { hint, code: 'INVALID_INPUT', exitCode: 2 })
  if (value.length === 0) throw bad('is empty', `set ${name} to the credential's value`)
  if (value.includes('\0')) throw bad('contains a NUL byte', 'environment values cannot hold NUL; check how the value was produced')
  if (Buffer.byteLength(name) + 1 + Buffer.byteLength(value) + 1 > MAX_ENV_STRING) {
    throw bad('is longer than 128 KiB', 'the kernel limits one environment variable to 128 KiB (MAX_ARG_STRLEN)')
  }
  // The gateway puts the value into request headers and URLs (placeholder substitution): CR/LF
  // would split a header, and non-ASCII has no single encoding there.
  if (/[\r\n]/.test(value)) throw bad('contains a CR or LF (line break)', 'credential values are single-line; remove the trailing newline (e.g. `$(cat file)` strips it, `tr -d "\\r\\n"` too)')
  if (!isPrintableCredentialValue(value)) throw bad('contains non-ASCII or control characters', 'credential values are printable ASCII; check how the value was produced')
  return value
}

/** Config values are not secret (they are stored and shown), so the message may quote them. */
export function checkConfigValue(name: string, value: string): string {
  const bad = (problem: string) =>
    new PodshellError(`config ${name} ${problem}`, { hint: 'config values are single-line text', code: 'INVALID_INPUT', exitCode: 2 })
  if (value.length > MAX_CONFIG_VALUE) throw bad(`is longer than ${MAX_CONFIG_VALUE} characters`)
  if (/[\0\r\n]/.test(value)) throw bad('must not contain NUL or newlines')
  return value
}

export function checkProviderType(type: string): ProviderTypeName {
  if ((PROVIDER_TYPE_NAMES as string[]).includes(type)) return type as ProviderTypeName
  throw new PodshellError(`unknown provider type ${JSON.stringify(type.slice(0, 40))}`, {
    hint: `use one of ${PROVIDER_TYPE_NAMES.join(', ')}`,
    code: 'INVALID_INPUT',
    exitCode: 2,
  })
}

export interface CredentialFlags {
  /** Variable name → value, in flag order. */
  values: Map<string, string>
  /** Variables whose value was typed on the command line (visible in `ps` and shell history). */
  inArgv: string[]
}

/**
 * `--credential KEY=VALUE` takes the value from the flag; a bare `--credential KEY` reads KEY from
 * the caller's environment (how DevAIFlow passes JIRA_API_TOKEN without putting it in argv).
 */
export function parseCredentialFlags(flags: readonly string[], env: Env): CredentialFlags {
  const values = new Map<string, string>()
  const inArgv: string[] = []
  for (const raw of flags) {
    const i = raw.indexOf('=')
    const name = checkVariableName(i < 0 ? raw : raw.slice(0, i), 'credential')
    if (values.has(name)) {
      throw new PodshellError(`--credential ${name} is given twice`, { hint: 'give each variable once', code: 'INVALID_INPUT', exitCode: 2 })
    }
    let value: string
    if (i < 0) {
      const fromEnv = env[name]
      if (fromEnv === undefined) {
        throw new PodshellError(`--credential ${name}: ${name} is not set in the environment`, {
          hint: `export ${name} before running podshell, or pass --credential ${name}=VALUE`,
          code: 'CREDENTIAL_NOT_SET',
          exitCode: 2,
        })
      }
      value = fromEnv
    } else {
      value = raw.slice(i + 1)
      inArgv.push(name)
    }
    values.set(name, checkCredentialValue(name, value))
  }
  return { values, inArgv }
}

/** `--config K=V` (repeatable); a repeated key is an error rather than a silent override. */
export function parseConfigFlags(flags: readonly string[]): Map<string, string> {
  const out = new Map<string, string>()
  for (const raw of flags) {
    const i = raw.indexOf('=')
    if (i <= 0) {
      throw new PodshellError(`invalid --config ${JSON.stringify(raw.slice(0, 60))}: expected KEY=VALUE`, {
        hint: 'e.g. --config JIRA_URL=https://jira.example.com',
        code: 'INVALID_INPUT',
        exitCode: 2,
      })
    }
    const name = checkVariableName(raw.slice(0, i), 'config')
    if (out.has(name)) {
      throw new PodshellError(`--config ${name} is given twice`, { hint: 'give each key once', code: 'INVALID_INPUT', exitCode: 2 })
    }
    out.set(name, checkConfigValue(name, raw.slice(i + 1)))
  }
  return out
}

/**
 * `--from-existing`: the credential variables the type knows, taken from the caller's
 * environment (set and non-empty), plus the type's config keys found there (JIRA_URL for jira).
 * Fails when no credential variable is found: a provider without a credential is a mistake.
 */
export function fromExisting(type: ProviderTypeName | readonly string[], env: Env, label: string = String(type)): { credentials: Map<string, string>; config: Map<string, string> } {
  // An imported provider profile (src/credentials/profiles.ts) names its variables itself.
  const t = typeof type === 'string' ? PROVIDER_TYPES[type] : { credentials: type, config: [] as readonly string[] }
  type = typeof type === 'string' ? type : (label as ProviderTypeName)
  if (t.credentials.length === 0) {
    throw new PodshellError(`--from-existing: provider type ${type} knows no credential variables`, {
      hint: 'name them with --credential KEY (the value is read from the environment)',
      code: 'INVALID_INPUT',
      exitCode: 2,
    })
  }
  const credentials = new Map<string, string>()
  for (const k of t.credentials) {
    const v = env[k]
    if (v !== undefined && v !== '') credentials.set(k, checkCredentialValue(k, v))
  }
  if (credentials.size === 0) {
    throw new PodshellError(`--from-existing: none of ${t.credentials.join(', ')} is set in the environment`, {
      hint: `export one of them, or pass --credential KEY=VALUE`,
      code: 'CREDENTIAL_NOT_SET',
      exitCode: 2,
    })
  }
  const config = new Map<string, string>()
  for (const k of t.config) {
    const v = env[k]
    if (v !== undefined && v !== '') config.set(k, checkConfigValue(k, v))
  }
  return { credentials, config }
}
