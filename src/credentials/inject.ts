import { readFileSync } from 'node:fs'
import { PodshellError } from '../errors.js'
import type { Podman } from '../podman/podman.js'
import { secretEnvArgs } from '../podman/helper-container.js'
import { sandboxProvidersFile } from '../config/paths.js'
import { writeFileAtomic } from '../util/fs.js'
import { check, sandboxName, objectName } from '../util/validate.js'
import { requireProvider, gcProviderSecrets, type ProviderRecord } from './store.js'
import { providerSecretName, inspectSecrets, readSecretValues, SECRET_PREFIX } from './secrets.js'
import { makePlaceholder } from './placeholder.js'
import { findProfile, profileEndpoints } from './profiles.js'
import { GATEWAY_IMAGE } from '../images/names.js'
import { L } from '../sandbox/naming.js'

/**
 * Injection of provider credentials into one sandbox's agent container.
 *
 * DESIGN: the agent container references each provider's own Podman secret directly,
 *   --secret podshell.provider.<p>.<VAR>,type=env,target=VAR
 * and no per-sandbox copy of any secret exists. Reasons:
 *   - A copy needs the value back. Podman 4.3 cannot print a secret (`secret inspect
 *     --showsecret` arrived later); reading it would take a helper container or podman's private
 *     storage files. Asking the caller for the value at every `sandbox create` would put it back
 *     into the launcher's environment, which is what providers exist to avoid.
 *   - Every copy is one more place the value rests on disk (Podman's secret store). Referencing
 *     keeps exactly one stored copy per provider variable.
 *   - Cleanup is exact because there is nothing per sandbox to clean: a failed or killed
 *     `sandbox create` leaves no secret behind (its half-made containers, which hold the value in
 *     their OCI config while they exist, are removed by the sandbox gc). The only secrets that can
 *     be orphaned belong to a killed `provider create/update/delete`; gcOrphanedSecrets removes
 *     those.
 * Consequences, measured on Podman 4.3.1: `type=env` secrets are resolved BY NAME whenever a
 * process is started in the container — at every container start AND at every `podman exec`.
 * So after `provider update` the running main process keeps the value it started with, while new
 * exec sessions (`sandbox exec`) and restarts get the new value (rotation without recreating).
 * After `provider delete --force`, both `podman exec` into a sandbox that used it and its next
 * start fail with `no secret with name or id "podshell.provider.…": no such secret` until a
 * provider of that name exists again; this is why delete refuses without --force while a sandbox
 * uses the provider (missingSecretHint turns that podman error into a fix).
 */

export interface Injection {
  /**
   * Arguments for the agent container's `podman run/create`: `--secret <secret>,type=env,target=VAR`
   * per credential, `--env K=V` per (non-secret) config entry. No value of a credential is in here.
   */
  secretArgs: string[]
  /** Credential variables injected, by provider (the audit log records exactly these). */
  variables: { provider: string; name: string }[]
  /**
   * The Podman secrets the agent container references. They are the providers' own and must NOT
   * be removed with the sandbox.
   */
  secretNames: string[]
  /**
   * Placeholder mode: per credential, the placeholder the agent holds and the real value the
   * gateway must hold (memory only: the caller hands it to the gateway and drops it). Empty in
   * env mode.
   */
  held: { provider: string; variable: string; placeholder: string; value: string }[]
}

/** How a sandbox gets provider credentials: placeholders (default) or the real values (escape hatch). */
export type CredentialMode = 'placeholder' | 'env'

/** What `gateway/sandboxes/<name>/providers.json` holds; the gateway attributes hosts with it. No values. */
export interface AttachedProvider {
  name: string
  type: string
  config: Record<string, string>
  /** Placeholder mode: the placeholder of each credential variable (not secret: the agent's env holds it). */
  credentials?: { variable: string; placeholder: string }[]
  /** An imported provider profile's endpoints (host pattern, port, path glob): the binding. */
  endpoints?: { host: string; port: number; path?: string }[]
}

export const providersJsonPath = (dataDir: string, sandbox: string) => sandboxProvidersFile(dataDir, sandbox)

/**
 * Resolves the providers attached to `sandbox` into podman arguments and writes providers.json.
 * Fails closed, naming the problem, when a provider does not exist, two providers set the same
 * variable, or a provider's secret is missing or is not podshell's (a same-named secret without
 * podshell's labels would inject a value nobody gave podshell).
 */
