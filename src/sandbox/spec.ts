import { z } from 'zod'
import { existsSync, mkdirSync, readFileSync, realpathSync, statSync, closeSync, openSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isatty } from 'node:tty'
import type { Command } from 'commander'
import { PodshellError } from '../errors.js'
import { readFdBounded } from '../util/fs.js'
import { configDir, dataDir, homeDir, type Env } from '../config/paths.js'
import { imageRef } from '../config/config.js'
import { applyEffectiveDefaults, enforceEnterprise, loadEffectiveConfig, type EffectiveConfig, type LoadOptions } from '../config/enterprise.js'
import { formatKeyPath, MAX_POLICY_BYTES, parsePolicyText, type Policy } from '../policy/schema.js'
import { renderTemplate, resolveTemplateParams, type TemplateParams } from '../policy/templates.js'
import { envKey, envValue, hostPath, labelKey, labelValue, normalizePath, objectName, sandboxName } from '../util/validate.js'
import { checkMount, isWithin } from './sensitive.js'
import { checkTreeSource, isDir, markSecured, secureTrees, type PipelineOptions, type Tree } from './mount-pipeline.js'
import { claudeDataBinds } from './claude-data.js'
import { SESSION_TYPES, type CreateOptions, type MountMode, type MountSpec, type SessionType } from './types.js'

/**
 * The launch spec: the fully resolved description of one DevAIFlow agent session that `daf` hands
 * podshell (`podshell sandbox create --spec FILE|-`, JSON). podshell never reads DevAIFlow's own
 * configuration: daf resolves everything (which repos, which agent command, which env names) and
 * podshell turns it into mounts, environment, labels and a policy, applying its own rules:
 *
 *   - every path appears inside at the SAME absolute path (Claude's conversation files live under
 *     `<claude_dir>/projects/<encoded cwd>/`, and daf finds them by that path on the host);
 *   - project trees are read-write only for `development`; investigation and ticket_creation
 *     get them read-only, enforced by the mount, not by a prompt;
 *   - sensitive host paths are refused (src/sandbox/sensitive.ts), `.ai-read-deny` trees are
 *     masked, git hooks/config and agent settings stay read-only inside read-write projects.
 *
 * `podshell schema spec` prints the JSON Schema.
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

function templateParams(t: NonNullable<Spec['template']>): TemplateParams {
  return { jiraUrl: t.jira_url, githubHosts: t.github_hosts, gitlabHosts: t.gitlab_hosts, modelApis: t.model_apis, registries: t.registries }
}

function specError(source: string, lines: string[]): PodshellError {
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

// ───────────────────────────── spec → CreateOptions ─────────────────────────────

export interface SpecContext {
  /** podshell's effective configuration (user + enterprise). */
  config: EffectiveConfig
  /** podshell's data and config dirs: never mountable. */
  podshellDataDir: string
  podshellConfigDir: string
  /** Where the built-in session-type policies are (default: the package's policies/). */
  builtinPolicyDir?: string
  /** Caller uid (for /run/user/<uid>). */
  uid?: number
  /** From the command line: keep the sandbox after the command (default true), detach. */
  keep?: boolean
  detach?: boolean
}

/** The package's policies/ directory (dist/sandbox/spec.js and src/sandbox/spec.ts alike). */
export function builtinPolicyDir(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'policies')
}

/** Items of Claude's config dir the agent may read (never .credentials.json, history, todos). */
export const CLAUDE_READ_ONLY = ['settings.json', 'skills', 'CLAUDE.md', 'commands', 'agents', 'plugins', 'output-styles'] as const

/** DevAIFlow config files inside a unified ($DEVAIFLOW_HOME) dir that stay read-only. */
export const DEVAIFLOW_CONFIG_FILES = ['config.json', 'enterprise.json', 'organization.json', 'team.json', 'backends', 'templates', '.claude', 'ENTERPRISE.md', 'ORGANIZATION.md', 'TEAM.md', 'USER.md'] as const

