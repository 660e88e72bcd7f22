/**
 * A new sandbox's trust bundle (`sandbox create`), from a cache when nothing it is made of changed.
 *
 * The bundle is a function of three inputs: the CA certificate, the CA key (the full path checks
 * that it belongs to the certificate) and the upstream roots text. The full path
 * (src/tls/host.ts: load and check the CA with @peculiar/x509, build the PKCS#12 store with
 * @peculiar/asn1-pfx) costs ~150–400 ms, nearly all of it loading those libraries; it was the
 * largest step of create before the pod. Here the three inputs are read as bytes and hashed; a
 * cache entry `gateway/tls/bundles/<hash>/` written after a full path that succeeded on exactly
 * those bytes is copied instead. So every check the full path makes holds on a hit: a CA file
 * changed in any way (damaged, swapped, rotated) is a different hash, a miss, and the full path
 * with its errors. The entry is also checked against the inputs it is used for (its CA copy is the
 * CA file, its bundle is the roots plus that CA) so a half-written or stale entry is a miss.
 *
 * The cache sits next to the CA key, in the gateway's TLS state dir (no sandbox mounts it); it
 * holds public certificates only, like the truststore cache in trust.ts.
 */
import { readFileSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import type { Env } from '../config/paths.js'
import { loadEffectiveConfig } from '../config/enterprise.js'
import { caDir, sandboxTlsDir, tlsStateDir, upstreamRootsFile } from './paths.js'
import { fingerprintOf, parsePemCerts } from './pem.js'
import { sandboxTrustSpec, trustSources, writeAtomic, writeUpstreamRoots, type SandboxTrust } from './roots.js'

const FILES = ['ca-bundle.pem', 'podshell-ca.pem', 'truststore.p12'] as const

/** `gateway/tls/bundles/`: one entry per (CA, key, upstream roots). */
export const bundleCacheDir = (data: string) => join(tlsStateDir(data), 'bundles')

function readOr(file: string): Buffer | undefined {
  try {
    return readFileSync(file)
  } catch {
    return undefined
  }
}

/** The cache key of the current inputs, or undefined when the CA files cannot be read (first use). */
function inputsKey(data: string, roots: string): { key: string; certPem: string } | undefined {
  const cert = readOr(join(caDir(data), 'ca.pem'))
  const key = readOr(join(caDir(data), 'ca-key.pem'))
  if (!cert || !key) return undefined
  const h = createHash('sha256')
  for (const part of [cert, key, Buffer.from(roots)]) {
    h.update(String(part.length)).update('\0').update(part)
  }
  const text = cert.toString('utf8')
  return { key: h.digest('hex').slice(0, 32), certPem: text.endsWith('\n') ? text : text + '\n' }
}

/** The entry's files when they are consistent with the inputs; undefined otherwise. */
function readEntry(dir: string, roots: string, certPem: string): Map<string, Buffer> | undefined {
  const got = new Map<string, Buffer>()
  for (const f of FILES) {
    const b = readOr(join(dir, f))
    if (!b || b.length === 0) return undefined
    got.set(f, b)
  }
  const ca = got.get('podshell-ca.pem')!.toString('utf8')
  const bundle = got.get('ca-bundle.pem')!.toString('utf8')
  const lead = roots.endsWith('\n') || roots === '' ? roots : roots + '\n'
  // Exactly what prepareSandboxTrust writes: the roots, one comment line, the CA.
  if (ca !== certPem || !bundle.startsWith(lead) || !bundle.endsWith(certPem)) return undefined
  if (!/^# podshell sandbox CA \([^\n]*\)\n$/.test(bundle.slice(lead.length, bundle.length - certPem.length))) return undefined
  return got
}

export async function prepareSandboxTls(data: string, name: string, env: Env): Promise<SandboxTrust> {
  const extra = loadEffectiveConfig(env).effective.tlsExtraCaFiles
  const roots = writeUpstreamRoots(data, trustSources(env, extra))
  const before = inputsKey(data, roots)
  if (before) {
    const entry = readEntry(join(bundleCacheDir(data), before.key), roots, before.certPem)
    const cert = entry ? parsePemCerts(before.certPem, false).certs[0] : undefined
    if (entry && cert) {
      const dir = sandboxTlsDir(data, name)
      for (const f of FILES) writeAtomic(join(dir, f), entry.get(f)!)
      return { ...sandboxTrustSpec(data, name), caFingerprint: fingerprintOf(cert.der) }
    }
  }
  // Miss: the full path (creates the CA on first use, checks it, builds the store).
  const trust = await (await import('./host.js')).prepareSandboxTls(data, name, env)
  try {
    // Stored only when the inputs did not change while the full path ran (what it checked is what
    // the key names) and what it wrote matches them (a rotation or a roots change in between would
    // make it another CA's or roots' bundle).
    const rootsNow = readFileSync(upstreamRootsFile(data), 'utf8')
    const after = inputsKey(data, rootsNow)
    const made = readEntry(sandboxTlsDir(data, name), rootsNow, after?.certPem ?? '')
    if (after && made && (!before || before.key === after.key)) {
      for (const f of FILES) writeAtomic(join(bundleCacheDir(data), after.key, f), made.get(f)!)
      // Entries of earlier CAs or roots are never used again.
      for (const old of readdirSync(bundleCacheDir(data))) if (old !== after.key) rmSync(join(bundleCacheDir(data), old), { recursive: true, force: true })
    }
  } catch {
    // a cache: the sandbox has its bundle either way
  }
  return trust
}
