import { z } from 'zod'
import { closeSync, openSync } from 'node:fs'
import { isatty } from 'node:tty'
import { PodshellError } from '../errors.js'
import { readFdBounded } from '../util/fs.js'
import { imageRef } from '../config/config.js'
import { formatKeyPath } from '../policy/schema.js'
import { resolveTemplateParams, type TemplateParams } from '../policy/templates.js'
import { envKey, envValue, hostPath, labelKey, labelValue, objectName, sandboxName } from '../util/validate.js'
import { SESSION_TYPES } from './types.js'


/**
 * The launch spec's format: the zod schema (`podshell schema spec`), parsing with key-path errors,
 * and reading it bounded from a file or stdin. What a spec MEANS is src/sandbox/spec.ts.
 */

export const DAF_COMMANDS = ['new', 'open', 'investigate', 'jira-new', 'git-new'] as const

/** Largest spec podshell reads (the headless initial prompt travels in argv, so allow some room). */
export const MAX_SPEC_BYTES = 4 * 1024 * 1024

/** Environment variables the sandbox runtime sets itself, and the ones this spec derives. */
const RUNTIME_ENV = ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'all_proxy', 'no_proxy', 'NODE_USE_ENV_PROXY', 'HOME']
const DERIVED_ENV: Record<string, string> = {
  CLAUDE_CONFIG_DIR: 'claude_config_dir',
  DEVAIFLOW_HOME: 'devaiflow',
  XDG_DATA_HOME: 'devaiflow.data_dir',
  XDG_CONFIG_HOME: 'devaiflow.config_dir',
  XDG_STATE_HOME: 'devaiflow.state_dir',
  XDG_CACHE_HOME: 'devaiflow.clone_dir',
  DEVAIFLOW_IN_SESSION: 'daf.in_session',
  DAF_SESSION_NAME: 'daf.session_name',
  CS_SESSION_NAME: 'daf.session_name',
  DAF_COMMAND: 'daf.command',
  AI_AGENT_SESSION_ID: 'daf.agent_session_id',
}
function envNameProblem(k: string): string | undefined {
  if (RUNTIME_ENV.includes(k) || k.startsWith('PODSHELL_')) return `${k} is set by the sandbox runtime (proxy, home, podshell's own variables)`
  const from = DERIVED_ENV[k]
  if (from) return `${k} is derived from ${from}; set that field instead`
  return undefined
}

/** Labels podshell adds from the spec; a spec cannot set them itself. */
export const SESSION_LABEL = 'devaiflow.session'
export const SESSION_TYPE_LABEL = 'devaiflow.session-type'

const path = (what: string) => hostPath.describe(what)
const printable = (max: number) =>
  z
    .string()
    .min(1)
    .max(max, `must be at most ${max} characters`)
    .regex(/^[\x20-\x7e]+$/, 'must be printable ASCII without newlines')
    .refine(v => !v.startsWith('-'), 'must not start with "-"')

const argString = z
  .string()
  .max(128 * 1024, 'must be at most 128 KiB (the kernel limit for one argument)')
  .refine(v => !v.includes('\0'), 'must not contain NUL')

const MountEntrySchema = z
  .strictObject({
    path: path('Absolute host path; mounted at the same path inside'),
    mode: z.enum(['ro', 'rw']).describe('ro: read-only; rw: read-write'),
  })
  .describe('An extra bind mount (same path inside)')

const TemplateSchema = z
  .strictObject({
    jira_url: z.string().max(2048).optional().describe('JIRA base URL (https://jira.example.com)'),
    github_hosts: z.array(z.string().max(260)).max(32).optional().describe('GitHub hosts (default github.com)'),
    gitlab_hosts: z.array(z.string().max(260)).max(32).optional().describe('GitLab hosts (default gitlab.com)'),
    model_apis: z.array(z.string().max(260)).max(32).optional().describe('Model API hosts (default api.anthropic.com)'),
    registries: z.array(z.string().max(260)).max(64).optional().describe('Package registries: npm, pypi, go, crates, maven, or hosts (default: all five presets)'),
  })
  .superRefine((t, ctx) => {
    try {
      resolveTemplateParams(templateParams(t))
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: e instanceof PodshellError ? e.message : String(e) })
    }
  })
  .describe('Render the session-type policy for these hosts (`podshell policy template`) instead of reading a policy file')

