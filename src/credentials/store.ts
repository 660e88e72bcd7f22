import { GatewayClient } from '../gateway/client.js'
import { z } from 'zod'
import { readdirSync, rmSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { PodshellError } from '../errors.js'
import type { Podman } from '../podman/podman.js'
import { providersDir } from '../config/paths.js'
import { writeFileAtomic, fsError, readFileIfExists } from '../util/fs.js'
import { check, objectName, envKey, formatZodIssues } from '../util/validate.js'
import { PROVIDER_TYPE_NAMES } from './types.js'
import { ProviderLock } from './lock.js'
import { dataDirId, providerSecretName, createSecret, removeSecrets, listProviderSecrets } from './secrets.js'

/**
 * The provider store. A provider's METADATA (name, type, the NAMES of its credential variables,
 * its non-secret config) is a JSON file `providers/<name>.json` in podshell's data dir. Its VALUES
 * exist only in Podman secrets, one per variable (secrets.ts): no podshell file, label, log or
 * output ever holds a value, so `grep -r <value> <data dir>` finds nothing (tested).
 *
 * Order of operations, so that a podshell killed at any point leaves nothing a later command
 * cannot clean up (all under ProviderLock):
 *   create: secrets, then metadata. Killed in between → secrets no metadata lists → gc removes.
 *   update: for each variable, rm + create its secret, then metadata. Killed in between → a
 *           listed variable's secret may be missing (injection refuses the provider and says to
 *           run update again) or a new variable's secret is unlisted (gc removes it).
 *   delete: metadata, then secrets. Killed in between → unlisted secrets → gc removes.
 */

export const ProviderRecordSchema = z
  .object({
    name: objectName.describe('Provider name: 1-63 lowercase letters, digits, ".", "_" or "-"'),
    type: z
      .union([z.enum(PROVIDER_TYPE_NAMES), z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/)])
      .describe('Provider type (src/credentials/types.ts) or an imported provider profile id (src/credentials/profiles.ts): decides --from-existing variables and the credential binding'),
    credentials: z
      .array(envKey)
      .describe('NAMES of the credential variables; each value lives only in the Podman secret providerSecretName(name, variable)'),
    config: z
      .record(envKey, z.string().max(4096).regex(/^[^\0\r\n]*$/, 'must be one line without NUL'))
      .describe('Non-secret settings, injected as plain environment variables (e.g. JIRA_URL)'),
    created_at: z.string().describe('ISO-8601 creation time'),
    updated_at: z.string().describe('ISO-8601 time of the last update'),
  })
  .strict()
  .describe('Provider metadata, providers/<name>.json; never holds a credential value')

export type ProviderRecord = z.infer<typeof ProviderRecordSchema>

export const providerFile = (dataDir: string, name: string) => join(providersDir(dataDir), `${name}.json`)

export interface ProviderSpec {
  name: string
  type: ProviderRecord['type']
  /** Variable name → value. Values go to Podman only. */
  credentials: ReadonlyMap<string, string>
  config: ReadonlyMap<string, string>
}

export interface ProviderChange {
  credentials?: ReadonlyMap<string, string>
  config?: ReadonlyMap<string, string>
}

/** Reads one provider's metadata; undefined when it does not exist. Throws on a corrupt file. */
export function readProvider(dataDir: string, name: string): ProviderRecord | undefined {
  check(objectName, name, 'provider name')
  const file = providerFile(dataDir, name)
  const text = readFileIfExists(file)
  return text === undefined ? undefined : parseRecord(file, name, text)
}

/** Like readProvider, but a missing provider is an error naming it. */
export function requireProvider(dataDir: string, name: string): ProviderRecord {
  const p = readProvider(dataDir, name)
  if (!p) {
    throw new PodshellError(`provider ${name} not found`, {
      hint: '`podshell provider list` shows the providers; create one with `podshell provider create`',
      code: 'PROVIDER_NOT_FOUND',
    })
  }
  return p
}

/** All providers, sorted by name; unreadable files are reported in `broken`, not thrown. */
export function listProviders(dataDir: string): { providers: ProviderRecord[]; broken: { name: string; error: string }[] } {
  let files: string[]
  try {
    files = readdirSync(providersDir(dataDir))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { providers: [], broken: [] }
    throw fsError(`cannot read ${providersDir(dataDir)}`, e)
  }
  const providers: ProviderRecord[] = []
  const broken: { name: string; error: string }[] = []
  for (const f of files.sort()) {
    if (!f.endsWith('.json') || f.startsWith('.')) continue
    const name = f.slice(0, -'.json'.length)
    if (!objectName.safeParse(name).success) continue
    try {
      const p = readProvider(dataDir, name)
      if (p) providers.push(p)
    } catch (e) {
      broken.push({ name, error: e instanceof PodshellError ? e.oneLine() : String(e) })
    }
  }
  return { providers, broken }
}

