/**
 * The per-user podshell sandbox CA: the certificate authority the gateway signs its per-host leaf
 * certificates with when it terminates a sandbox's TLS (src/gateway/tls-terminate.ts).
 *
 * Layout (below the data dir; see src/config/paths.ts):
 *   gateway/tls/ca/ca.pem          the CA certificate (public; copied into every sandbox's bundle)
 *   gateway/tls/ca/ca-key.pem      its private key, PKCS#8, mode 0600
 *   gateway/tls/previous/<fp>/     CAs replaced by `gateway ca --rotate`, kept while sandboxes
 *                                  created under them still trust them (see `caForFingerprint`)
 *
 * Security:
 *  - The key is never mounted into a sandbox: sandboxes get a copy of the CERTIFICATE only
 *    (src/tls/trust.ts writes it into the sandbox's own tls dir), and sandbox mounts that would
 *    expose the data dir are refused (src/sandbox/sensitive.ts, an `escape` path).
 *  - ECDSA P-256, 1-year validity, basicConstraints CA with pathLen 0 (it can sign leaves, not
 *    other CAs), keyUsage keyCertSign|cRLSign, critical.
 *  - A CA that exists but cannot be read or parsed, or whose key does not belong to the
 *    certificate, is an ERROR, never silently replaced: a new CA would make every running sandbox
 *    distrust the gateway, and a swapped file could be an attack. `rotateCa` is the explicit way.
 *  - Creation is atomic against a concurrent creator (the CLI and the gateway can both call
 *    `ensureCa`): the pair is written into a fresh directory which is then renamed to `ca`; the
 *    loser of the race finds the winner's CA and loads that.
 *
 * X.509 is built and parsed by @peculiar/x509 on Node's WebCrypto (no hand-written ASN.1).
 */
import { webcrypto, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync, readdirSync, fsyncSync, openSync, closeSync } from 'node:fs'
import { join } from 'node:path'
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata polyfill
// loaded first.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { PodshellError } from '../errors.js'
import { tlsStateDir, caDir, previousCaDir } from './paths.js'
import { fingerprintOf } from './pem.js'
export { fingerprintOf }

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

export type CryptoKey = webcrypto.CryptoKey
export type CryptoKeyPair = webcrypto.CryptoKeyPair

export const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const
export const SIGN_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const
const CA_VALIDITY_MS = 365 * 24 * 3600 * 1000

export interface Ca {
  /** PEM of the certificate. */
  readonly certPem: string
  readonly cert: x509.X509Certificate
  /** WebCrypto signing key. */
  readonly key: CryptoKey
  /** SHA-256 of the certificate's DER, lowercase hex. */
  readonly fingerprint: string
}

const previousDir = previousCaDir
export { tlsStateDir, caDir }

/** `AB:CD:…` form, as `openssl x509 -fingerprint -sha256` prints it. */
export function colonFingerprint(fp: string): string {
  return fp.toUpperCase().match(/../g)!.join(':')
}

/** Generates a new CA (not persisted). `name` is the CN: "podshell sandbox CA <user>@<host>". */
export async function generateCa(name: string, now = new Date()): Promise<Ca> {
  const keys = (await webcrypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [name] }, { O: ['podshell'] }],
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + CA_VALIDITY_MS),
    signingAlgorithm: SIGN_ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  return { certPem: cert.toString('pem') + '\n', cert, key: keys.privateKey, fingerprint: fingerprintOf(cert.rawData) }
}

/** Positive 16-byte serial, hex (RFC 5280: positive, ≤ 20 octets; random against collisions). */
export function randomSerial(): string {
  const b = randomBytes(16)
  b[0] = b[0]! & 0x7f | 0x01
  return b.toString('hex')
}

async function keyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key)
  return x509.PemConverter.encode(der, 'PRIVATE KEY') + '\n'
}

function corrupt(dir: string, why: string): PodshellError {
  return new PodshellError(`the podshell sandbox CA in ${dir} is unusable: ${why}`, {
    hint: '`podshell gateway ca --rotate` replaces it (running sandboxes trust the new CA after a restart)',
    code: 'TLS_CA_CORRUPT',
  })
}

