import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { z } from 'zod'
import { parseAllDocuments } from 'yaml'
import { PodshellError } from '../errors.js'
import { writeFileAtomic, mkdirp } from '../util/fs.js'
import { objectName, envKey } from '../util/validate.js'
import { hostPatternProblem, normalizeHostPattern } from '../rules/host-pattern.js'
import { globProblem } from '../rules/glob.js'
import { PROVIDER_TYPES, type ProviderType } from './types.js'
import { reservedReason } from './input.js'

/**
 * Provider profiles in OpenShell's YAML (providers/*.yaml there: `id`, `credentials[].env_vars`,
 * `auth_style`/`header_name`, `endpoints`, …): `provider list-profiles`, `provider profile
 * export|import|lint`. A profile says which variables a provider type has and on which endpoints
 * (host, port, optional path) its credentials are substituted (issue 12 placeholders).
 *
 * Built-in profiles are podshell's provider types (src/credentials/types.ts), exported in this
 * format. Imported profiles are validated here and stored as JSON under `<data>/provider-profiles/`;
 * a provider created with `--type <id>` of an imported profile gets its endpoints snapshotted into
 * the sandbox's providers.json at create, which is what the gateway binds on.
 *
 * Threat: a malicious profile (a file an agent wrote, a shared repo) gets imported. What it can do
 * is bounded here:
 *  - it cannot reuse a built-in id (`github`) or an imported one: an existing provider's binding is
 *    never widened by an import (changing one = delete + import, and only new providers use it);
 *  - its credentials only reach the endpoints it lists, and the import prints every binding
 *    (variables → host:port/path) so the user sees where a token would go;
 *  - every host goes through the shared host-pattern rule (src/rules/host-pattern.ts) and a
 *    wildcard must leave at least two literal labels (`*.example.com`; `*`, `**`, `*.com`, `**.io`
 *    are refused), so a profile cannot bind a credential to "everything";
 *  - variables go through the same reserved-name rule as `provider create` (no HTTPS_PROXY,
 *    NODE_OPTIONS, PODSHELL_*, …);
 *  - fields podshell does not implement (refresh, token grants, path templates, SigV4 signing) are
 *    errors, not silently ignored; fields that only shape OpenShell's policy (rules, binaries,
 *    access) are accepted with a warning (podshell's sandbox policy decides access).
 */

const credentialSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9_-]{1,64}$/, 'lower-case letters, digits, _ and -').describe('Credential name within the profile'),
    description: z.string().max(500).optional().describe('What the credential is'),
    env_vars: z.array(envKey).min(1).max(8).describe('Environment variables the agent receives (placeholders by default)'),
    required: z.boolean().optional().describe('Whether a provider of this type must set it'),
    auth_style: z.enum(['bearer', 'header', 'basic', 'query', 'none', '']).optional().describe('How clients send it: bearer (Authorization), header (header_name), basic, query'),
    header_name: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,64}$/, 'an HTTP header name')
      .optional()
      .describe('Header that carries the credential (auth_style header)'),
    query_param: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/)
      .optional()
      .describe('Query parameter that carries the credential (auth_style query)'),
  })
  .strict()
  .describe('One credential of a provider profile')

const endpointSchema = z
  .object({
    host: z.string().min(1).max(253).describe('Host or host pattern (OpenShell syntax) the credentials may be sent to'),
    port: z.number().int().min(1).max(65535).describe('Port (required)'),
    path: z.string().max(512).optional().describe('Path glob the binding is limited to'),
    protocol: z.string().max(32).optional().describe('OpenShell policy protocol (informational in podshell)'),
    access: z.string().max(32).optional().describe('OpenShell access preset (not used: the sandbox policy decides)'),
    enforcement: z.string().max(32).optional().describe('OpenShell enforcement (not used)'),
    tls: z.string().max(32).optional().describe('OpenShell tls mode (not used)'),
    rules: z.array(z.unknown()).optional().describe('OpenShell L7 rules (not used: the sandbox policy decides)'),
    websocket_credential_rewrite: z.boolean().optional().describe('Not used from a profile: opt in on the policy endpoint'),
    request_body_credential_rewrite: z.boolean().optional().describe('Not used from a profile: opt in on the policy endpoint'),
  })
  .strict()
  .describe('An endpoint the profile binds its credentials to')

/** OpenShell's profile categories (ProviderProfileCategory), in its enum order: list-profiles groups by it. */
export const PROFILE_CATEGORIES = ['other', 'inference', 'agent', 'source_control', 'messaging', 'data', 'knowledge'] as const
export type ProfileCategory = (typeof PROFILE_CATEGORIES)[number]