type BindKind = 'project' | 'clone' | 'extra' | 'claude' | 'devaiflow'
interface Bind {
  path: string
  mode: MountMode
  kind: BindKind
  /** Spec key path, for errors. */
  what: string
  workdir?: boolean
}

function fail(what: string, hint: string, code = 'INVALID_SPEC'): PodshellError {
  return new PodshellError(what, { hint, code, exitCode: 2 })
}

function real(p: string): string {
  try {
    return realpathSync(p)
  } catch {
    return p
  }
}

/**
 * Turns a validated spec into the runtime's CreateOptions. Reads the filesystem (existence,
 * realpaths, the marker scan) and creates `<claude_dir>/projects` if missing; starts nothing.
 * Throws a one-line PodshellError naming the spec key on any refusal.
 */
export async function specToCreateOptions(spec: Spec, callerEnv: Env, ctx: SpecContext): Promise<CreateOptions> {
  const home = homeDir(callerEnv)
  const type = spec.session_type
  const projMode: MountMode = type === 'development' ? 'rw' : 'ro'
  const binds: Bind[] = []
  const tmpfsDirs: string[] = []
  const env: Record<string, string> = { ...(spec.env ?? {}) }
  const pipe = pipelineOptions(ctx.config, callerEnv, ctx, spec.allow_sensitive === true)

  // Project trees.
  binds.push({ path: spec.cwd, mode: projMode, kind: 'project', what: 'cwd', workdir: true })
  if (spec.workspace) binds.push({ path: spec.workspace, mode: projMode, kind: 'project', what: 'workspace' })
  ;(spec.projects ?? []).forEach((p, i) => binds.push({ path: p, mode: projMode, kind: 'project', what: `projects[${i}]` }))
  const cloneDir = normalizePath(spec.devaiflow?.clone_dir ?? join(callerEnv.XDG_CACHE_HOME?.startsWith('/') ? callerEnv.XDG_CACHE_HOME : join(home, '.cache'), 'devaiflow', 'clones'))
  ;(spec.temp_clones ?? []).forEach((p, i) => {
    if (!isWithin(real(p), real(cloneDir)) || normalizePath(real(p)) === normalizePath(real(cloneDir))) {
      throw fail(`spec temp_clones[${i}] ${p} is not inside the DevAIFlow clone dir ${cloneDir}`, 'temp clones live under $XDG_CACHE_HOME/devaiflow/clones (or devaiflow.clone_dir)')
    }
    binds.push({ path: p, mode: projMode, kind: 'clone', what: `temp_clones[${i}]` })
  })
  const projectRoots = binds.map(b => real(b.path))
  ;(spec.mounts ?? []).forEach((m, i) => {
    if (m.mode === 'rw' && projMode === 'ro') {
      const r = real(m.path)
      if (projectRoots.some(p => isWithin(r, p) || isWithin(p, r))) {
        throw fail(`spec mounts[${i}] ${m.path}: a read-write mount overlapping the project in a ${type} session`, `${type} sessions keep the project read-only; use a development session to edit code`)
      }
    }
    binds.push({ path: m.path, mode: m.mode, kind: 'extra', what: `mounts[${i}]` })
  })

  // Claude Code's config dir: conversations read-write, configuration read-only, secrets never.
  if (spec.claude_config_dir) {
    const c = normalizePath(spec.claude_config_dir)
    if (!isDir(c)) throw fail(`spec claude_config_dir ${c} is not a directory`, 'pass $CLAUDE_CONFIG_DIR or ~/.claude of the host')
    const projects = join(c, 'projects')
    // Checked before creating anything: a claude_config_dir pointing into ~/.ssh must not get a projects/ dir.
    const early = checkMount(projects, home, pipe.sensitive)
    if (early) throw fail(`refusing to mount spec claude_config_dir (projects/): ${early}`, 'pass $CLAUDE_CONFIG_DIR or ~/.claude of the host', 'SENSITIVE_PATH')
    // Only this session's projects' directories (claude-data.ts): other projects' transcripts and
    // auto-memory are neither readable nor writable; memory/ is read-only outside development.
    const sessionPaths = [spec.cwd, ...(spec.workspace ? [spec.workspace] : []), ...(spec.projects ?? []), ...(spec.temp_clones ?? [])]
    try {
      mkdirSync(projects, { recursive: true, mode: 0o700 })
      for (const b of claudeDataBinds(c, sessionPaths, type)) binds.push({ ...b, kind: 'claude' })
    } catch (e) {
      throw fail(`cannot create ${projects} or a project directory in it (${(e as NodeJS.ErrnoException).code ?? 'error'})`, 'check the permissions of the Claude config dir')
    }
    for (const item of CLAUDE_READ_ONLY) {
      const p = join(c, item)
      if (existsSync(p)) binds.push({ path: p, mode: 'ro', kind: 'claude', what: `claude_config_dir (${item})` })
    }
    // Under $HOME the sandbox's own writable home is the parent; elsewhere it needs a scratch dir.
    if (!isWithin(c, normalizePath(home))) tmpfsDirs.push(c)
    if (c !== join(normalizePath(home), '.claude')) env.CLAUDE_CONFIG_DIR = c
  }

  // DevAIFlow's own directories, so `daf note`, `daf jira create` (which renames the session) and
  // `daf info` work inside against the same files.
  const readOnlyExtra: string[] = []
  if (spec.devaiflow) {
    const d = spec.devaiflow
    const data = normalizePath(d.data_dir)
    const cfg = normalizePath(d.config_dir)
    binds.push({ path: data, mode: 'rw', kind: 'devaiflow', what: 'devaiflow.data_dir' })
    if (data === cfg) {
      env.DEVAIFLOW_HOME = data
      for (const f of DEVAIFLOW_CONFIG_FILES) if (existsSync(join(data, f))) readOnlyExtra.push(join(data, f))
    } else {
      binds.push({ path: cfg, mode: 'ro', kind: 'devaiflow', what: 'devaiflow.config_dir' })
      Object.assign(env, xdgFor('devaiflow.data_dir', data, 'XDG_DATA_HOME', join(home, '.local', 'share')))
      Object.assign(env, xdgFor('devaiflow.config_dir', cfg, 'XDG_CONFIG_HOME', join(home, '.config')))
    }
    if (d.state_dir) {
      const st = normalizePath(d.state_dir)
      binds.push({ path: st, mode: 'rw', kind: 'devaiflow', what: 'devaiflow.state_dir' })
      if (data !== cfg) Object.assign(env, xdgFor('devaiflow.state_dir', st, 'XDG_STATE_HOME', join(home, '.local', 'state')))
    }
    if (basename(cloneDir) === 'clones' && basename(dirname(cloneDir)) === 'devaiflow') {
      const xdgCache = dirname(dirname(cloneDir))
      if (xdgCache !== join(normalizePath(home), '.cache')) env.XDG_CACHE_HOME = xdgCache
    }
  }

  // Every source exists; then THE mount pipeline (src/sandbox/mount-pipeline.ts): not sensitive,
  // not under a .ai-read-deny marker, marked dirs masked, read-write source trees protected.
  pipe.sensitiveByKey = true
  pipe.sensitiveHint = spec.allow_sensitive ? 'this path is never mountable' : 'mount only the project directories (allow_sensitive permits secret paths where the enterprise config allows it)'
  for (const b of binds) {
    if (!existsSync(b.path)) throw fail(`spec ${b.what} ${b.path} does not exist`, 'create it or fix the path')
    if (b.workdir && !isDir(b.path)) throw fail(`spec cwd ${b.path} is not a directory`, 'cwd must be a directory')
    checkTreeSource(treeOf(b), pipe)
  }

  // Same path twice: fine when the modes agree; a same-mode path inside another is redundant.
  const kept = dedupeBinds(binds)
  const secured = await secureTrees(kept.map(treeOf), pipe)
  const masks = new Set<string>(secured.masks)
  const readOnly = new Set<string>([...readOnlyExtra, ...secured.readOnly])

  // Environment: explicit values, pass-through names, daf variables.
  // env_pass values travel apart from `env`: the runtime hands them to podman at create and never
  // stores them (src/sandbox/description.ts).
  const passEnv: Record<string, string> = {}
  for (const k of spec.env_pass ?? []) {
    const v = callerEnv[k]
    if (v === undefined) continue
    const r = envValue.safeParse(v)
    if (!r.success) throw fail(`spec env_pass ${k}: the caller's value ${r.error.issues[0]!.message}`, 'fix the variable in the environment daf runs in')
    passEnv[k] = v
  }
  if (spec.daf) {
    if (spec.daf.in_session !== false) env.DEVAIFLOW_IN_SESSION = '1'
    if (spec.daf.session_name) {
      env.DAF_SESSION_NAME = spec.daf.session_name
      env.CS_SESSION_NAME = spec.daf.session_name
    }
    if (spec.daf.command) env.DAF_COMMAND = spec.daf.command
    if (spec.daf.agent_session_id) env.AI_AGENT_SESSION_ID = spec.daf.agent_session_id
  }

  const labels: Record<string, string> = { ...(spec.labels ?? {}), [SESSION_TYPE_LABEL]: type }
  if (spec.daf?.session_name) labels[SESSION_LABEL] = spec.daf.session_name

  const { policyFile, policyText } = resolveSpecPolicy(spec, ctx)

  const workdir = normalizePath(spec.cwd)
  const mounts: MountSpec[] = kept
    .filter(b => !(normalizePath(b.path) === workdir && b.mode === projMode))
    .map(b => ({ source: normalizePath(b.path), target: normalizePath(b.path), mode: b.mode }))
  for (const p of [...readOnly].sort()) {
    if (!mounts.some(m => m.target === p)) mounts.push({ source: p, target: p, mode: 'ro' })
  }
  mounts.sort((a, b) => a.target.length - b.target.length || (a.target < b.target ? -1 : 1))

  return {
    name: spec.name,
    image: spec.image ?? ctx.config.image,
    workdir,
    workdirMode: projMode,
    mounts,
    env,
    ...(Object.keys(passEnv).length ? { passEnv } : {}),
    labels,
    detach: ctx.detach ?? false,
    keep: ctx.keep ?? true,
    tty: spec.tty,
    cpu: ctx.config.resources.cpu,
    memory: ctx.config.resources.memory,
    command: spec.argv,
    policyFile,
    policyText,
    providers: spec.providers ?? [],
    sessionType: type,
    allowSensitive: spec.allow_sensitive === true,
    seccompProfile: ctx.config.seccompProfile,
    masks: [...masks].sort(),
    tmpfsDirs,
    ...(spec.allow_sockets ? { allowSockets: spec.allow_sockets.map(normalizePath) } : {}),
  }
}

