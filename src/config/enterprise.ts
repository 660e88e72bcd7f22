import { z } from 'zod'
import { accessSync, constants, existsSync, realpathSync, statSync } from 'node:fs'
import { isAbsolute } from 'node:path'
import { PodshellError } from '../errors.js'
import { SANDBOX_IMAGE } from '../images/names.js'
import { HostPattern, normalizeHostPattern } from '../rules/host-pattern.js'
import { compileGlob } from '../rules/glob.js'
import { isIP } from 'node:net'
import { parseCidr, cidrWithin } from '../rules/ip.js'
import { endpointPorts, PolicySchema, type Endpoint, type NetworkPolicy, type Policy } from '../policy/schema.js'
import { SESSION_TYPES, type CreateOptions, type SessionType } from '../sandbox/types.js'
import { isWithin } from '../sandbox/sensitive.js'
import { homeDir, type Env } from './paths.js'
import { loadExtraCaFiles } from '../tls/pem.js'
import { configFields, configPath, expandConfigPaths, expandHome, loadUserConfig, readYamlConfig, type UserConfig } from './config.js'
import { canonicalJson } from '../util/canonical-json.js'

/**
 * The enterprise configuration: `/etc/podshell/enterprise.yaml`, written by an administrator.
 * It overrides the user's config field by field (enterprise > user, as DevAIFlow's enterprise.json
 * overrides team and user) and adds rules podshell enforces on every sandbox:
 *
 *   required         options that would weaken the sandbox are refused (see RequiredSchema)
 *   policy_dir       LOCKED: a policy file outside it (compared by realpath) is refused
 *   network_ceiling  every endpoint of a user policy must lie within it (tighten-only)
 *   seccomp_profile  the only seccomp profile sandboxes may use
 *   allow_sensitive  whether sensitive host paths (~/.ssh …) may be mounted at all
 *
 * Where the file is (the lock rule):
 *   1. /etc/podshell/enterprise.yaml exists and sets `lock_path: true` → it applies, always.
 *      PODSHELL_ENTERPRISE_CONFIG naming any other file is an ERROR, not silently ignored: a user
 *      must not escape a locked file by pointing the variable elsewhere, and must see why.
 *   2. Otherwise PODSHELL_ENTERPRISE_CONFIG, when set, names the enterprise file (it must exist).
 *      Without lock_path the default file is a default, not a control: an administrator who
 *      means it sets lock_path.
 *   3. Otherwise /etc/podshell/enterprise.yaml applies if it exists; else there is none.
 * A file that exists but cannot be read or parsed is an error (fails closed: an unreadable
 * enterprise file might have been the one that locks). The lock binds podshell as installed; it is
 * only as strong as the user's inability to edit /etc/podshell or run another binary, so podshell
 * warns when the locked file (or a locked policy_dir) is writable by the user.
 */

export const ENTERPRISE_DEFAULT_PATH = '/etc/podshell/enterprise.yaml'
export const ENTERPRISE_ENV = 'PODSHELL_ENTERPRISE_CONFIG'

/** Image allowlist entries: an exact reference, or a prefix ending in "*". */
const imagePattern = z
  .string()
  .max(256)
  .regex(/^[a-z0-9][a-z0-9._\-/:@]*\*?$/i, 'must be an image reference, optionally ending in "*" (prefix match)')

export const RequiredSchema = z
  .strictObject({
    images: z
      .array(imagePattern)
      .max(256)
      .optional()
      .describe('Images sandboxes may run (--from, spec image): exact references or prefixes ending in "*". Absent: any image'),
    read_only_workdir: z
      .array(z.enum(SESSION_TYPES))
      .optional()
      .describe('Session types whose project must be mounted read-only (and whose policy must not set include_workdir: true). Default: [investigation, ticket_creation]'),
    session_type: z.boolean().optional().describe('Every sandbox must name a session type (default false)'),
    default_seccomp: z
      .boolean()
      .optional()
      .describe("Refuse custom seccomp profiles: only podshell's own profile (or seccomp_profile when set) is accepted (default true)"),
  })
  .describe('Options podshell refuses because they weaken the sandbox')