export const providerProfileSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and -').describe('Profile id: the provider type name'),
    display_name: z.string().max(100).optional().describe('Human-readable name'),
    description: z.string().max(500).optional().describe('What the profile is for'),
    category: z
      .preprocess(v => (typeof v === 'string' ? v.trim().toLowerCase().replace(/-/g, '_') || 'other' : v), z.enum(PROFILE_CATEGORIES))
      .optional()
      .describe('OpenShell category: inference, agent, source_control, messaging, data, knowledge or other'),
    inference_capable: z.boolean().optional().describe('OpenShell: usable for inference routing (informational)'),
    credentials: z.array(credentialSchema).min(1).max(16).describe('Credentials and the variables that carry them'),
    discovery: z.object({ credentials: z.array(z.string()).optional() }).strict().optional().describe('Credentials --from-existing looks for'),
    endpoints: z.array(endpointSchema).min(1).max(64).describe('Where the credentials are substituted'),
    binaries: z.array(z.string().max(256)).optional().describe('OpenShell binary allow-list (not enforced by podshell)'),
  })
  .strict()
  .describe('An OpenShell provider profile')

export type ProviderProfile = z.infer<typeof providerProfileSchema>

/** OpenShell's diagnostic shape (ProviderProfileDiagnostic). */
export interface ProfileDiagnostic {
  source: string
  profile_id: string
  field: string
  message: string
  severity: 'error' | 'warning'
}

/** Problem with a host an imported credential may be sent to; undefined = acceptable. */
export function bindingHostProblem(host: string): string | undefined {
  const p = hostPatternProblem(host)
  if (p) return p
  const labels = normalizeHostPattern(host).split('.')
  const lastWild = labels.reduce((at, l, i) => (l.includes('*') ? i : at), -1)
  if (lastWild !== -1 && labels.length - 1 - lastWild < 2) {
    return `wildcard ${JSON.stringify(host)} is too broad for a credential binding: keep at least two literal labels after the wildcard (e.g. *.example.com)`
  }
  if (lastWild === -1 && labels.length < 2 && !/^\d/.test(host)) return `host ${JSON.stringify(host)} is not a fully qualified name`
  return undefined
}

/** Display name and OpenShell category of each built-in type (OpenShell's providers/*.yaml where it has one). */
const BUILTIN_META: Record<string, { display_name: string; category: ProfileCategory }> = {
  claude: { display_name: 'Claude Code', category: 'agent' },
  anthropic: { display_name: 'Anthropic', category: 'inference' },
  codex: { display_name: 'Codex', category: 'agent' },
  openai: { display_name: 'OpenAI', category: 'inference' },
  opencode: { display_name: 'OpenCode', category: 'agent' },
  copilot: { display_name: 'GitHub Copilot', category: 'agent' },
  github: { display_name: 'GitHub', category: 'source_control' },
  gitlab: { display_name: 'GitLab', category: 'source_control' },
  nvidia: { display_name: 'NVIDIA', category: 'inference' },
  jira: { display_name: 'Jira', category: 'knowledge' },
}

const AUTH: Record<string, { auth_style: string; header_name?: string }> = {
  claude: { auth_style: 'header', header_name: 'x-api-key' },
  anthropic: { auth_style: 'header', header_name: 'x-api-key' },
}

/** podshell's provider types as OpenShell profiles (port 443 endpoints, which is how they bind). */
export function builtinProfiles(): ProviderProfile[] {
  return Object.entries(PROVIDER_TYPES as Record<string, ProviderType>)
    .filter(([, t]) => t.credentials.length > 0)
    .map(([id, t]) => ({
      id,
      display_name: BUILTIN_META[id]?.display_name ?? id,
      category: BUILTIN_META[id]?.category ?? 'other',
      description: id === 'jira' ? `${id} (endpoint: the provider's --config JIRA_URL host)` : `${id} provider type`,
      credentials: [{ name: 'api_key', env_vars: [...t.credentials], required: true, auth_style: AUTH[id]?.auth_style ?? 'bearer', ...(AUTH[id]?.header_name ? { header_name: AUTH[id].header_name } : { header_name: 'authorization' }) }],
      discovery: { credentials: ['api_key'] },
      endpoints: t.hosts.map(h => ({ host: h, port: 443 })),
    }))
    .map(p => (p.endpoints.length ? p : { ...p, endpoints: [] })) as ProviderProfile[]
}

const profilesDir = (dataDir: string) => join(dataDir, 'provider-profiles')
const profileFile = (dataDir: string, id: string) => join(profilesDir(dataDir), `${id}.json`)

