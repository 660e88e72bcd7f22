import { z } from 'zod'
import { readFileSync, statSync } from 'node:fs'
import { isAbsolute, join } from 'node:path'
import { parseDocument } from 'yaml'
import { PodshellError } from '../errors.js'
import { SESSION_TYPES } from '../sandbox/types.js'
import { configDir, homeDir, type Env } from './paths.js'
import { HostExecFilesSchema } from '../watch/schema.js'

/**
 * The user's podshell configuration: `~/.config/podshell/config.yaml` ($XDG_CONFIG_HOME honoured).
 * Every field is optional; a missing file is an empty config. The enterprise file
 * (src/config/enterprise.ts) accepts the same fields and wins over this one, field by field.
 */

export const USER_CONFIG_FILE = 'config.yaml'

export function userConfigPath(env: Env = process.env): string {
  return join(configDir(env), USER_CONFIG_FILE)
}

/** Largest config file podshell reads (a YAML alias bomb or a stray binary file fails fast). */
export const MAX_CONFIG_BYTES = 1024 * 1024

/** Absolute paths, or `~/…` (expanded against $HOME). No NUL, newline, "..", ":" or ",". */
export const configPath = z
  .string()
  .min(1)
  .max(4096, 'must be at most 4096 characters')
  .refine(p => isAbsolute(p) || p.startsWith('~/'), 'must be an absolute path or start with ~/')
  .refine(p => !/[\0\n\r]/.test(p), 'must not contain NUL or newlines')
  .refine(p => !p.split('/').includes('..'), 'must not contain ".."')
  .refine(p => !/[:,]/.test(p), 'must not contain ":" or ","')

export function expandHome(p: string, home: string): string {
  return p === '~' ? home : p.startsWith('~/') ? join(home, p.slice(2)) : p
}

/** Image references: registry/name[:tag][@digest]; never something podman could read as a flag. */
export const imageRef = z
  .string()
  .max(255)
  .regex(/^[a-z0-9][a-z0-9._\-/:@]*$/i, 'must be an image reference like localhost/name:tag (no leading "-")')
  .refine(r => !r.includes('..') && !r.includes('//'), 'must not contain ".." or "//"')

const SIZE_RE = /^\d+(\.\d+)?([kmgtKMGT]i?)?[bB]?$/

export const ResourcesSchema = z
  .strictObject({
    cpu: z
      .string()
      .regex(/^\d+(\.\d+)?m?$/, 'must be cores ("2", "0.5") or millicores ("500m")')
      .optional()
      .describe('CPU limit for the agent, OpenShell notation: cores ("2", "0.5") or millicores ("500m")'),
    memory: z
      .string()
      .regex(/^\d+(\.\d+)?([kmgtKMGT]i?)?[bB]?$/, 'must be a size like "512Mi" or "4Gi"')
      .optional()
      .describe('Memory limit for the agent, OpenShell notation ("512Mi", "4Gi")'),
    pids: z
      .number()
      .int()
      .min(32, 'must be at least 32')
      .max(4_194_304)
      .optional()
      .describe('Maximum number of processes in the agent container (podman --pids-limit; needs cgroup v2, refused elsewhere). Default 4096 where the host enforces it'),
    nproc: z
      .number()
      .int()
      .min(32, 'must be at least 32')
      .max(4_194_304)
      .optional()
      .describe("RLIMIT_NPROC of the sandbox's processes (--ulimit nproc), counted per sandbox (its own user namespace); works on cgroup v1 too. Default 4096"),
    tmp_size: z.string().regex(SIZE_RE, 'must be a size like "512Mi" or "1Gi"').optional().describe('Size of the /tmp tmpfs inside the sandbox (RAM-backed; writes past it fail with ENOSPC). Default 1Gi'),
    var_tmp_size: z.string().regex(SIZE_RE, 'must be a size like "64Mi"').optional().describe('Size of the /var/tmp tmpfs inside the sandbox. Default 256Mi'),
    run_size: z.string().regex(SIZE_RE, 'must be a size like "16Mi"').optional().describe('Size of the /run tmpfs inside the sandbox. Default 64Mi'),
    disk_reserve: z
      .string()
      .regex(/^(0|\d+(\.\d+)?%|\d+(\.\d+)?([kmgtKMGT]i?)?[bB]?)$/, 'must be a share like "5%", a size like "2Gi", or "0"')
      .optional()
      .describe('Free space the disk guard keeps on every filesystem the agent can write to (the sandbox home, read-write mounts): below it the agent is paused (SIGSTOP) until space is freed. A share ("5%") or a size ("2Gi"); "0" turns the guard off. Default 5% of the filesystem, at least 512Mi and at most 4Gi'),
    log_max_size: z.string().regex(SIZE_RE, 'must be a size like "10Mi"').optional().describe("Largest log file of a sandbox's containers (podman --log-opt max-size, k8s-file driver). Default 10Mi"),
  })
  .describe('Resource limits applied to every sandbox unless the command line sets them')