export const EnterpriseConfigSchema = z
  .strictObject({
    ...configFields,
    lock_path: z
      .boolean()
      .optional()
      .describe(`Only honoured in ${ENTERPRISE_DEFAULT_PATH}: when true, ${ENTERPRISE_ENV} cannot point podshell at another enterprise file`),
    required: RequiredSchema.optional(),
    network_ceiling: PolicySchema.shape.network_policies.describe(
      'An OpenShell network_policies block: the widest egress any sandbox may get. Every endpoint of a policy must be covered by a ceiling endpoint (host pattern within, ports within, access no wider, allowed_ips within; binaries within when the ceiling entry lists any)',
    ),
    seccomp_profile: configPath.describe('Seccomp profile every sandbox must use (absolute path or ~/…); any other profile is refused').optional(),
    allow_sensitive: z.boolean().optional().describe('Whether sensitive host paths (~/.aws, ~/.ssh …) may be mounted with allow_sensitive (default false when an enterprise file exists). Sandbox-escape paths (podman socket, $XDG_RUNTIME_DIR) are never mountable'),
    sensitive_paths: z.array(configPath).max(256).optional().describe('More host paths (absolute, or ~/…) treated as sensitive'),
    credentials: z
      .strictObject({
        allow_env_mode: z.boolean().optional().describe('Whether `sandbox create --credential-mode env` (real credential values as env vars) is allowed (default true)'),
      })
      .optional()
      .describe('How provider credentials may reach sandboxes'),
  })
  .describe(`podshell enterprise configuration (${ENTERPRISE_DEFAULT_PATH}); overrides the user configuration`)

export type EnterpriseConfig = z.infer<typeof EnterpriseConfigSchema>

// ───────────────────────────── locating and loading ─────────────────────────────

export interface EnterpriseLoad {
  file: string | undefined
  config: EnterpriseConfig | undefined
  /** Whether the file was reached through the locked default path. */
  locked: boolean
  warnings: string[]
}

export interface LoadOptions {
  /** The enterprise file's default location (tests point it elsewhere; production never does). */
  enterpriseDefaultPath?: string
}

function same(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b)
  } catch {
    return a === b
  }
}

export function loadEnterpriseConfig(env: Env = process.env, opts: LoadOptions = {}): EnterpriseLoad {
  const def = opts.enterpriseDefaultPath ?? ENTERPRISE_DEFAULT_PATH
  const override = env[ENTERPRISE_ENV] || undefined
  if (override !== undefined && !isAbsolute(override)) {
    throw new PodshellError(`${ENTERPRISE_ENV} must be an absolute path, got ${JSON.stringify(override.slice(0, 80))}`, { hint: 'set it to the enterprise YAML file, or unset it', code: 'INVALID_CONFIG', exitCode: 2 })
  }
  const warnings: string[] = []
  const atDefault = readYamlConfig(def, EnterpriseConfigSchema, { optional: true, what: 'enterprise config' })
  if (atDefault?.lock_path) {
    if (override !== undefined && !same(override, def)) {
      throw new PodshellError(`${ENTERPRISE_ENV}=${override} is refused: ${def} sets lock_path: true`, {
        hint: `unset ${ENTERPRISE_ENV}; the enterprise configuration is fixed by your administrator`,
        code: 'ENTERPRISE_LOCKED',
        exitCode: 2,
      })
    }
    warnings.push(...writableWarnings(def, 'the locked enterprise file'))
    return { file: def, config: atDefault, locked: true, warnings }
  }
  if (override !== undefined) {
    const config = readYamlConfig(override, EnterpriseConfigSchema, { optional: false, what: 'enterprise config' })!
    if (config.lock_path && !same(override, def)) warnings.push(`${override}: lock_path has effect only in ${def}`)
    return { file: override, config, locked: false, warnings }
  }
  if (atDefault) return { file: def, config: atDefault, locked: false, warnings }
  return { file: undefined, config: undefined, locked: false, warnings }
}

/** A lock the user can edit is no lock: say so (not an error: a root-run podshell is normal). */
function writableWarnings(path: string, what: string): string[] {
  try {
    const st = statSync(path)
    const mine = process.getuid?.() !== undefined && st.uid === process.getuid?.() && process.getuid?.() !== 0
    let writable = false
    try {
      accessSync(path, constants.W_OK)
      writable = process.getuid?.() !== 0
    } catch {
      writable = false
    }
    if (mine || writable || (st.mode & 0o002) !== 0) return [`${what} ${path} is writable by you: its rules are advisory`]
  } catch {
    // unreadable metadata: the load itself reports real problems
  }
  return []
}