function parseRecord(file: string, name: string, text: string): ProviderRecord {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    throw corrupt(file, name, 'not valid JSON')
  }
  const r = ProviderRecordSchema.safeParse(raw)
  if (!r.success) throw corrupt(file, name, formatZodIssues(r.error)[0]!)
  if (r.data.name !== name) throw corrupt(file, name, `name: holds provider ${r.data.name}`)
  return r.data
}

function corrupt(file: string, name: string, why: string): PodshellError {
  return new PodshellError(`provider file ${file} is corrupt (${why})`, {
    hint: `delete the provider with \`podshell provider delete ${name} --force\` and create it again`,
    code: 'PROVIDER_CORRUPT',
  })
}

function writeRecord(dataDir: string, rec: ProviderRecord): void {
  // Parse before writing: a record that would not read back is a bug, caught here, not later.
  const clean = ProviderRecordSchema.parse(rec)
  writeFileAtomic(providerFile(dataDir, rec.name), JSON.stringify(clean, null, 2) + '\n')
}

/**
 * Creates a provider: its secrets, then its metadata. A failure part-way removes the secrets this
 * call made. A secret that already exists under the provider's name with podshell's labels and no
 * metadata is an orphan of an interrupted create (we hold the lock, so nobody else is creating
 * it): it is replaced.
 */
export async function createProvider(podman: Podman, dataDir: string, spec: ProviderSpec): Promise<ProviderRecord> {
  check(objectName, spec.name, 'provider name', 'e.g. --name my-github')
  if (spec.credentials.size === 0) {
    throw new PodshellError(`provider ${spec.name} has no credentials`, {
      hint: 'pass --credential KEY[=VALUE] or --from-existing',
      code: 'INVALID_INPUT',
      exitCode: 2,
    })
  }
  checkDisjoint(spec.name, [...spec.credentials.keys()], [...spec.config.keys()])
  return ProviderLock.with(dataDir, async () => {
    if (existsSync(providerFile(dataDir, spec.name))) {
      throw new PodshellError(`provider ${spec.name} already exists`, {
        hint: `change it with \`podshell provider update ${spec.name}\`, or delete it first`,
        code: 'PROVIDER_EXISTS',
      })
    }
    const made: string[] = []
    try {
      const existing = new Set((await listProviderSecrets(podman)).filter(s => s.provider === spec.name).map(s => s.name))
      for (const [variable, value] of spec.credentials) {
        const secret = providerSecretName(spec.name, variable)
        if (existing.has(secret)) await removeSecrets(podman, [secret])
        await createSecret(podman, secret, spec.name, variable, value, dataDir)
        made.push(secret)
      }
      const now = new Date().toISOString()
      const rec: ProviderRecord = {
        name: spec.name,
        type: spec.type,
        credentials: [...spec.credentials.keys()],
        config: Object.fromEntries(spec.config),
        created_at: now,
        updated_at: now,
      }
      writeRecord(dataDir, rec)
      return rec
    } catch (e) {
      await removeSecrets(podman, made).catch(() => undefined)
      throw e
    }
  })
}

/**
 * Updates a provider: replaces the given credentials' values (adding new variables) and merges the
 * given config keys. Podman 4.3 has no `secret create --replace`, so each value is rm + create: a
 * sandbox start or exec landing in those ~30 ms fails with "no such secret" and can be retried.
 * Podman resolves `--secret …,type=env` by name whenever a process starts in the container
 * (measured on 4.3.1): a running main process keeps its value, new exec sessions and restarts get
 * the new one. Config changes reach sandboxes created afterwards.
 */