export const ReadDenyScanSchema = z
  .strictObject({
    max_depth: z.number().int().min(1).max(256).optional().describe('Directory levels below each mount root scanned for .ai-read-deny markers (default 32)'),
    timeout_ms: z.number().int().min(100).max(600_000).optional().describe('Time budget of the marker scan in milliseconds (default 5000); a scan that runs out refuses the launch'),
  })
  .describe('Bounds of the .ai-read-deny marker scan over mounted trees (an unfinished scan fails closed)')

export const TlsConfigSchema = z
  .strictObject({
    extra_ca_files: z
      .array(configPath)
      .max(64)
      .optional()
      .describe('PEM files of CA certificates the gateway trusts for upstream HTTPS, in addition to the host\'s system trust store (e.g. a corporate TLS-inspecting proxy\'s CA); also added to every sandbox\'s trust bundle. Each file is checked when the config loads. Enterprise and user lists are combined'),
  })
  .describe('TLS inspection in the gateway (docs/tls.md)')

/** The fields shared by config.yaml and enterprise.yaml. */
export const configFields = {
  policy_dir: configPath
    .optional()
    .describe('Directory of policies: `<policy_dir>/<session_type>.yaml` is used for DevAIFlow sessions, and `--policy NAME` is looked up here. In the enterprise file it is LOCKED: policies from anywhere else are refused'),
  default_session_type: z.enum(SESSION_TYPES).optional().describe('Session type assumed when a sandbox names none (investigation, ticket_creation, development)'),
  default_policy: z
    .string()
    .min(1)
    .max(4096)
    .refine(p => !/[\0\n\r]/.test(p) && !p.split('/').includes('..'), 'must not contain NUL, newlines or ".."')
    .optional()
    .describe('Policy used when a sandbox has neither --policy nor a session type: a file name in policy_dir, or an absolute path (~/ allowed)'),
  image: imageRef.optional().describe('Default sandbox image (default: localhost/podshell-sandbox:latest)'),
  resources: ResourcesSchema.optional(),
  runtime: z.enum(['auto', 'crun', 'runc']).optional().describe('OCI runtime podman uses for sandboxes; auto (default) probes for one that works on this host'),
  read_deny_scan: ReadDenyScanSchema.optional(),
  host_exec_files: HostExecFilesSchema.optional(),
  tls: TlsConfigSchema.optional(),
}

export const UserConfigSchema = z
  .strictObject(configFields)
  .describe("podshell user configuration (~/.config/podshell/config.yaml). Enterprise settings (/etc/podshell/enterprise.yaml) override it field by field")

export type UserConfig = z.infer<typeof UserConfigSchema>

/** One line per zod issue, naming the full key path (unknown keys included). */
export function describeIssues(err: z.ZodError): string[] {
  return err.issues.map(i => {
    const path = i.path.map(String)
    if (i.code === 'unrecognized_keys') {
      return `${[...path, (i as { keys: string[] }).keys[0]].join('.')}: unknown key`
    }
    return `${path.join('.') || '(document)'}: ${i.message}`
  })
}

