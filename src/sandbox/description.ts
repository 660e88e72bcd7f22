import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { z } from 'zod'
import { PodshellError } from '../errors.js'
import { envKey, envValue, hostPath, objectName, sandboxName } from '../util/validate.js'
import { sandboxDir, sandboxHomeDir } from '../config/paths.js'
import { writeFileAtomic } from '../util/fs.js'
import type { MountSpec } from './types.js'
import { readLegacyFlags } from '../podman/legacy-flags.js'

/**
 * What a sandbox's agent container IS, stored in `<data>/sandboxes/<name>/agent.json`: the
 * description `sandbox restart` re-creates the agent container from. Never podman arguments: the
 * container is rendered again by the running release (src/sandbox/containers.ts →
 * src/podman/container-spec.ts), so a newer release's hardening and limits apply to a restarted
 * sandbox.
 *
 * No secret value is stored here. `env` holds configuration values only (--env K=V, a spec's `env`
 * and the DevAIFlow variables); variables copied from the caller's environment (a spec's
 * `env_pass`: ANTHROPIC_API_KEY, GITHUB_TOKEN …) are stored by NAME in `callerEnv`. Their values
 * reach podman through its own environment at create, and at restart they are read again from the
 * environment of the process that restarts the sandbox (a name missing there is left unset and
 * named in a warning). Provider credentials are podman secrets, referenced by name at re-creation.
 */
/** The main process of a sandbox with no command of its own: it idles, and `connect` opens a shell. */
export const IDLE_MAIN: readonly string[] = ['sleep', 'infinity']

export function isIdleMain(main: readonly string[]): boolean {
  return main.length === IDLE_MAIN.length && main.every((a, i) => a === IDLE_MAIN[i])
}

export interface AgentDescription {
  version: 2
  name: string
  image: string
  /** The container's main process (`sleep infinity` for a kept sandbox). */
  main: string[]
  /** The agent's $HOME inside (the host's home path), backed by the sandbox home dir. */
  home: string
  uid: number
  gid: number
  workdir: string | null
  mounts: MountSpec[]
  masks: string[]
  tmpfsDirs: string[]
  seccomp: string
  resources: { cpus?: number; memory?: string; pids?: number }
  env: Record<string, string>
  callerEnv: string[]
  term?: string
  providers: string[]
  /** How provider credentials reach the agent; absent = placeholder (issue 12). */
  credentialMode?: 'placeholder' | 'env'
  /** Created with allow_sensitive (restart checks the mounts again with the same permission). */
  allowSensitive?: boolean
}

/**
 * The description is read back from disk, and the data dir is also mounted into the gateway
 * container (which parses untrusted traffic): it is validated like any outside input before a
 * restart renders it, and its mounts pass the sensitive-path check again (runtime.restart).
 */
const MountSchema = z.strictObject({ source: hostPath, target: hostPath, mode: z.enum(['ro', 'rw']) }).describe('A bind mount')
export const AgentDescriptionSchema = z
  .strictObject({
    version: z.literal(2).describe('Format version'),
    name: sandboxName,
    image: z.string().regex(/^[a-z0-9][a-z0-9._\-/:@]{0,254}$/i).refine(r => !r.includes('..') && !r.includes('//')).describe('Image reference'),
    main: z.array(z.string().max(128 * 1024).refine(v => !v.includes('\0'))).min(1).max(4096).describe('Main process argv'),
    home: hostPath.describe("The agent's $HOME inside"),
    uid: z.number().int().min(0).max(2 ** 32 - 2).describe('uid the agent runs as'),
    gid: z.number().int().min(0).max(2 ** 32 - 2).describe('gid the agent runs as'),
    workdir: hostPath.nullable().describe('Working directory inside (null: the home)'),
    mounts: z.array(MountSchema).max(4096).describe('Bind mounts (with the mount-guard pins and socket masks)'),
    masks: z.array(hostPath).max(4096).describe('Hidden paths (empty read-only tmpfs)'),
    tmpfsDirs: z.array(hostPath).max(64).describe('Writable scratch parents'),
    seccomp: hostPath.describe('Seccomp profile path'),
    resources: z
      .strictObject({ cpus: z.number().positive().max(1024).optional(), memory: z.string().regex(/^\d+$/).optional(), pids: z.number().int().min(32).max(4_194_304).optional() })
      .describe('Requested cgroup limits'),
    env: z.record(envKey, envValue).describe('Configuration values'),
    callerEnv: z.array(envKey).max(256).describe('Names whose values come from the caller at create/restart'),
    term: z.string().regex(/^[\w.+-]{1,64}$/).optional().describe('TERM'),
    providers: z.array(objectName).max(32).describe('Attached providers'),
    credentialMode: z.enum(['placeholder', 'env']).optional().describe('How provider credentials reach the agent (default placeholder)'),
    allowSensitive: z.boolean().optional().describe('Created with allow_sensitive'),
  })
  .describe("A sandbox's agent container, as stored in agent.json")