/** The pipeline's inputs from the effective configuration (sensitive paths, scan bounds). */
export function pipelineOptions(eff: EffectiveConfig, env: Env, dirs: { podshellDataDir: string; podshellConfigDir: string; uid?: number | undefined }, allowSensitive: boolean): PipelineOptions {
  return {
    home: homeDir(env),
    sensitive: {
      podshellDataDir: dirs.podshellDataDir,
      podshellConfigDir: dirs.podshellConfigDir,
      runtimeDir: env.XDG_RUNTIME_DIR,
      uid: dirs.uid ?? process.getuid?.(),
      extra: eff.sensitivePaths,
      allowSensitive,
    },
    scan: eff.readDenyScan,
  }
}

function treeOf(b: Bind): Tree {
  return { path: b.path, mode: b.mode, kind: b.kind === 'claude' || b.kind === 'devaiflow' ? 'data' : 'source', what: `spec ${b.what}` }
}

/**
 * DevAIFlow finds split dirs as `$XDG_*_HOME/devaiflow`. The sandbox's $HOME is the host's home
 * path, so the default resolves by itself; a non-default location needs the variable. A dir not
 * named `devaiflow` cannot be expressed that way (only $DEVAIFLOW_HOME, the unified layout, can).
 */
function xdgFor(what: string, dir: string, variable: string, def: string): Record<string, string> {
  if (basename(dir) !== 'devaiflow') {
    throw fail(`spec ${what} ${dir} does not end in /devaiflow, so DevAIFlow inside the sandbox could not find it`, 'use the XDG layout (…/devaiflow) or the unified layout (data_dir == config_dir, $DEVAIFLOW_HOME)')
  }
  const parent = dirname(dir)
  return parent === normalizePath(def) ? {} : { [variable]: parent }
}