// ───────────────────────────── the effective configuration ─────────────────────────────

export interface EffectiveConfig {
  /** Directory of policies (expanded); locked when it came from the enterprise file. */
  policyDir: string | undefined
  policyDirLocked: boolean
  defaultSessionType: SessionType | undefined
  /** A name in policyDir or an absolute path. */
  defaultPolicy: string | undefined
  image: string | undefined
  resources: { cpu?: string; memory?: string; pids?: number; nproc?: number; tmp_size?: string; var_tmp_size?: string; run_size?: string; log_max_size?: string; disk_reserve?: string }
  runtime: 'auto' | 'crun' | 'runc'
  readDenyScan: { maxDepth: number; timeoutMs: number }
  /** Mandatory seccomp profile (enterprise), expanded. */
  seccompProfile: string | undefined
  /** May sensitive (secret-class) host paths be mounted when a sandbox asks for it? */
  allowSensitive: boolean
  /** Extra sensitive paths (enterprise), expanded. */
  sensitivePaths: string[]
  /** May a sandbox get real credential values as env vars (`--credential-mode env`)? */
  allowEnvCredentials?: boolean
  networkCeiling: Record<string, NetworkPolicy> | undefined
  /** `tls.extra_ca_files`, enterprise then user (expanded, each checked at load). */
  tlsExtraCaFiles: string[]
  required: { images: string[] | undefined; readOnlyWorkdir: SessionType[]; sessionType: boolean; defaultSeccomp: boolean }
  /** The enterprise file in force, if any. */
  enterpriseFile: string | undefined
  userFile: string
}

export interface LoadedConfig {
  user: UserConfig
  enterprise: EnterpriseConfig | undefined
  effective: EffectiveConfig
  warnings: string[]
}

/** Merges user and enterprise settings: for every shared field the enterprise value wins. */
export function mergeConfigs(user: UserConfig, enterprise: EnterpriseConfig | undefined, env: Env, files: { user: string; enterprise?: string | undefined }): EffectiveConfig {
  const u = expandConfigPaths(user, env)
  const e = enterprise ? expandConfigPaths(enterprise, env) : undefined
  const home = homeDir(env)
  const pick = <K extends keyof UserConfig>(k: K): UserConfig[K] => (e && e[k] !== undefined ? e[k] : u[k])
  const scan = { ...u.read_deny_scan, ...e?.read_deny_scan }
  return {
    policyDir: pick('policy_dir'),
    policyDirLocked: e?.policy_dir !== undefined,
    defaultSessionType: pick('default_session_type'),
    defaultPolicy: pick('default_policy'),
    image: pick('image'),
    resources: { ...u.resources, ...e?.resources },
    runtime: pick('runtime') ?? 'auto',
    readDenyScan: { maxDepth: scan.max_depth ?? 32, timeoutMs: scan.timeout_ms ?? 5000 },
    seccompProfile: e?.seccomp_profile !== undefined ? expandHome(e.seccomp_profile, home) : undefined,
    // No enterprise file: the user may opt into sensitive mounts on their own machine.
    allowSensitive: e ? e.allow_sensitive ?? false : true,
    sensitivePaths: (e?.sensitive_paths ?? []).map(p => expandHome(p, home)),
    allowEnvCredentials: e?.credentials?.allow_env_mode ?? true,
    networkCeiling: e?.network_ceiling,
    tlsExtraCaFiles: [...new Set([...(e?.tls?.extra_ca_files ?? []), ...(u.tls?.extra_ca_files ?? [])])],
    required: {
      images: e?.required?.images,
      readOnlyWorkdir: e ? e.required?.read_only_workdir ?? ['investigation', 'ticket_creation'] : [],
      sessionType: e?.required?.session_type ?? false,
      defaultSeccomp: e ? e.required?.default_seccomp ?? true : false,
    },
    enterpriseFile: e ? files.enterprise : undefined,
    userFile: files.user,
  }
}

/**
 * Loads ~/.config/podshell/config.yaml and the enterprise file and merges them. Every error is one
 * line naming the file and the key path (`invalid config FILE: resources.cpu: …`).
 */
