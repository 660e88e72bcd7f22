/**
 * `podshell gateway ca [--rotate]`: the sandbox CA as the user sees it. Library side of the verb
 * (src/cli/gateway.ts only parses and prints).
 */
import { readdirSync } from 'node:fs'
import type { Env } from '../config/paths.js'
import { sandboxesDir } from '../config/paths.js'
import { colonFingerprint, prunePreviousCas, rotateCa, type Ca } from './ca.js'
import { caIdentity, prepareHostTrust } from './host.js'
import { sandboxCaFingerprint } from './trust.js'

export interface CaSummary {
  subject: string
  fingerprint_sha256: string
  not_before: string
  not_after: string
  certificate: string
}

export function caSummary(ca: Ca): CaSummary {
  return {
    subject: ca.cert.subject,
    fingerprint_sha256: colonFingerprint(ca.fingerprint),
    not_before: ca.cert.notBefore.toISOString(),
    not_after: ca.cert.notAfter.toISOString(),
    certificate: ca.certPem,
  }
}

/** The current CA (created on first use). A damaged CA is an error naming `--rotate`. */
export async function currentSandboxCa(data: string, env: Env): Promise<Ca> {
  return (await prepareHostTrust(data, env)).ca
}

/**
 * Replaces the CA. The previous one is kept for the sandboxes whose bundle still holds it (the
 * gateway signs their leaves with it until they are recreated); CAs no sandbox holds are removed.
 */
export async function rotateSandboxCa(data: string, env: Env): Promise<{ ca: Ca; previous: string | undefined }> {
  const r = await rotateCa(data, caIdentity())
  const inUse = new Set<string>()
  let names: string[] = []
  try {
    names = readdirSync(sandboxesDir(data))
  } catch {
    names = []
  }
  for (const n of names) {
    const fp = sandboxCaFingerprint(data, n)
    if (fp) inUse.add(fp)
  }
  prunePreviousCas(data, inUse)
  await prepareHostTrust(data, env)
  return r
}