function dedupeBinds(binds: Bind[]): Bind[] {
  const out: Bind[] = []
  const sorted = [...binds].sort((a, b) => real(a.path).length - real(b.path).length)
  for (const b of sorted) {
    const r = real(b.path)
    const same = out.find(o => real(o.path) === r)
    if (same) {
      if (same.mode !== b.mode) throw fail(`spec ${b.what} ${b.path} is also ${same.what} with another mode (${same.mode} vs ${b.mode})`, 'give each path once')
      if (b.workdir) same.workdir = true
      continue
    }
    if (out.some(o => o.mode === b.mode && isWithin(r, real(o.path)))) {
      // Covered by a same-mode parent mount; the workdir flag still matters for the runtime.
      continue
    }
    out.push({ ...b })
  }
  return out
}

/**
 * Which policy the session starts with: spec.policy, else the rendered template, else
 * `<policy_dir>/<session_type>.yaml`, else the built-in session-type policy. With an enterprise
 * (locked) policy_dir only that dir is consulted. Fails closed: a named policy that cannot be read
 * is an error, and so is a session type with no policy anywhere.
 */
export function resolveSpecPolicy(spec: Spec, ctx: SpecContext): { policyFile?: string; policyText?: string } {
  if (spec.policy) return { policyFile: spec.policy, policyText: readPolicyText(spec.policy, 'spec policy') }
  if (spec.template) return { policyText: renderTemplate(spec.session_type, templateParams(spec.template)) }
  return sessionTypePolicy(spec.session_type, ctx.config, ctx.builtinPolicyDir)
}