export async function prepareInjection(podman: Podman, dataDir: string, sandbox: string, providers: string[], opts: { mode?: CredentialMode; helperImage?: string } = {}): Promise<Injection> {
  const mode = opts.mode ?? 'placeholder'
  check(sandboxName, sandbox, 'sandbox name')
  const names = [...new Set(providers)]
  for (const p of names) check(objectName, p, 'provider name')
  const records = names.map(n => requireProvider(dataDir, n))

  const setBy = new Map<string, string>()
  const claim = (variable: string, provider: string) => {
    const other = setBy.get(variable)
    if (other !== undefined) {
      throw new PodshellError(`providers ${other} and ${provider} both set ${variable}`, {
        hint: 'attach only one of them',
        code: 'PROVIDER_CONFLICT',
        exitCode: 2,
      })
    }
    setBy.set(variable, provider)
  }
  const secretArgs: string[] = []
  const variables: { provider: string; name: string }[] = []
  const secretNames: string[] = []
  for (const r of records) {
    for (const v of r.credentials) {
      claim(v, r.name)
      variables.push({ provider: r.name, name: v })
      secretNames.push(providerSecretName(r.name, v))
    }
    for (const [k, v] of Object.entries(r.config)) {
      claim(k, r.name)
      secretArgs.push('--env', `${k}=${v}`)
    }
  }
  await verifySecrets(podman, variables)
  const held: Injection['held'] = []
  if (mode === 'env') {
    secretArgs.push(...secretEnvArgs(variables.map((v, i) => ({ secret: secretNames[i]!, target: v.name }))))
  } else if (variables.length > 0) {
    // The real values come back from the Podman secrets for the gateway; the agent gets a
    // same-shaped placeholder as a plain --env (so `podman inspect` shows only placeholders).
    const values = await readSecretValues(podman, secretNames, opts.helperImage ?? GATEWAY_IMAGE)
    const taken = new Set<string>()
    variables.forEach((v, i) => {
      const placeholder = makePlaceholder(values[i]!, taken)
      taken.add(placeholder)
      held.push({ provider: v.provider, variable: v.name, placeholder, value: values[i]! })
      secretArgs.push('--env', `${v.name}=${placeholder}`)
    })
  }
  writeFileAtomic(providersJsonPath(dataDir, sandbox), JSON.stringify(attached(dataDir, records, held), null, 2) + '\n')
  return { secretArgs, variables, secretNames, held }
}

/**
 * Gives the gateway back the real values of `sandboxes`' placeholders (after a gateway restart: it
 * holds them in memory only), read from the Podman secrets with the same helper container as at
 * create. Placeholders come from each sandbox's providers.json. Credentials whose secret no longer
 * exists (provider deleted) stay without a value: they keep failing closed. Returns how many values
 * were handed over.
 */
export async function restoreCredentials(podman: Podman, dataDir: string, sandboxes: readonly string[], gateway: { call(req: Record<string, unknown>): Promise<unknown> }): Promise<number> {
  const wanted: { sandbox: string; provider: string; variable: string; placeholder: string; secret: string }[] = []
  for (const sandbox of sandboxes) {
    if (!sandboxName.safeParse(sandbox).success) continue
    let list: AttachedProvider[]
    try {
      list = JSON.parse(readFileSync(providersJsonPath(dataDir, sandbox), 'utf8')) as AttachedProvider[]
    } catch {
      continue
    }
    for (const p of Array.isArray(list) ? list : []) {
      for (const c of Array.isArray(p?.credentials) ? p.credentials : []) {
        if (typeof p.name !== 'string' || typeof c?.variable !== 'string' || typeof c.placeholder !== 'string') continue
        if (!objectName.safeParse(p.name).success) continue
        wanted.push({ sandbox, provider: p.name, variable: c.variable, placeholder: c.placeholder, secret: providerSecretName(p.name, c.variable) })
      }
    }
  }
  if (wanted.length === 0) return 0
  const names = [...new Set(wanted.map(w => w.secret))]
  const present = new Set((await inspectSecrets(podman, names)).filter(s => wanted.some(w => w.secret === s.name && w.provider === s.provider && w.variable === s.variable)).map(s => s.name))
  const readable = names.filter(n => present.has(n))
  if (readable.length === 0) return 0
  const values = await readSecretValues(podman, readable, GATEWAY_IMAGE)
  const byName = new Map(readable.map((n, i) => [n, values[i]!]))
  let n = 0
  for (const sandbox of new Set(wanted.map(w => w.sandbox))) {
    const credentials = wanted.filter(w => w.sandbox === sandbox && byName.has(w.secret)).map(w => ({ provider: w.provider, variable: w.variable, placeholder: w.placeholder, value: byName.get(w.secret)! }))
    if (credentials.length === 0) continue
    await gateway.call({ op: 'credentials', sandbox, credentials })
    n += credentials.length
  }
  return n
}

