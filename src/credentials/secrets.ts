import { createHash } from 'node:crypto'
import { PodshellError } from '../errors.js'
import type { Podman } from '../podman/podman.js'
import { helperRunArgs } from '../podman/helper-container.js'

/**
 * Podman secrets that hold provider credential values. Values never touch podshell's own files:
 * they go from the caller (environment or flag) to `podman secret create` through podman's
 * ENVIRONMENT (`--env NAME VAR`), never its argv: /proc/<pid>/cmdline is readable by every user
 * on the host, /proc/<pid>/environ only by the same user and root (mode 0400 plus the ptrace
 * check). Stdin would be equivalent, but measured on Podman 4.3.1, `secret create NAME -` refuses
 * any stdin that is not a FIFO ("if `-` is used, data must be passed into stdin"), and Node gives
 * a child a socketpair, not a FIFO.
 *
 * Naming: `podshell.provider.<provider>.<VAR>` when that fits Podman's secret-name rule (measured on
 * Podman 4.3.1: at most 64 characters of [a-zA-Z0-9_.-], first and last alphanumeric); otherwise
 * `podshell.provider.<24 hex of sha256(provider NUL VAR)>`. The two forms cannot collide: the
 * readable form always has a "." after the provider, the hashed form never does. Ownership is
 * never read back from the name: every podshell secret carries the labels
 * io.podshell.provider=<provider> and io.podshell.var=<VAR> (`podman secret create --label` exists
 * in 4.3.1; `podman secret ls --filter label=…` does not, so listing filters by the name prefix and
 * then reads the labels with one `podman secret inspect`).
 */
export const SECRET_PREFIX = 'podshell.provider.'
export const LABEL_PROVIDER = 'io.podshell.provider'
export const LABEL_VAR = 'io.podshell.var'
/** Which podshell data dir owns the secret: gc of one data dir never touches another's secrets. */
export const LABEL_DATA = 'io.podshell.data'

/** A short, stable id of a data dir (its path hashed), for the LABEL_DATA label. */
export function dataDirId(dataDir: string): string {
  return createHash('sha256').update(dataDir).digest('hex').slice(0, 16)
}

/** Podman's secret name rule (libpod/secrets, 4.3.1): 1-64 of [a-zA-Z0-9_.-], alphanumeric ends. */
const PODMAN_SECRET_NAME = /^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,62}[a-zA-Z0-9])?$/

/** The podman secret that holds `variable` of `provider`. Deterministic: no registry needed. */
export function providerSecretName(provider: string, variable: string): string {
  const readable = `${SECRET_PREFIX}${provider}.${variable}`
  if (PODMAN_SECRET_NAME.test(readable)) return readable
  const h = createHash('sha256').update(`${provider}\0${variable}`).digest('hex').slice(0, 24)
  return `${SECRET_PREFIX}${h}`
}

export interface SecretInfo {
  name: string
  id: string
  /** io.podshell.provider label ('' when absent: then the secret is not podshell's). */
  provider: string
  /** io.podshell.var label. */
  variable: string
  /** io.podshell.data label: the owning data dir's id ('' for secrets made before it existed). */
  data: string
  createdAt: Date
}

interface SecretInspectJson {
  ID: string
  CreatedAt: string
  Spec: { Name: string; Labels?: Record<string, string> | null }
}

/** The variable of podman's own environment that carries the value into `secret create --env`. */
const VALUE_VAR = 'PODSHELL_SECRET_VALUE'

/**
 * Creates one secret. The argv holds only the name and labels; podman's error texts name the
 * variable, never its content.
 */
export async function createSecret(podman: Podman, name: string, provider: string, variable: string, value: string, dataDir: string): Promise<void> {
  await podman.run(
    ['secret', 'create', '--env', '--label', `${LABEL_PROVIDER}=${provider}`, '--label', `${LABEL_VAR}=${variable}`, '--label', `${LABEL_DATA}=${dataDirId(dataDir)}`, name, VALUE_VAR],
    { env: { [VALUE_VAR]: value } },
  )
}

/** Removes secrets by name; names that do not exist are not an error. Returns the names removed. */
export async function removeSecrets(podman: Podman, names: readonly string[]): Promise<string[]> {
  const removed: string[] = []
  // One call per name: `podman secret rm a b` stops at the first missing name (exit 125) and
  // would leave the rest behind.
  for (const n of names) {
    const r = await podman.run(['secret', 'rm', n], { reject: false })
    if (r.exitCode === 0) removed.push(n)
    else if (!/no such secret/i.test(r.stderr)) {
      throw new PodshellError(`cannot remove podman secret ${n}: ${lastLine(r.stderr)}`, {
        hint: `remove it by hand with \`podman secret rm ${n}\``,
        code: 'SECRET_RM_FAILED',
      })
    }
  }
  return removed
}