const DafSchema = z
  .strictObject({
    session_name: printable(253).optional().describe('DevAIFlow session name: DAF_SESSION_NAME, CS_SESSION_NAME and the devaiflow.session label'),
    command: z.enum(DAF_COMMANDS).optional().describe('The daf command that launched the agent: DAF_COMMAND'),
    agent_session_id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/, 'must be a session id (letters, digits, "_" and "-", at most 128)')
      .optional()
      .describe("The agent's conversation id (Claude UUID, OpenCode ses_…, pending-capture): AI_AGENT_SESSION_ID"),
    in_session: z.boolean().optional().describe('Set DEVAIFLOW_IN_SESSION=1 so daf refuses state-changing commands inside (default true)'),
  })
  .describe('DevAIFlow session variables passed to the agent')

const DevaiflowSchema = z
  .strictObject({
    data_dir: path('DevAIFlow data dir (sessions.json, notes): mounted read-write; the agent renames sessions and appends notes'),
    config_dir: path('DevAIFlow config dir (config.json, enterprise.json, backends/): mounted read-only. Equal to data_dir in unified mode ($DEVAIFLOW_HOME); then the config files inside are made read-only'),
    state_dir: path('DevAIFlow state dir (audit.log): mounted read-write').optional(),
    clone_dir: path('Where temp clones live (default $XDG_CACHE_HOME/devaiflow/clones); temp_clones must lie inside').optional(),
  })
  .describe('DevAIFlow directories, at the same paths inside so `daf` in the sandbox finds its sessions')