export function loadEffectiveConfig(env: Env = process.env, opts: LoadOptions = {}): LoadedConfig {
  const { file: userFile, config: user } = loadUserConfig(env)
  const ent = loadEnterpriseConfig(env, opts)
  const effective = mergeConfigs(user, ent.config, env, { user: userFile, enterprise: ent.file })
  const warnings = [...ent.warnings]
  // A missing or unparsable CA file is an error now, naming it, not a TLS failure later.
  if (effective.tlsExtraCaFiles.length > 0) loadExtraCaFiles(effective.tlsExtraCaFiles)
  if (effective.policyDirLocked && effective.policyDir && existsSync(effective.policyDir)) {
    warnings.push(...writableWarnings(effective.policyDir, 'the locked policy_dir'))
  }
  return { user, enterprise: ent.config, effective, warnings }
}

/** Fills what the command line left open from the effective config (never overrides a given value). */
export function applyEffectiveDefaults(opts: CreateOptions, eff: EffectiveConfig): CreateOptions {
  const sessionType = opts.sessionType ?? eff.defaultSessionType
  return {
    ...opts,
    image: opts.image ?? eff.image,
    cpu: opts.cpu ?? eff.resources.cpu,
    memory: opts.memory ?? eff.resources.memory,
    seccompProfile: opts.seccompProfile ?? eff.seccompProfile,
    sessionType,
    workdirMode: opts.workdirMode ?? (sessionType === undefined ? undefined : sessionType === 'development' ? 'rw' : 'ro'),
  }
}

// ───────────────────────────── enforcement ─────────────────────────────

function refuse(eff: EffectiveConfig, what: string, hint: string): PodshellError {
  return new PodshellError(`refused by the enterprise configuration (${eff.enterpriseFile}): ${what}`, { hint, code: 'ENTERPRISE_REFUSED', exitCode: 2 })
}

function realOr(p: string): string {
  try {
    return realpathSync(p)
  } catch {
    return p
  }
}

function imageAllowed(image: string, patterns: readonly string[]): boolean {
  return patterns.some(p => (p.endsWith('*') ? image.startsWith(p.slice(0, -1)) : image === p))
}

/**
 * A policy file must lie in the locked policy_dir (both compared by realpath, so neither a symlink
 * in the dir pointing out nor a symlink elsewhere pointing in changes the answer: what counts is
 * where the bytes are). No-op when no enterprise policy_dir is set.
 */
export function enforcePolicyFileLocked(policyFile: string | undefined, hasPolicyText: boolean, eff: EffectiveConfig): void {
  if (!eff.enterpriseFile || !eff.policyDirLocked || !eff.policyDir) return
  const dir = eff.policyDir
  if (policyFile === undefined) {
    if (hasPolicyText) {
      throw refuse(eff, `policies must come from the locked policy_dir ${dir}; an inline or template policy is not accepted`, `use a policy file from ${dir}`)
    }
    return
  }
  if (!isWithin(realOr(policyFile), realOr(dir))) {
    throw refuse(eff, `policy ${policyFile} is outside the locked policy_dir ${dir}`, `use a policy file from ${dir}`)
  }
}

/** The network ceiling for a policy (no-op without one). Throws the first violation, with a count. */
export function enforceNetworkCeiling(policy: Pick<Policy, 'network_policies'> | undefined, eff: EffectiveConfig): void {
  if (!eff.enterpriseFile || !eff.networkCeiling || !policy) return
  const v = checkCeiling(policy, eff.networkCeiling)
  if (v.length) {
    const more = v.length > 1 ? ` (+${v.length - 1} more)` : ''
    throw refuse(eff, `${v[0]}${more}`, 'remove or narrow the endpoint, or ask your administrator to widen network_ceiling')
  }
}

/**
 * Refuses a sandbox that the enterprise configuration forbids. `policy` is the parsed policy the
 * sandbox would start with (undefined = podshell's restrictive default, which denies all egress
 * and so passes every network rule). Throws one line; returns nothing when the sandbox may run.
 */