/** Loads a CA directory; undefined when it does not exist at all; throws when it is damaged. */
export async function loadCaDir(dir: string): Promise<Ca | undefined> {
  const certFile = join(dir, 'ca.pem')
  const keyFile = join(dir, 'ca-key.pem')
  if (!existsSync(dir)) return undefined
  let certPem: string
  let keyPem: string
  try {
    certPem = readFileSync(certFile, 'utf8')
    keyPem = readFileSync(keyFile, 'utf8')
  } catch (e) {
    throw corrupt(dir, `cannot read ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'a missing file' : 'its files'} (${(e as Error).message.split('\n')[0]})`)
  }
  let cert: x509.X509Certificate
  try {
    cert = new x509.X509Certificate(certPem)
  } catch {
    throw corrupt(dir, 'ca.pem is not a PEM certificate')
  }
  // The key must be the certificate's: compare the SPKI derived from the private key.
  let spki: Buffer
  try {
    spki = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' })
  } catch {
    throw corrupt(dir, 'ca-key.pem is not a PEM private key')
  }
  if (!Buffer.from(cert.publicKey.rawData).equals(spki)) throw corrupt(dir, 'ca-key.pem does not belong to ca.pem')
  const bc = cert.getExtension(x509.BasicConstraintsExtension)
  if (!bc?.ca) throw corrupt(dir, 'ca.pem is not a CA certificate')
  let key: CryptoKey
  try {
    key = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(keyPem), EC_ALG, false, ['sign'])
  } catch {
    throw corrupt(dir, 'ca-key.pem is not an ECDSA P-256 key')
  }
  return { certPem: certPem.endsWith('\n') ? certPem : certPem + '\n', cert, key, fingerprint: fingerprintOf(cert.rawData) }
}

function writeSynced(file: string, data: string, mode: number): void {
  writeFileSync(file, data, { mode, flag: 'wx' })
  const fd = openSync(file, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/** Writes `ca` into a fresh temp dir next to `caDir(data)` and returns it. */
async function stage(data: string, ca: Ca, keyPem: string): Promise<string> {
  const root = tlsStateDir(data)
  mkdirSync(root, { recursive: true, mode: 0o700 })
  const tmp = join(root, `.ca-${process.pid}-${randomBytes(4).toString('hex')}`)
  mkdirSync(tmp, { mode: 0o700 })
  writeSynced(join(tmp, 'ca.pem'), ca.certPem, 0o644)
  // The key: readable by the user only (inside the gateway container that is the container's root
  // mapped to the user; no sandbox ever mounts this directory).
  writeSynced(join(tmp, 'ca-key.pem'), keyPem, 0o600)
  return tmp
}

export interface CaIdentity {
  user: string
  host: string
}

export function caName(id: CaIdentity): string {
  return `podshell sandbox CA ${id.user}@${id.host}`
}

/**
 * The user's CA: loaded when it exists, generated on first use. A damaged CA throws (see header).
 */
export async function ensureCa(data: string, id: CaIdentity): Promise<Ca> {
  const existing = await loadCaDir(caDir(data))
  if (existing) return existing
  const ca = await generateCa(caName(id))
  const tmp = await stage(data, ca, await keyToPem(ca.key))
  try {
    renameSync(tmp, caDir(data))
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true })
    const code = (e as NodeJS.ErrnoException).code
    // Another process created it between our check and our rename: use theirs.
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      const theirs = await loadCaDir(caDir(data))
      if (theirs) return theirs
    }
    throw e
  }
  return ca
}

/**
 * `gateway ca --rotate`: a new CA replaces the current one, which moves to `previous/<fp>` so the
 * gateway can keep signing for sandboxes created under it (their bundle holds only the old CA)
 * until they are recreated. A damaged current CA is discarded (this is the only way to do that).
 */
export async function rotateCa(data: string, id: CaIdentity): Promise<{ ca: Ca; previous: string | undefined }> {
  const cur = caDir(data)
  let old: Ca | undefined
  try {
    old = await loadCaDir(cur)
  } catch {
    old = undefined
  }
  const ca = await generateCa(caName(id))
  const tmp = await stage(data, ca, await keyToPem(ca.key))
  if (existsSync(cur)) {
    if (old) {
      mkdirSync(previousDir(data), { recursive: true, mode: 0o700 })
      const dest = join(previousDir(data), old.fingerprint)
      rmSync(dest, { recursive: true, force: true })
      renameSync(cur, dest)
    } else {
      rmSync(cur, { recursive: true, force: true })
    }
  }
  renameSync(tmp, cur)
  return { ca, previous: old?.fingerprint }
}

/** The current CA or a retained previous one with this fingerprint; undefined if none. */
export async function caForFingerprint(data: string, fp: string): Promise<Ca | undefined> {
  if (!/^[0-9a-f]{64}$/.test(fp)) return undefined
  const cur = await loadCaDir(caDir(data))
  if (cur?.fingerprint === fp) return cur
  try {
    return await loadCaDir(join(previousDir(data), fp))
  } catch {
    return undefined
  }
}

/** Removes retained previous CAs no sandbox trusts any more. */
export function prunePreviousCas(data: string, inUse: ReadonlySet<string>): string[] {
  const dir = previousDir(data)
  const removed: string[] = []
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return removed
  }
  for (const n of names) {
    if (inUse.has(n)) continue
    rmSync(join(dir, n), { recursive: true, force: true })
    removed.push(n)
  }
  return removed
}