/** Imported profiles (each re-validated on read: a tampered file is skipped with a diagnostic). */
export function importedProfiles(dataDir: string): { profiles: ProviderProfile[]; diagnostics: ProfileDiagnostic[] } {
  const dir = profilesDir(dataDir)
  const profiles: ProviderProfile[] = []
  const diagnostics: ProfileDiagnostic[] = []
  if (!existsSync(dir)) return { profiles, diagnostics }
  for (const f of readdirSync(dir).filter(n => n.endsWith('.json')).sort()) {
    const source = join(dir, f)
    let raw: unknown
    try {
      raw = JSON.parse(readFileSync(source, 'utf8'))
    } catch (e) {
      diagnostics.push({ source, profile_id: '-', field: '-', message: `unreadable: ${(e as Error).message}`, severity: 'error' })
      continue
    }
    const r = checkProfile(raw, source, { imported: false })
    if (r.profile && f === `${r.profile.id}.json`) profiles.push(r.profile)
    else diagnostics.push(...r.diagnostics)
  }
  return { profiles, diagnostics }
}

export function findProfile(dataDir: string, id: string): { profile: ProviderProfile; builtin: boolean } | undefined {
  const b = builtinProfiles().find(p => p.id === id)
  if (b) return { profile: b, builtin: true }
  const i = importedProfiles(dataDir).profiles.find(p => p.id === id)
  return i ? { profile: i, builtin: false } : undefined
}

/** Validates one parsed document. `imported`: the id must be new (not built-in, not imported). */
export function checkProfile(raw: unknown, source: string, o: { imported: boolean; dataDir?: string }): { profile?: ProviderProfile; diagnostics: ProfileDiagnostic[] } {
  const id = raw && typeof raw === 'object' && typeof (raw as { id?: unknown }).id === 'string' ? (raw as { id: string }).id : '-'
  const diag = (field: string, message: string, severity: 'error' | 'warning' = 'error'): ProfileDiagnostic => ({ source, profile_id: id, field, message, severity })
  const parsed = providerProfileSchema.safeParse(raw)
  if (!parsed.success) {
    return { diagnostics: parsed.error.issues.map(i => diag(i.path.join('.') || '-', i.code === 'unrecognized_keys' ? `${i.message} (not supported by podshell)` : i.message)) }
  }
  const p = parsed.data
  const out: ProfileDiagnostic[] = []
  if (o.imported) {
    if ((Object.keys(PROVIDER_TYPES) as string[]).includes(p.id)) out.push(diag('id', `${p.id} is a built-in provider profile and cannot be replaced by an import`))
    else if (o.dataDir && existsSync(profileFile(o.dataDir, p.id))) out.push(diag('id', `provider profile ${p.id} is already imported; delete it first (providers created from it keep their binding)`))
  }
  if (!objectName.safeParse(p.id).success) out.push(diag('id', 'not a valid podshell object name'))
  const seen = new Set<string>()
  p.credentials.forEach((c, i) => {
    c.env_vars.forEach((v, j) => {
      const why = reservedReason(v)
      if (why) out.push(diag(`credentials.${i}.env_vars.${j}`, `${v} cannot be a credential: ${why}`))
      if (seen.has(v)) out.push(diag(`credentials.${i}.env_vars.${j}`, `duplicate credential env var ${v}`))
      seen.add(v)
    })
    if (c.auth_style === 'header' && !c.header_name) out.push(diag(`credentials.${i}.header_name`, 'auth_style header needs header_name'))
    if (c.auth_style === 'query' && !c.query_param) out.push(diag(`credentials.${i}.query_param`, 'auth_style query needs query_param'))
  })
  p.endpoints.forEach((e, i) => {
    const hp = bindingHostProblem(e.host)
    if (hp) out.push(diag(`endpoints.${i}.host`, hp))
    if (e.path !== undefined) {
      const gp = e.path.startsWith('/') || e.path.startsWith('*') ? globProblem(e.path) : 'path must start with / (or be a glob)'
      if (gp) out.push(diag(`endpoints.${i}.path`, gp))
    }
    for (const f of ['rules', 'access', 'enforcement', 'tls', 'websocket_credential_rewrite', 'request_body_credential_rewrite'] as const) {
      if (e[f] !== undefined) out.push(diag(`endpoints.${i}.${f}`, 'accepted but not used by podshell: the sandbox policy decides access and rewriting', 'warning'))
    }
  })
  if (p.binaries?.length) out.push(diag('binaries', 'not enforced: podshell does not identify processes', 'warning'))
  return out.some(d => d.severity === 'error') ? { diagnostics: out } : { profile: p, diagnostics: out }
}