export function enforceEnterprise(opts: CreateOptions, policy: Policy | undefined, eff: EffectiveConfig): void {
  if (!eff.enterpriseFile) return
  if (opts.allowSensitive && !eff.allowSensitive) {
    throw refuse(eff, 'mounting sensitive host paths (allow_sensitive) is not allowed', 'mount only project directories; the administrator can set allow_sensitive: true')
  }
  if (opts.credentialMode === 'env' && eff.allowEnvCredentials === false) {
    throw refuse(eff, 'real credential values as environment variables (--credential-mode env) are not allowed (credentials.allow_env_mode: false)', 'drop --credential-mode env: the agent gets placeholders that the gateway substitutes')
  }
  if (eff.seccompProfile) {
    if (opts.seccompProfile === undefined || realOr(opts.seccompProfile) !== realOr(eff.seccompProfile)) {
      throw refuse(eff, `seccomp profile ${opts.seccompProfile ?? "(podshell's default)"} is not the mandatory ${eff.seccompProfile}`, 'drop the custom profile; podshell applies the mandatory one')
    }
  } else if (eff.required.defaultSeccomp && opts.seccompProfile !== undefined) {
    throw refuse(eff, `custom seccomp profile ${opts.seccompProfile} is not allowed (required.default_seccomp)`, "drop the custom profile; podshell's own profile applies")
  }
  if (eff.required.images) {
    const image = opts.image ?? SANDBOX_IMAGE
    if (!imageAllowed(image, eff.required.images)) {
      throw refuse(eff, `image ${image} is not in required.images`, `use one of: ${eff.required.images.join(', ')}`)
    }
  }
  if (eff.required.sessionType && opts.sessionType === undefined) {
    throw refuse(eff, 'every sandbox must name a session type (required.session_type)', 'pass a session type (investigation, ticket_creation or development)')
  }
  if (opts.sessionType && eff.required.readOnlyWorkdir.includes(opts.sessionType)) {
    const t = opts.sessionType
    const hint = `${t} sessions keep the project read-only; use a development session to edit code`
    if (opts.workdir !== undefined && (opts.workdirMode ?? 'rw') === 'rw') {
      throw refuse(eff, `${t} session with a read-write workdir ${opts.workdir}`, hint)
    }
    if (opts.workdir !== undefined) {
      const wd = realOr(opts.workdir)
      for (const m of opts.mounts) {
        const src = realOr(m.source)
        if (m.mode === 'rw' && (isWithin(src, wd) || isWithin(wd, src))) {
          throw refuse(eff, `${t} session with a read-write mount ${m.source} overlapping the workdir`, hint)
        }
      }
    }
    if (policy?.filesystem_policy?.include_workdir === true) {
      throw refuse(eff, `${t} session with a policy that sets filesystem_policy.include_workdir: true`, hint)
    }
  }
  enforcePolicyFileLocked(opts.policyFile, opts.policyText !== undefined, eff)
  enforceNetworkCeiling(policy, eff)
}

// ───────────────────────────── the network ceiling ─────────────────────────────

type EndpointLike = Pick<Endpoint, 'host' | 'port' | 'ports' | 'protocol' | 'tls' | 'enforcement' | 'access' | 'rules' | 'deny_rules' | 'allowed_ips' | 'path'>
interface RuleLike {
  endpoints?: EndpointLike[] | undefined
  binaries?: { path: string }[] | undefined
}

const METHODS: Record<'read-only' | 'read-write', ReadonlySet<string>> = {
  'read-only': new Set(['GET', 'HEAD', 'OPTIONS']),
  'read-write': new Set(['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH']),
}

/**
 * Checks that a policy is no wider than the ceiling. Returns one line per offending endpoint:
 * `network_policies.<key>.endpoints[i] (host:port): not within the enterprise network ceiling: why`.
 * Conservative: when coverage cannot be proven (a glob the ceiling does not plainly contain, L7
 * rules not identical to the ceiling's) the endpoint is reported.
 *
 * An endpoint is covered when ONE ceiling endpoint covers all of it:
 *   host      its pattern matches every host the user's pattern matches;
 *   ports     every user port is a ceiling port;
 *   access    the user endpoint admits no more requests. L4 (no protocol, tcp), tls: skip and
 *             enforcement: audit (the OpenShell default!) all count as `full`, since nothing is
 *             blocked at L7; read-only < read-write < full; rules are covered by a preset when
 *             every allowed method is within it, or by identical ceiling rules; ceiling
 *             deny_rules must all be present in the user endpoint;
 *   path      a ceiling endpoint restricted to a path covers only the same path;
 *   allowed_ips each user CIDR lies inside a ceiling CIDR of that endpoint;
 *   binaries  when the ceiling entry lists binaries, every user binary lies within one (a user
 *             entry listing none is reported: podshell does not identify processes, so "none"
 *             there means "any").
 */