export async function updateProvider(podman: Podman, dataDir: string, name: string, change: ProviderChange): Promise<ProviderRecord> {
  const creds = change.credentials ?? new Map<string, string>()
  const config = change.config ?? new Map<string, string>()
  if (creds.size === 0 && config.size === 0) {
    throw new PodshellError(`nothing to update for provider ${name}`, {
      hint: 'pass --credential, --from-existing or --config',
      code: 'INVALID_INPUT',
      exitCode: 2,
    })
  }
  return ProviderLock.with(dataDir, async () => {
    const cur = requireProvider(dataDir, name)
    const variables = [...cur.credentials, ...[...creds.keys()].filter(k => !cur.credentials.includes(k))]
    const mergedConfig = Object.fromEntries([...Object.entries(cur.config), ...config])
    checkDisjoint(name, variables, Object.keys(mergedConfig))
    for (const [variable, value] of creds) {
      const secret = providerSecretName(name, variable)
      await removeSecrets(podman, [secret])
      try {
        await createSecret(podman, secret, name, variable, value, dataDir)
      } catch (e) {
        if (e instanceof PodshellError) {
          throw new PodshellError(`${e.message}; provider ${name} has lost credential ${variable}`, {
            hint: `run \`podshell provider update ${name} --credential ${variable}\` again`,
            code: e.code,
            cause: e,
          })
        }
        throw e
      }
    }
    const rec: ProviderRecord = {
      ...cur,
      credentials: variables,
      config: mergedConfig,
      updated_at: new Date().toISOString(),
    }
    writeRecord(dataDir, rec)
    // Running placeholder-mode sandboxes resolve their placeholders to the new values at once (the
    // gateway holds values in memory only; a gateway that is down gets them from the Podman secrets
    // when it is next ensured). The values go over the gateway's owner-only control socket.
    if (creds.size > 0) await new GatewayClient(dataDir).call({ op: 'credentials-rotate', provider: name, values: Object.fromEntries(creds) }).catch(() => undefined)
    return rec
  })
}

/**
 * Deletes a provider: metadata first (no new sandbox can attach it from then on), then every
 * secret labelled with its name. Works on a corrupt metadata file too. Returns false when there
 * was nothing to delete.
 */
export async function deleteProvider(podman: Podman, dataDir: string, name: string): Promise<boolean> {
  check(objectName, name, 'provider name')
  return ProviderLock.with(dataDir, async () => {
    const file = providerFile(dataDir, name)
    const had = existsSync(file)
    try {
      rmSync(file, { force: true })
    } catch (e) {
      throw fsError(`cannot remove ${file}`, e)
    }
    const secrets = (await listProviderSecrets(podman)).filter(
      s => s.provider === name && s.name === providerSecretName(name, s.variable),
    )
    await removeSecrets(podman, secrets.map(s => s.name))
    // Running sandboxes' placeholders of this provider stop resolving at once (403), not at their
    // next restart. A gateway that is down holds no value anyway.
    await new GatewayClient(dataDir).call({ op: 'credentials-drop', provider: name }).catch(() => undefined)
    return had || secrets.length > 0
  })
}

/**
 * Removes provider secrets that no provider's metadata lists: leftovers of a create, update or
 * delete that was killed. Skipped (returns []) while another podshell holds the provider lock,
 * because then an unlisted secret may be one that is being created right now.
 * Only secrets carrying podshell's labels AND the name podshell derives from them are touched:
 * a user's own secret that merely shares the prefix is left alone.
 */
export async function gcProviderSecrets(podman: Podman, dataDir: string): Promise<string[]> {
  const lock = ProviderLock.tryAcquire(dataDir)
  if (!lock) return []
  try {
    const secrets = await listProviderSecrets(podman)
    const orphans: string[] = []
    const records = new Map<string, ProviderRecord | 'missing' | 'corrupt'>()
    const mine = dataDirId(dataDir)
    for (const s of secrets) {
      if (!s.provider || !s.variable || s.name !== providerSecretName(s.provider, s.variable)) continue
      // Another data dir's secret (PODSHELL_HOME differs) is not an orphan of this one.
      if (s.data !== mine) continue
      let rec = records.get(s.provider)
      if (rec === undefined) {
        try {
          rec = readProvider(dataDir, s.provider) ?? 'missing'
        } catch {
          rec = 'corrupt'
        }
        records.set(s.provider, rec)
      }
      // A corrupt file still claims its secrets: `provider delete --force` removes both.
      if (rec === 'corrupt') continue
      if (rec === 'missing' || !rec.credentials.includes(s.variable)) orphans.push(s.name)
    }
    return await removeSecrets(podman, orphans)
  } finally {
    lock.release()
  }
}

/** A variable is either a credential (secret) or config (plain), never both. */
function checkDisjoint(provider: string, credentials: readonly string[], config: readonly string[]): void {
  const both = config.find(k => credentials.includes(k))
  if (both !== undefined) {
    throw new PodshellError(`${both} of provider ${provider} cannot be both a credential and config`, {
      hint: 'a credential is secret and stored in Podman; config is plain text: choose one',
      code: 'INVALID_INPUT',
      exitCode: 2,
    })
  }
}