async function verifySecrets(podman: Podman, variables: readonly { provider: string; name: string }[]): Promise<void> {
  if (variables.length === 0) return
  const found = new Map((await inspectSecrets(podman, variables.map(v => providerSecretName(v.provider, v.name)))).map(s => [s.name, s]))
  for (const v of variables) {
    const s = found.get(providerSecretName(v.provider, v.name))
    if (!s) {
      throw new PodshellError(`provider ${v.provider} is incomplete: the secret for ${v.name} is missing`, {
        hint: `run \`podshell provider update ${v.provider} --credential ${v.name}\` (value from the environment)`,
        code: 'PROVIDER_INCOMPLETE',
      })
    }
    if (s.provider !== v.provider || s.variable !== v.name) {
      throw new PodshellError(`podman secret ${s.name} is not podshell's secret for ${v.provider}/${v.name}`, {
        hint: `remove it with \`podman secret rm ${s.name}\`, then \`podshell provider update ${v.provider} --credential ${v.name}\``,
        code: 'PROVIDER_INCOMPLETE',
      })
    }
  }
}

function attached(dataDir: string, records: readonly ProviderRecord[], held: Injection['held']): AttachedProvider[] {
  return records.map(r => {
    const mine = held.filter(h => h.provider === r.name).map(h => ({ variable: h.variable, placeholder: h.placeholder }))
    // An imported profile's endpoints are snapshotted here: the gateway binds on them for this
    // sandbox's life, whatever happens to the profile later.
    const profile = findProfile(dataDir, r.type)
    const endpoints = profile && !profile.builtin ? profileEndpoints(profile.profile) : []
    return { name: r.name, type: r.type, config: { ...r.config }, ...(mine.length ? { credentials: mine } : {}), ...(endpoints.length ? { endpoints } : {}) }
  })
}

/**
 * Removes the secrets made for one sandbox. Under the design above there are none: the sandbox's
 * agent container references its providers' secrets, which outlive the sandbox. This performs no
 * podman call and exists so the sandbox lifecycle's create-failure and delete paths have a single,
 * documented answer to "which secrets go with this sandbox".
 */
export async function removeSandboxSecrets(_podman: Podman, sandbox: string): Promise<void> {
  check(sandboxName, sandbox, 'sandbox name')
}

/**
 * Removes orphaned podshell secrets: those of a provider create/update/delete that was killed
 * (secrets no provider's metadata lists). Returns the removed secret names. A killed sandbox
 * create orphans no secret (nothing is created per sandbox), so `liveSandboxes` does not change
 * the answer; in particular a secret whose provider was deleted is removed even while a live
 * sandbox references it (the delete was asked for, with --force).
 */
export async function gcOrphanedSecrets(podman: Podman, dataDir: string, _liveSandboxes: Set<string>): Promise<string[]> {
  return gcProviderSecrets(podman, dataDir)
}

/**
 * A fix for podman's error when a sandbox references a provider secret that no longer exists
 * (`provider delete --force` while the sandbox used it), or undefined for any other error.
 */
export function missingSecretHint(podmanMessage: string): string | undefined {
  const m = /no secret with name or id "([^"]+)"/.exec(podmanMessage)
  if (!m || !m[1]!.startsWith(SECRET_PREFIX)) return undefined
  const readable = /^podshell\.provider\.([a-z0-9][a-z0-9._-]*)\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(m[1]!)
  const which = readable ? `provider ${readable[1]} (${readable[2]})` : 'a provider this sandbox uses'
  return `${which} was deleted; create it again with \`podshell provider create\`, or delete the sandbox`
}

/** The audit events for an injection: one per variable, by provider and name, never the value. */
export function injectionAuditEvents(variables: readonly { provider: string; name: string }[]): { event: 'credential_injected'; detail: { provider: string; variable: string } }[] {
  return variables.map(v => ({ event: 'credential_injected', detail: { provider: v.provider, variable: v.name } }))
}

interface PodLabelsJson {
  Labels?: Record<string, string> | null
}

/**
 * Which sandboxes use each provider, from the pods' labels (io.podshell.sandbox and the
 * comma-separated io.podshell.providers the sandbox lifecycle sets): Podman's labels, not
 * podshell's files, are the source of truth for what exists.
 */
export async function providerUsers(podman: Podman): Promise<Map<string, string[]>> {
  const pods = await podman.json<PodLabelsJson[] | null>(['pod', 'ps', '--filter', `label=${L.sandbox}`, '--format', 'json'])
  const users = new Map<string, string[]>()
  for (const pod of pods ?? []) {
    const sandbox = pod.Labels?.[L.sandbox]
    if (!sandbox) continue
    for (const p of (pod.Labels?.[L.providers] ?? '').split(',').map(s => s.trim()).filter(Boolean)) {
      users.set(p, [...(users.get(p) ?? []), sandbox].sort())
    }
  }
  return users
}