export function checkCeiling(userPolicy: { network_policies?: Record<string, RuleLike> | undefined }, ceiling: Record<string, RuleLike>): string[] {
  const ceilingEps = Object.values(ceiling).flatMap(rule => (rule.endpoints ?? []).map(ep => ({ ep, binaries: (rule.binaries ?? []).map(b => b.path) })))
  const out: string[] = []
  for (const [key, rule] of Object.entries(userPolicy.network_policies ?? {})) {
    const bins = (rule.binaries ?? []).map(b => b.path)
    ;(rule.endpoints ?? []).forEach((ep, i) => {
      const why = coverageProblem(ep, bins, ceilingEps)
      if (why) out.push(`network_policies.${key}.endpoints[${i}] (${showEndpoint(ep)}): not within the enterprise network ceiling: ${why}`)
    })
  }
  return out
}

function showEndpoint(ep: EndpointLike): string {
  return `${ep.host || '<any host>'}:${endpointPorts(ep).join(',') || '?'}`
}

function coverageProblem(ep: EndpointLike, bins: string[], ceiling: { ep: EndpointLike; binaries: string[] }[]): string | undefined {
  const hostMatches = ceiling.filter(c => hostCovered(ep.host ?? '', c.ep.host ?? ''))
  if (hostMatches.length === 0) return `no ceiling endpoint allows host ${ep.host || '<any host>'}`
  // Report the reason from the candidate that got furthest (the most specific near-miss).
  let best: { stage: number; why: string } | undefined
  for (const c of hostMatches) {
    const p = endpointProblem(ep, bins, c.ep, c.binaries)
    if (!p) return undefined
    if (!best || p.stage > best.stage) best = p
  }
  return best?.why
}

function endpointProblem(u: EndpointLike, bins: string[], c: EndpointLike, cbins: string[]): { stage: number; why: string } | undefined {
  const cports = new Set(endpointPorts(c))
  const badPort = endpointPorts(u).find(p => !cports.has(p))
  if (badPort !== undefined) return { stage: 1, why: `port ${badPort} is not allowed for ${u.host || '<any host>'}` }
  if (c.path && c.path !== '**' && c.path !== '/**' && u.path !== c.path) return { stage: 2, why: `the ceiling allows only path ${c.path} there` }
  const access = accessProblem(u, c)
  if (access) return { stage: 3, why: access }
  const rest = ipAndBinaryProblem(u, bins, c, cbins)
  return rest ? { stage: 4, why: rest } : undefined
}

function ipAndBinaryProblem(u: EndpointLike, bins: string[], c: EndpointLike, cbins: string[]): string | undefined {
  for (const ip of u.allowed_ips ?? []) {
    const un = parseCidr(ip)
    const inside = un && (c.allowed_ips ?? []).some(cip => {
      const cn = parseCidr(cip)
      return cn !== undefined && cidrWithin(un, cn)
    })
    if (!inside) return `allowed_ips ${ip} is not within the ceiling's allowed_ips`
  }
  if (cbins.length) {
    if (bins.length === 0) return 'the ceiling restricts binaries but this entry lists none'
    const bad = bins.find(b => !cbins.some(cb => patternCovered(b, cb, '/')))
    if (bad) return `binary ${bad} is not allowed by the ceiling`
  }
  return undefined
}

type Level = { kind: 'preset'; level: 'read-only' | 'read-write' | 'full' } | { kind: 'rules'; rules: unknown[]; methods: string[] | undefined }

const L4 = (e: EndpointLike) => e.protocol === undefined || e.protocol === 'tcp'