/** The format written by releases before the typed spec: argv and env values (secrets included). */
interface LegacyAgentSpec {
  flags: string[]
  env?: Record<string, string>
  image: string
  main: string[]
  providers: string[]
}

export const agentDescriptionPath = (data: string, name: string) => join(sandboxDir(data, name), 'agent.json')

export function writeAgentDescription(data: string, d: AgentDescription): void {
  writeFileAtomic(agentDescriptionPath(data, d.name), JSON.stringify(d) + '\n')
}

/**
 * Reads agent.json; a file in the legacy shape is converted (see fromLegacy) and rewritten in the
 * new one, so the plain-text env values it held are gone after the first restart.
 */
export function readAgentDescription(data: string, name: string): AgentDescription | undefined {
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(agentDescriptionPath(data, name), 'utf8'))
  } catch {
    return undefined
  }
  if (!raw || typeof raw !== 'object') return undefined
  const r = raw as Partial<AgentDescription> & Partial<LegacyAgentSpec>
  const d = r.version === 2 ? r : Array.isArray(r.flags) && typeof r.image === 'string' ? fromLegacy(data, name, r as LegacyAgentSpec) : undefined
  if (d === undefined) return undefined
  const v = AgentDescriptionSchema.safeParse(d)
  if (!v.success || v.data.name !== name) {
    const why = v.success ? `it names sandbox ${v.data.name}` : `${v.error.issues[0]!.path.join('.')}: ${v.error.issues[0]!.message}`
    throw new PodshellError(`the stored description of sandbox ${name} is invalid (${why})`, { hint: `recreate the sandbox; ${agentDescriptionPath(data, name)} was changed outside podshell`, code: 'STATE' })
  }
  return v.data as AgentDescription
}

/** readAgentDescription for display (list/get): an invalid file shows as no description. */
export function peekAgentDescription(data: string, name: string): AgentDescription | undefined {
  try {
    return readAgentDescription(data, name)
  } catch {
    return undefined
  }
}

/** Variables the runtime sets itself at render time; never part of a description's env. */
const RUNTIME_SET = /^(HOME|PODSHELL_[A-Z_]+|TERM|HTTPS?_PROXY|https?_proxy|ALL_PROXY|all_proxy|NO_PROXY|no_proxy|NODE_USE_ENV_PROXY)$/

/**
 * A legacy agent.json → description. Reads the podman flags the old release wrote (its mounts,
 * masks, scratch dirs, seccomp profile, limits, workdir, user, env). Values the old file held for
 * `--env NAME` entries cannot be told apart (an --env value or an env_pass secret), so none is
 * kept: those names become caller variables, read again from the restarting process's
 * environment (the warning names the ones missing there). The file is rewritten in the new shape.
 */
export function fromLegacy(data: string, name: string, old: LegacyAgentSpec): AgentDescription {
  const d: AgentDescription = {
    version: 2, name, image: old.image, main: old.main, home: '', uid: 0, gid: 0, workdir: null,
    mounts: [], masks: [], tmpfsDirs: [], seccomp: '', resources: {}, env: {}, callerEnv: [], providers: old.providers ?? [],
  }
  const homeSrc = sandboxHomeDir(data, name)
  const f = readLegacyFlags(old.flags)
  for (const m of f.mounts) {
    if (m.type === 'bind') {
      if (m.source === homeSrc) d.home = m.target
      else d.mounts.push({ source: m.source, target: m.target, mode: m.readOnly ? 'ro' : 'rw' })
    } else if (m.readOnly) d.masks.push(m.target)
    else d.tmpfsDirs.push(m.target)
  }
  if (f.seccomp !== undefined) d.seccomp = f.seccomp
  if (f.cpus !== undefined) d.resources.cpus = f.cpus
  if (f.memory !== undefined) d.resources.memory = f.memory
  if (f.workdir !== undefined) d.workdir = f.workdir
  if (f.user) {
    d.uid = f.user.uid
    d.gid = f.user.gid
  }
  for (const val of f.env) {
    const eq = val.indexOf('=')
    const k = eq < 0 ? val : val.slice(0, eq)
    if (RUNTIME_SET.test(k)) continue
    // `--env NAME=VALUE` in argv was configuration (podman-read names only); `--env NAME` had
    // its value in the file's env map, where --env values and env_pass secrets are mixed.
    // Those become caller variables: the value is dropped, and re-read from the environment
    // of whoever restarts the sandbox.
    if (eq >= 0) d.env[k] = val.slice(eq + 1)
    else d.callerEnv.push(k)
  }
  // The old release used the home as the workdir when none was given.
  if (d.workdir === d.home) d.workdir = null
  return d
}