export const SpecSchema = z
  .strictObject({
    version: z.literal(1, 'must be 1').describe('Spec format version; must be 1'),
    name: sandboxName.optional().describe('Sandbox name (DNS-1123 label, at most 63 characters); generated when absent'),
    session_type: z.enum(SESSION_TYPES).describe('DevAIFlow session type: development gets read-write project mounts, the others read-only'),
    cwd: path('Working directory of the agent: the project, the workspace root (multi-project) or the temp clone'),
    workspace: path('Workspace root of a multi-project session; mounted like a project').optional(),
    projects: z.array(path('A project repository')).max(64).optional().describe('Repositories of the session (each mounted like the cwd)'),
    temp_clones: z.array(path('A temp clone')).max(64).optional().describe('Temp clones (ticket_creation/investigation sessions); must lie inside the DevAIFlow clone dir'),
    mounts: z.array(MountEntrySchema).max(64).optional().describe('Further bind mounts. A read-write mount overlapping a project of a read-only session type is refused'),
    env: z.record(envKey, envValue).optional().describe('Environment variables with explicit values (non-secret configuration: ANTHROPIC_BASE_URL, CLAUDE_CODE_USE_VERTEX …)'),
    env_pass: z
      .array(envKey)
      .max(256)
      .optional()
      .describe("Names of variables whose values podshell copies from its caller's environment at create time (secrets stay out of the spec); unset names are skipped"),
    daf: DafSchema.optional(),
    providers: z.array(objectName.describe('Provider name')).max(32).optional().describe('podshell providers to attach (credentials injected by podshell, e.g. jira, claude)'),
    credential_mode: z
      .enum(['placeholder', 'env'])
      .optional()
      .describe('placeholder (default): the agent holds placeholders the gateway substitutes on the provider endpoints; env: the real values as env vars (warned; an enterprise config can forbid it)'),
    argv: z
      .array(argString)
      .min(1, 'must name the agent command')
      .max(4096)
      .describe('The agent command, e.g. ["claude", "--session-id", "<uuid>", "<prompt>"]. argv[0] must not start with "-"'),
    tty: z.boolean().optional().describe('Allocate a TTY (default: when stdin is a terminal)'),
    labels: z.record(labelKey, labelValue).optional().describe(`Sandbox labels; podshell adds ${SESSION_LABEL} and ${SESSION_TYPE_LABEL}`),
    image: imageRef.optional().describe('Sandbox image (default: the configured image, else the podshell sandbox image)'),
    policy: path('OpenShell v1 policy file; default: <policy_dir>/<session_type>.yaml, else the built-in session-type policy').optional(),
    template: TemplateSchema.optional(),
    claude_config_dir: path("Claude Code's config dir ($CLAUDE_CONFIG_DIR or ~/.claude): this session's projects/<encoded path> read-write (memory/ read-only outside development), no other project's, settings.json, skills/, CLAUDE.md, commands/, agents/, plugins/ read-only; nothing else (no .credentials.json)").optional(),
    devaiflow: DevaiflowSchema.optional(),
    allow_sockets: z.array(path('A host unix socket inside a mounted tree')).max(64).optional().describe('Host unix sockets the agent may reach (e.g. a dev database it must use); every other socket found in the mounted trees is masked'),
    allow_sensitive: z.boolean().optional().describe('Permit mounting secret-class sensitive paths (~/.aws …); subject to the enterprise allow_sensitive. Escape-class paths are never mountable'),
  })
  .superRefine((s, ctx) => {
    const add = (p: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', message, path: p as (string | number)[] })
    if (s.policy !== undefined && s.template !== undefined) add(['template'], 'give policy or template, not both')
    const a0 = s.argv[0]
    if (a0 !== undefined && (a0 === '' || a0.startsWith('-'))) add(['argv', 0], 'must be the command name (not empty, not starting with "-")')
    for (const k of Object.keys(s.env ?? {})) {
      const p = envNameProblem(k)
      if (p) add(['env', k], p)
    }
    ;(s.env_pass ?? []).forEach((k, i) => {
      const p = envNameProblem(k)
      if (p) add(['env_pass', i], p)
    })
    for (const k of [SESSION_LABEL, SESSION_TYPE_LABEL]) if (s.labels && k in s.labels) add(['labels', k], 'is set by podshell from the spec')
  })
  .describe('podshell launch spec: one fully resolved DevAIFlow agent session (`podshell sandbox create --spec FILE|-`)')

export type Spec = z.infer<typeof SpecSchema>

export function specJsonSchema(): Record<string, unknown> {
  return {
    ...(z.toJSONSchema(SpecSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>),
    $id: 'https://podshell.dev/schemas/launch-spec-v1.json',
    title: 'podshell launch spec (v1)',
  }
}

export function templateParams(t: NonNullable<Spec['template']>): TemplateParams {
  return { jiraUrl: t.jira_url, githubHosts: t.github_hosts, gitlabHosts: t.gitlab_hosts, modelApis: t.model_apis, registries: t.registries }
}

export function specError(source: string, lines: string[]): PodshellError {
  const more = lines.length > 1 ? ` (+${lines.length - 1} more)` : ''
  return new PodshellError(`invalid spec ${source}: ${lines[0]}${more}`, { hint: '`podshell schema spec` prints the schema', code: 'INVALID_SPEC', exitCode: 2 })
}

/** Parses and validates spec JSON. Errors name the key path: `invalid spec -: mounts[0].path: must not contain ".."`. */
export function parseSpec(text: string, source: string): Spec {
  if (Buffer.byteLength(text) > MAX_SPEC_BYTES) throw specError(source, [`(document): larger than ${MAX_SPEC_BYTES / 1024 / 1024} MiB`])
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (e) {
    throw specError(source, [`(document): not JSON: ${(e as Error).message.split('\n')[0]}`])
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw specError(source, ['(document): expected a JSON object'])
  const r = SpecSchema.safeParse(raw)
  if (!r.success) {
    throw specError(
      source,
      r.error.issues.map(i =>
        i.code === 'unrecognized_keys'
          ? `${formatKeyPath([...(i.path as PropertyKey[]), i.keys[0]!])}: unknown key`
          : `${formatKeyPath(i.path as PropertyKey[])}: ${i.message}`,
      ),
    )
  }
  return r.data
}

/** Reads the spec from a file, or from stdin for "-" (bounded). */
export function readSpecSource(file: string): { text: string; source: string } {
  const source = file === '-' ? 'stdin' : file
  if (file === '-' && isatty(0)) {
    throw new PodshellError('--spec - reads the spec from stdin, which is a terminal', { hint: 'pipe the JSON in, or pass it on another descriptor (--spec /dev/fd/3) so the agent keeps the terminal', code: 'INVALID_SPEC', exitCode: 2 })
  }
  let fd: number
  try {
    fd = file === '-' ? 0 : openSync(file, 'r')
  } catch (e) {
    throw new PodshellError(`cannot read spec ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { hint: 'pass an existing JSON file, or - for stdin', code: 'INVALID_SPEC', exitCode: 2 })
  }
  let data: Buffer | undefined
  try {
    data = readFdBounded(fd, MAX_SPEC_BYTES)
  } catch (e) {
    throw new PodshellError(`cannot read spec ${source} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { code: 'INVALID_SPEC', exitCode: 2 })
  } finally {
    if (fd !== 0) closeSync(fd)
  }
  if (data === undefined) throw specError(source, [`(document): larger than ${MAX_SPEC_BYTES / 1024 / 1024} MiB`])
  return { text: data.toString('utf8'), source }
}