/** What the user endpoint lets through at L7. */
function userLevel(e: EndpointLike): Level {
  if (L4(e) || e.tls === 'skip' || e.enforcement !== 'enforce') return { kind: 'preset', level: 'full' }
  if (e.access) return { kind: 'preset', level: e.access }
  const rules = e.rules ?? []
  const methods = rules.map(r => r.allow.method?.toUpperCase())
  return { kind: 'rules', rules, methods: methods.some(m => m === undefined || m === '' || m === '*' || /[*?[]/.test(m)) ? undefined : (methods as string[]) }
}

/** What the ceiling endpoint allows at L7 (its own enforcement mode is irrelevant: it is a limit). */
function ceilingLevel(e: EndpointLike): Level {
  if (L4(e)) return { kind: 'preset', level: 'full' }
  if (e.access) return { kind: 'preset', level: e.access }
  return { kind: 'rules', rules: e.rules ?? [], methods: undefined }
}

function accessProblem(u: EndpointLike, c: EndpointLike): string | undefined {
  const cl = ceilingLevel(c)
  const ul = userLevel(u)
  const cdeny = c.deny_rules ?? []
  if (cdeny.length) {
    const udeny = new Set((u.deny_rules ?? []).map(canonicalJson))
    if (ul.kind === 'preset' && ul.level === 'full' && (L4(u) || u.enforcement !== 'enforce' || u.tls === 'skip')) return 'the ceiling has deny_rules, which need protocol and enforcement: enforce'
    if (u.protocol !== c.protocol) return `the ceiling inspects it as protocol ${c.protocol}`
    if (!cdeny.every(d => udeny.has(canonicalJson(d)))) return "the ceiling's deny_rules are not all present"
  }
  if (cl.kind === 'preset' && cl.level === 'full') return undefined
  if (u.protocol !== c.protocol || L4(u)) return `the ceiling allows it only as protocol ${c.protocol} with enforcement: enforce`
  if (ul.kind === 'preset' && ul.level === 'full') return `access is wider than the ceiling's ${cl.kind === 'preset' ? cl.level : 'rules'} (L4, tls: skip or enforcement: audit count as full)`
  if (cl.kind === 'preset') {
    const allowed = METHODS[cl.level as 'read-only' | 'read-write']
    if (ul.kind === 'preset') {
      if (ul.level === 'full' || (ul.level === 'read-write' && cl.level === 'read-only')) return `access ${ul.level} is wider than the ceiling's ${cl.level}`
      return undefined
    }
    if (ul.methods === undefined || ul.methods.some(m => !allowed.has(m))) return `rules allow methods outside the ceiling's ${cl.level}`
    return undefined
  }
  if (ul.kind !== 'rules') return 'access presets are wider than the ceiling\'s rules'
  const crules = new Set(cl.rules.map(canonicalJson))
  if (!ul.rules.every(r => crules.has(canonicalJson(r)))) return 'rules are not all among the ceiling\'s rules'
  return undefined
}


/**
 * Host pattern subset: every host `user` matches, `ceiling` matches. Empty host = IP-only endpoint.
 * The same matcher the gateway uses (src/rules/host-pattern.ts): a host the gateway would allow is
 * judged here by the gateway's own rule, so the ceiling and the gateway cannot disagree. A pattern
 * that rule refuses (`api-[ab].example.com`) covers nothing and is covered by nothing.
 */
function hostCovered(user: string, ceiling: string): boolean {
  if (user === '' || ceiling === '') return user === ceiling
  const up = normalizeHostPattern(user)
  const cp = normalizeHostPattern(ceiling)
  const c = HostPattern.parse(cp)
  const u = HostPattern.parse(up)
  if (!c || !u) return up === cp && isIP(up.replace(/^\[(.*)\]$/, '$1')) !== 0 // IPv6 literals: exact only
  return c.covers(u)
}

/**
 * Conservative glob subset over segments split by `sep`: a `**` segment covers one or more
 * segments of any kind; `*` covers any single segment; a literal user segment is covered by a
 * ceiling glob that matches it; any other wildcard user segment only by an identical one.
 */
export function patternCovered(user: string, ceiling: string, sep: '.' | '/'): boolean {
  const u = user.split(sep)
  const c = ceiling.split(sep)
  const memo = new Map<string, boolean>()
  const go = (i: number, j: number): boolean => {
    const key = `${i},${j}`
    const hit = memo.get(key)
    if (hit !== undefined) return hit
    let r: boolean
    if (i === c.length) r = j === u.length
    else if (j >= u.length) r = false
    else if (c[i] === '**') r = go(i + 1, j + 1) || go(i, j + 1)
    else r = segmentCovered(u[j]!, c[i]!) && go(i + 1, j + 1)
    memo.set(key, r)
    return r
  }
  return go(0, 0)
}

function segmentCovered(u: string, c: string): boolean {
  if (u === c || c === '*') return u !== '**' || c === '**'
  if (/[*?[]/.test(u)) return false
  return globMatch(c, u)
}

function globMatch(glob: string, s: string): boolean {
  return compileGlob(glob).test(s)
}

/** For the `schema config` command. */
export const ENTERPRISE_FILE_HELP = `${ENTERPRISE_DEFAULT_PATH} (or ${ENTERPRISE_ENV} unless lock_path: true)`