/**
 * Reads and validates a YAML config file. Missing file → undefined (only when `optional`). Every
 * other failure is one line naming the file and the key path: `invalid config FILE: a.b: why`.
 */
export function readYamlConfig<T>(file: string, schema: z.ZodType<T>, opts: { optional: boolean; what: string }): T | undefined {
  let text: string
  try {
    const st = statSync(file)
    if (!st.isFile()) throw new PodshellError(`invalid ${opts.what} ${file}: not a regular file`, { hint: 'replace it with a YAML file', code: 'INVALID_CONFIG', exitCode: 2 })
    if (st.size > MAX_CONFIG_BYTES) throw new PodshellError(`invalid ${opts.what} ${file}: larger than 1 MiB`, { hint: 'a podshell config is a few lines of YAML', code: 'INVALID_CONFIG', exitCode: 2 })
    text = readFileSync(file, 'utf8')
  } catch (e) {
    if (e instanceof PodshellError) throw e
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT' && opts.optional) return undefined
    // Fails closed: a config that exists but cannot be read is not treated as absent.
    throw new PodshellError(`cannot read ${opts.what} ${file} (${code ?? 'error'})`, {
      hint: code === 'ENOENT' ? 'create the file or unset the variable that names it' : 'check its permissions',
      code: 'INVALID_CONFIG',
      exitCode: 2,
    })
  }
  return parseYamlConfig(text, file, schema, opts.what)
}

export function parseYamlConfig<T>(text: string, file: string, schema: z.ZodType<T>, what: string): T {
  const doc = parseDocument(text, { uniqueKeys: true })
  if (doc.errors.length) {
    const e = doc.errors[0]!
    const where = e.linePos?.[0] ? ` (line ${e.linePos[0].line})` : ''
    throw new PodshellError(`invalid ${what} ${file}${where}: ${e.message.split('\n')[0]}`, { hint: 'fix the YAML syntax', code: 'INVALID_CONFIG', exitCode: 2 })
  }
  let raw: unknown
  try {
    raw = doc.toJS({ maxAliasCount: 50 }) ?? {}
  } catch (e) {
    throw new PodshellError(`invalid ${what} ${file}: ${(e as Error).message.split('\n')[0]}`, { hint: 'inline repeated values instead of YAML aliases', code: 'INVALID_CONFIG', exitCode: 2 })
  }
  const r = schema.safeParse(raw)
  if (!r.success) {
    const lines = describeIssues(r.error)
    const more = lines.length > 1 ? ` (+${lines.length - 1} more)` : ''
    throw new PodshellError(`invalid ${what} ${file}: ${lines[0]}${more}`, { hint: '`podshell schema config` prints the schema', code: 'INVALID_CONFIG', exitCode: 2 })
  }
  return r.data
}

export function loadUserConfig(env: Env = process.env): { file: string; config: UserConfig } {
  const file = userConfigPath(env)
  const config = readYamlConfig(file, UserConfigSchema, { optional: true, what: 'config' }) ?? {}
  return { file, config }
}

/** `~/` expansion of the path fields of a config, against the caller's $HOME. */
export function expandConfigPaths<T extends { policy_dir?: string | undefined; default_policy?: string | undefined; tls?: { extra_ca_files?: string[] | undefined } | undefined }>(c: T, env: Env): T {
  const home = homeDir(env)
  return {
    ...c,
    ...(c.tls?.extra_ca_files !== undefined ? { tls: { ...c.tls, extra_ca_files: c.tls.extra_ca_files.map(f => expandHome(f, home)) } } : {}),
    ...(c.policy_dir !== undefined ? { policy_dir: expandHome(c.policy_dir, home) } : {}),
    ...(c.default_policy !== undefined ? { default_policy: expandHome(c.default_policy, home) } : {}),
  }
}