/**
 * The policy a session type starts with when none is named: `<policy_dir>/<type>.yaml`, else the
 * built-in one (not consulted when the enterprise locks policy_dir). Used by `--spec` and by
 * `sandbox create --session-type`. Fails closed when there is none.
 */
export function sessionTypePolicy(type: SessionType, config: Pick<EffectiveConfig, 'policyDir' | 'policyDirLocked'>, builtinDir?: string): { policyFile: string; policyText: string } {
  const name = `${type}.yaml`
  const candidates: string[] = []
  if (config.policyDir) candidates.push(join(config.policyDir, name))
  if (!config.policyDirLocked) candidates.push(join(builtinDir ?? builtinPolicyDir(), name))
  for (const c of candidates) {
    if (existsSync(c)) return { policyFile: c, policyText: readPolicyText(c, 'policy') }
  }
  throw fail(`no policy for session type ${type}: looked for ${candidates.join(', ')}`, config.policyDirLocked ? 'ask your administrator to add it to the locked policy_dir' : 'pass a policy, or reinstall podshell')
}

function readPolicyText(p: string, what: string): string {
  let st
  try {
    st = statSync(p)
  } catch (e) {
    throw fail(`${what} ${p} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, 'pass an existing policy file')
  }
  if (!st.isFile()) throw fail(`${what} ${p} is not a file`, 'pass a policy YAML file')
  if (st.size > MAX_POLICY_BYTES) throw fail(`${what} ${p} is larger than 256 KiB`, 'a policy is at most 256 KiB')
  return readFileSync(p, 'utf8')
}

// ───────────────────────────── the whole launch ─────────────────────────────

export interface SpecLaunch {
  options: CreateOptions
  policy: Policy
  warnings: string[]
}

/**
 * Spec text → CreateOptions ready for the runtime, with the policy parsed and the enterprise rules
 * applied (sensitive mounts, seccomp, images, read-only workdir, locked policy_dir, network
 * ceiling). The runtime validates the policy text again when it stores it.
 */
export async function prepareSpecLaunch(
  text: string,
  source: string,
  callerEnv: Env,
  opts: { keep?: boolean; detach?: boolean; builtinPolicyDir?: string; load?: LoadOptions } = {},
): Promise<SpecLaunch> {
  const spec = parseSpec(text, source)
  const loaded = loadEffectiveConfig(callerEnv, opts.load)
  const options = await specToCreateOptions(spec, callerEnv, {
    config: loaded.effective,
    podshellDataDir: dataDir(callerEnv),
    podshellConfigDir: configDir(callerEnv),
    builtinPolicyDir: opts.builtinPolicyDir,
    keep: opts.keep,
    detach: opts.detach,
  })
  const { policy, warnings } = parsePolicyText(options.policyText!, options.policyFile ?? `template:${spec.session_type}`)
  enforceEnterprise(options, policy, loaded.effective)
  return { options: markSecured(options), policy, warnings: [...loaded.warnings, ...warnings] }
}

// ───────────────────────────── CLI glue for `sandbox create --spec` ─────────────────────────────

/** Adds `--spec FILE|-` to `sandbox create` (the lead wires it through SandboxCliHooks.extendCreate). */
export function addSpecOption(cmd: Command): void {
  cmd.option('--spec <file>', 'DevAIFlow launch spec (JSON; "-" reads stdin): the whole sandbox description (`podshell schema spec`)')
}

/** Flags that `--spec` replaces: giving them too is an error rather than a silent override. */
const SPEC_EXCLUSIVE = ['name', 'from', 'workdir', 'policy', 'cpu', 'memory'] as const
const SPEC_EXCLUSIVE_LISTS = ['mount', 'env', 'label', 'provider', 'allowSocket'] as const

/**
 * For SandboxCliHooks.resolveCreate: returns the CreateOptions for `--spec`, or undefined when the
 * command line has no --spec (the caller then uses its flag path). Warnings go to `note`.
 */
export async function createOptionsFromSpecFlag(
  flags: { spec?: unknown; keep: boolean; detach: boolean; [k: string]: unknown },
  command: string[],
  env: Env,
  note: (msg: string) => void,
): Promise<CreateOptions | undefined> {
  if (typeof flags.spec !== 'string') return undefined
  for (const f of SPEC_EXCLUSIVE) {
    if (flags[f] !== undefined) throw fail(`--spec and --${f} cannot be combined`, 'the spec carries the whole sandbox description; put the value in the spec')
  }
  for (const f of SPEC_EXCLUSIVE_LISTS) {
    if (Array.isArray(flags[f]) && (flags[f] as unknown[]).length) throw fail(`--spec and --${f.replace(/[A-Z]/g, c => '-' + c.toLowerCase())} cannot be combined`, 'the spec carries the whole sandbox description; put the value in the spec')
  }
  if (command.length) throw fail('--spec and a command cannot be combined', 'the agent command is the spec\'s argv')
  const { text, source } = readSpecSource(flags.spec)
  const launch = await prepareSpecLaunch(text, source, env, { keep: flags.keep, detach: flags.detach })
  for (const w of launch.warnings) note(`warning: ${w}`)
  return launch.options
}

// ───────────────────────────── the same rules for plain `sandbox create` flags ─────────────────────────────

/**
 * Applies podshell's mount rules and the enterprise configuration to CreateOptions built from
 * command-line flags (`--workdir`, `--mount`, `--policy`), so `podshell sandbox create` without a
 * spec is held to the same rules as a DevAIFlow launch:
 *   - config defaults (image, cpu, memory, mandatory seccomp profile, default session type);
 *   - sensitive paths refused for the workdir and every mount (symlinks resolved);
 *   - `.ai-read-deny`: mounts below a marker refused, marked dirs inside masked (fails closed);
 *   - read-write trees: git hooks/config and agent settings read-only (see devProtections);
 *   - the enterprise rules (enforceEnterprise) against the parsed policy.
 */
export async function secureCreateOptions(opts: CreateOptions, env: Env, load?: LoadOptions): Promise<{ options: CreateOptions; warnings: string[] }> {
  const loaded = loadEffectiveConfig(env, load)
  const eff = loaded.effective
  const o = withConfigPolicy(applyEffectiveDefaults(opts, eff), eff)
  const pipe = pipelineOptions(eff, env, { podshellDataDir: dataDir(env), podshellConfigDir: configDir(env) }, o.allowSensitive === true)
  const trees: Tree[] = []
  if (o.workdir !== undefined) trees.push({ path: o.workdir, mode: o.workdirMode ?? 'rw', what: '--workdir' })
  for (const m of o.mounts) trees.push({ path: m.source, mode: m.mode, what: '--mount' })
  const sec = await secureTrees(trees, pipe)
  const masks = new Set([...(o.masks ?? []), ...sec.masks])
  const mounts = [...o.mounts]
  for (const p of sec.readOnly) if (!mounts.some(x => x.target === p)) mounts.push({ source: p, target: p, mode: 'ro' })
  const options: CreateOptions = { ...o, mounts, masks: [...masks].sort() }
  let policy: Policy | undefined
  const warnings = [...loaded.warnings]
  if (options.policyText !== undefined) {
    const r = parsePolicyText(options.policyText, options.policyFile ?? 'policy')
    policy = r.policy
    warnings.push(...r.warnings)
  }
  enforceEnterprise(options, policy, eff)
  return { options: markSecured(options), warnings }
}

/**
 * The policy a sandbox starts with when the caller named none: its session type's
 * (`<policy_dir>/<type>.yaml`, else built in), else the configured default_policy, else none
 * (podshell's restrictive default, deny all egress).
 */
function withConfigPolicy(o: CreateOptions, eff: EffectiveConfig): CreateOptions {
  if (o.policyText !== undefined) return o
  if (o.sessionType !== undefined) return { ...o, ...sessionTypePolicy(o.sessionType, eff) }
  if (eff.defaultPolicy) {
    const file = eff.policyDir && !eff.defaultPolicy.startsWith('/') ? join(eff.policyDir, eff.defaultPolicy) : eff.defaultPolicy
    return { ...o, policyFile: file, policyText: readPolicyText(file, 'default_policy') }
  }
  return o
}

// ───────────────────────────── mount points inside the sandbox home ─────────────────────────────

/**
 * Mount points the runtime must create, AS THE USER, inside the sandbox's home directory before
 * `podman run`. The agent's $HOME is the host's home path backed by `<data>/sandboxes/<name>/home`;
 * every bind target below $HOME (~/.claude/projects, ~/src/proj, ~/.local/share/devaiflow …) needs
 * its parents there. Left to the OCI runtime, they are created owned by a subordinate uid
 * (measured: 462144 on this host), so the agent cannot write in ~/.claude (Claude Code's todos,
 * statsig, .claude.json) and the user cannot delete the sandbox home without `podman unshare`.
 * Returns paths relative to `home`: directories to `mkdir -p`, and files to create empty (targets
 * whose source is a file, e.g. ~/.claude/settings.json).
 */
export function homeMountpoints(home: string, o: Pick<CreateOptions, 'workdir' | 'mounts' | 'masks' | 'tmpfsDirs'>): { dirs: string[]; files: string[] } {
  const h = normalizePath(home)
  const dirs = new Set<string>()
  const files = new Set<string>()
  const add = (target: string, isFile: boolean) => {
    const t = normalizePath(target)
    if (!isWithin(t, h) || t === h) return
    const rel = t.slice(h.length + 1)
    const parts = rel.split('/')
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'))
    if (isFile) files.add(rel)
    else dirs.add(rel)
  }
  if (o.workdir) add(o.workdir, false)
  for (const m of o.mounts) add(m.target, existsSync(m.source) && !isDir(m.source))
  for (const m of o.masks ?? []) add(m, false)
  for (const d of o.tmpfsDirs ?? []) add(d, false)
  return { dirs: [...dirs].sort(), files: [...files].sort() }
}