/** Reads profile documents from `-f FILE` or every *.yaml/*.yml/*.json in `--from DIR`. */
export function loadProfileFiles(file: string | undefined, from: string | undefined): { items: { source: string; raw: unknown }[]; diagnostics: ProfileDiagnostic[] } {
  if (Boolean(file) === Boolean(from)) {
    throw new PodshellError('give exactly one of -f/--file and --from', { hint: '-f names one profile file, --from a directory of them', code: 'INVALID_INPUT', exitCode: 2 })
  }
  const files = file ? [file] : readdirOrThrow(from!)
  const items: { source: string; raw: unknown }[] = []
  const diagnostics: ProfileDiagnostic[] = []
  for (const f of files) {
    let text: string
    try {
      text = readFileSync(f, 'utf8')
    } catch (e) {
      throw new PodshellError(`cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { hint: 'check the path', code: 'INVALID_INPUT', exitCode: 2 })
    }
    if (text.length > 256 * 1024) {
      diagnostics.push({ source: f, profile_id: '-', field: '-', message: 'file over 256 KiB', severity: 'error' })
      continue
    }
    const docs = parseAllDocuments(text)
    for (const d of Array.isArray(docs) ? docs : [docs]) {
      if (d.errors.length) {
        diagnostics.push({ source: f, profile_id: '-', field: '-', message: `failed to parse provider profile YAML: ${d.errors[0]!.message.split('\n')[0]}`, severity: 'error' })
        continue
      }
      let raw: unknown
      try {
        raw = d.toJS({ maxAliasCount: 0 }) as unknown
      } catch (e) {
        diagnostics.push({ source: f, profile_id: '-', field: '-', message: `failed to parse provider profile YAML: ${(e as Error).message}`, severity: 'error' })
        continue
      }
      if (raw !== null && raw !== undefined) items.push({ source: f, raw })
    }
  }
  if (items.length === 0 && diagnostics.length === 0) throw new PodshellError('no provider profile files found', { hint: 'profiles are *.yaml, *.yml or *.json files', code: 'INVALID_INPUT', exitCode: 2 })
  return { items, diagnostics }
}

function readdirOrThrow(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter(n => /\.(ya?ml|json)$/.test(n))
      .sort()
      .map(n => join(dir, n))
  } catch (e) {
    throw new PodshellError(`cannot read directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { hint: 'check the path', code: 'INVALID_INPUT', exitCode: 2 })
  }
}

/** Lints (no store). Duplicate ids within the input are errors too. */
export function lintProfiles(dataDir: string, items: readonly { source: string; raw: unknown }[], imported: boolean): { profiles: ProviderProfile[]; diagnostics: ProfileDiagnostic[] } {
  const profiles: ProviderProfile[] = []
  const diagnostics: ProfileDiagnostic[] = []
  for (const it of items) {
    const r = checkProfile(it.raw, it.source, { imported, dataDir })
    diagnostics.push(...r.diagnostics)
    if (!r.profile) continue
    if (profiles.some(p => p.id === r.profile!.id)) {
      diagnostics.push({ source: it.source, profile_id: r.profile.id, field: 'id', message: `duplicate provider profile id: ${r.profile.id}`, severity: 'error' })
      continue
    }
    profiles.push(r.profile)
  }
  return { profiles, diagnostics }
}

/** Stores validated profiles (all or nothing: the caller lints first and stops on any error). */
export function storeProfiles(dataDir: string, profiles: readonly ProviderProfile[]): void {
  mkdirp(profilesDir(dataDir))
  for (const p of profiles) writeFileAtomic(profileFile(dataDir, p.id), JSON.stringify(p, null, 2) + '\n')
}

export function deleteProfile(dataDir: string, id: string): boolean {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(id)) return false
  const f = profileFile(dataDir, id)
  if (!existsSync(f)) return false
  rmSync(f)
  return true
}

/** The binding lines an import shows: `GITHUB_TOKEN, GH_TOKEN → api.example.com:443/v1/**`. */
export function bindingLines(p: ProviderProfile): string[] {
  const vars = p.credentials.flatMap(c => c.env_vars).join(', ')
  return p.endpoints.map(e => `${vars} → ${normalizeHostPattern(e.host)}:${e.port}${e.path ?? ''}`)
}

/** Endpoints an imported profile binds on, as providers.json carries them for the gateway. */
export function profileEndpoints(p: ProviderProfile): { host: string; port: number; path?: string }[] {
  return p.endpoints.map(e => ({ host: normalizeHostPattern(e.host), port: e.port, ...(e.path ? { path: e.path } : {}) }))
}

/** OpenShell's `source` and `scope` of a listed profile: built-in (static) vs imported by the user (workspace). */
export const PROFILE_ORIGIN = { builtin: { source: 'builtin', scope: '' }, imported: { source: 'user', scope: 'workspace' } } as const