/**
 * Every podman secret whose name starts with podshell's prefix, with its labels. Secrets named
 * like podshell's but without its labels are returned with provider '' so callers leave them alone.
 */
export async function listProviderSecrets(podman: Podman): Promise<SecretInfo[]> {
  const r = await podman.run(['secret', 'ls', '--noheading', '--format', '{{.Name}}'])
  const names = r.stdout.split('\n').map(s => s.trim()).filter(n => n.startsWith(SECRET_PREFIX))
  if (names.length === 0) return []
  return inspectSecrets(podman, names)
}

/**
 * Inspects the named secrets; names that do not exist are left out of the result (a secret can
 * vanish between `ls` and `inspect` when another podshell removes it).
 */
export async function inspectSecrets(podman: Podman, names: readonly string[]): Promise<SecretInfo[]> {
  if (names.length === 0) return []
  const r = await podman.run(['secret', 'inspect', ...names], { reject: false })
  // Measured on 4.3.1: with some names missing, inspect prints the found ones as JSON on stdout,
  // then "no such secret" on stderr and exits 125. Any other failure is a real error.
  if (r.exitCode !== 0) {
    const errors = r.stderr.split('\n').filter(l => /^Error:/.test(l.trim()))
    if (errors.length === 0 || errors.some(l => !/no such secret/i.test(l))) {
      throw new PodshellError(`podman secret inspect failed: ${lastLine(r.stderr)}`, {
        hint: 'run `podshell doctor` to check the host',
        code: 'PODMAN_FAILED',
      })
    }
  }
  return parseInspect(r.stdout)
}

function parseInspect(stdout: string): SecretInfo[] {
  let arr: SecretInspectJson[]
  try {
    arr = JSON.parse(stdout || '[]') as SecretInspectJson[]
  } catch (e) {
    throw new PodshellError('podman secret inspect printed invalid JSON', { hint: 'run `podshell doctor` to check the host', cause: e })
  }
  return arr.map(s => ({
    name: s.Spec.Name,
    id: s.ID,
    provider: s.Spec.Labels?.[LABEL_PROVIDER] ?? '',
    variable: s.Spec.Labels?.[LABEL_VAR] ?? '',
    data: s.Spec.Labels?.[LABEL_DATA] ?? '',
    createdAt: new Date(s.CreatedAt),
  }))
}

function lastLine(stderr: string): string {
  return (
    stderr
      .split('\n')
      .map(l => l.trim())
      .filter(l => l && !/level=warning/.test(l))
      .pop()
      ?.replace(/^Error:\s*/, '') ?? 'unknown error'
  )
}

/**
 * The values of podshell secrets, read back (issue 12: the gateway needs them in memory to
 * substitute placeholders). Podman 4.3 cannot print a secret (`secret inspect --showsecret` came
 * later), so a short-lived helper container of `image` (the gateway image: node, nothing else)
 * gets them as `type=env` secrets and prints them as JSON on stdout, with no network. The values
 * pass through this process's memory only; nothing is written.
 */
export async function readSecretValues(podman: Podman, secrets: readonly string[], image: string): Promise<string[]> {
  if (secrets.length === 0) return []
  const args = helperRunArgs({
    image,
    entrypoint: 'node',
    args: ['-e', `const n=${secrets.length};const o=[];for(let i=0;i<n;i++)o.push(process.env['PODSHELL_V'+i]??null);process.stdout.write(JSON.stringify(o))`],
    secretEnv: secrets.map((s, i) => ({ secret: s, target: `PODSHELL_V${i}` })),
  })
  const r = await podman.run(args)
  let out: unknown
  try {
    out = JSON.parse(r.stdout)
  } catch (e) {
    throw new PodshellError('cannot read the provider secrets back (the helper container printed no JSON)', { hint: 'run `podshell doctor` to check the host', cause: e })
  }
  if (!Array.isArray(out) || out.length !== secrets.length || out.some(v => typeof v !== 'string')) {
    throw new PodshellError('cannot read the provider secrets back (a secret is missing or empty)', { hint: 'run `podshell provider list` and update the provider', code: 'PROVIDER_INCOMPLETE' })
  }
  return out as string[]
}
