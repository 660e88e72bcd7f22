import { existsSync, mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PodshellError } from '../errors.js'
import { cacheDir, configDir, dataDir, homeDir, type Env } from '../config/paths.js'
import { applyEffectiveDefaults, enforceEnterprise, loadEffectiveConfig, type EffectiveConfig, type LoadOptions } from '../config/enterprise.js'
import { MAX_POLICY_BYTES, type Policy } from '../policy/schema.js'
import { parsePolicyText } from '../policy/parse.js'
import { renderTemplate } from '../policy/templates.js'
import { envValue, normalizePath } from '../util/validate.js'
import { checkMount, isWithin } from './sensitive.js'
import { checkTreeSource, isDir, markSecured, secureTrees, type PipelineOptions, type Tree } from './mount-pipeline.js'
import { claudeDataBinds } from './claude-data.js'
import { type CreateOptions, type MountMode, type MountSpec, type SessionType } from './types.js'

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

export { DAF_COMMANDS, MAX_SPEC_BYTES, SESSION_LABEL, SESSION_TYPE_LABEL, SpecSchema, specJsonSchema, parseSpec, readSpecSource, type Spec } from './spec-schema.js'
import { parseSpec, templateParams, SESSION_LABEL, SESSION_TYPE_LABEL, type Spec } from './spec-schema.js'

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
  const tmpfsDirs: string[] = []
  const env: Record<string, string> = { ...(spec.env ?? {}) }
  const pipe = pipelineOptions(ctx.config, callerEnv, ctx, spec.allow_sensitive === true)

  // Project trees, temp clones and extra mounts; Claude's config dir; DevAIFlow's own dirs.
  const cloneDir = normalizePath(spec.devaiflow?.clone_dir ?? join(callerEnv.XDG_CACHE_HOME?.startsWith('/') ? callerEnv.XDG_CACHE_HOME : join(home, '.cache'), 'devaiflow', 'clones'))
  const acc: SpecAcc = { binds: projectBinds(spec, projMode, cloneDir), env, tmpfsDirs }
  const binds = acc.binds
  if (spec.claude_config_dir) claudeConfigBinds(spec, spec.claude_config_dir, home, pipe, acc)
  const readOnlyExtra = spec.devaiflow ? devaiflowBinds(spec.devaiflow, home, cloneDir, acc) : []

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

  // Environment: explicit values, pass-through names (kept apart: never stored), daf variables.
  const passEnv = specEnvironment(spec, callerEnv, env)

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
    ...(spec.credential_mode === 'env' ? { credentialMode: 'env' as const } : {}),
    sessionType: type,
    allowSensitive: spec.allow_sensitive === true,
    seccompProfile: ctx.config.seccompProfile,
    masks: [...masks].sort(),
    tmpfsDirs,
    ...(spec.allow_sockets ? { allowSockets: spec.allow_sockets.map(normalizePath) } : {}),
  }
}

/** What the spec's parts add to: mounts, environment, scratch dirs. */
interface SpecAcc {
  binds: Bind[]
  env: Record<string, string>
  tmpfsDirs: string[]
}

/** What the spec's project-shaped entries mount: cwd, workspace, projects, temp clones, mounts. */
function projectBinds(spec: Spec, projMode: MountMode, cloneDir: string): Bind[] {
  const type = spec.session_type
  const binds: Bind[] = []
  binds.push({ path: spec.cwd, mode: projMode, kind: 'project', what: 'cwd', workdir: true })
  if (spec.workspace) binds.push({ path: spec.workspace, mode: projMode, kind: 'project', what: 'workspace' })
  ;(spec.projects ?? []).forEach((p, i) => binds.push({ path: p, mode: projMode, kind: 'project', what: `projects[${i}]` }))
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

  return binds
}

/** Claude Code's config dir: conversations read-write, configuration read-only, secrets never. */
function claudeConfigBinds(spec: Spec, dir: string, home: string, pipe: PipelineOptions, acc: SpecAcc): void {
  const { binds, env, tmpfsDirs } = acc
  const type = spec.session_type
  const c = normalizePath(dir)
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

/**
 * DevAIFlow's own directories, so `daf note`, `daf jira create` (which renames the session) and
 * `daf info` work inside against the same files. Returns config files to keep read-only.
 */
function devaiflowBinds(d: NonNullable<Spec['devaiflow']>, home: string, cloneDir: string, acc: SpecAcc): string[] {
  const { binds, env } = acc
  const readOnlyExtra: string[] = []
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
  return readOnlyExtra
}

/** env_pass values (returned apart: the runtime never stores them) and the daf variables (into env). */
function specEnvironment(spec: Spec, callerEnv: Env, env: Record<string, string>): Record<string, string> {
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
  return passEnv
}

/** The pipeline's inputs from the effective configuration (sensitive paths, scan bounds). */
export function pipelineOptions(eff: EffectiveConfig, env: Env, dirs: { podshellDataDir: string; podshellConfigDir: string; uid?: number | undefined }, allowSensitive: boolean): PipelineOptions {
  return {
    home: homeDir(env),
    sensitive: {
      podshellDataDir: dirs.podshellDataDir,
      podshellConfigDir: dirs.podshellConfigDir,
      podshellCacheDir: cacheDir(env),
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
