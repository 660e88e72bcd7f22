/**
 * Trust material, both directions:
 *
 *  - UPSTREAM (the gateway verifying real servers): the host's system trust store, found the way
 *    the host's own curl/OpenSSL finds it, plus `tls.extra_ca_files` from the user/enterprise
 *    config. The host side writes it to `gateway/tls/upstream-roots.pem`; the gateway (in its
 *    container, which cannot see the host's /etc) reads that file. So an enterprise
 *    TLS-intercepting proxy the host trusts is trusted upstream too (OpenShell #813: a store
 *    narrower than the host's).
 *  - SANDBOX (clients inside trusting the gateway's leaves): one bundle = the same upstream roots +
 *    the podshell CA, written per sandbox into `sandboxes/<name>/tls/` and mounted read-only over
 *    the image's system bundle paths (Debian/Ubuntu, Fedora/RHEL, Alpine layouts) and at
 *    /etc/podshell-tls, with the usual variables pointing at it and a PKCS#12 truststore for Java
 *    (JAVA_TOOL_OPTIONS; beyond OpenShell, #2819). Tunnelled (non-terminated) connections see the
 *    upstream's real chain, which the host roots in the same bundle verify.
 *
 * The per-sandbox copy is what makes CA rotation safe for running sandboxes: a sandbox keeps the
 * bundle it was created with (and the gateway signs its leaves with the CA that bundle holds; see
 * src/tls/ca.ts `caForFingerprint`) until it is recreated.
 *
 * Never in a sandbox: the CA key (gateway/tls/ca/ca-key.pem). A user mount cannot expose the data
 * dir (and so the key) either: src/sandbox/sensitive.ts refuses it as an `escape` path.
 */
import { readFileSync, writeFileSync, renameSync, mkdirSync, statSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { AsnConvert, OctetString } from '@peculiar/asn1-schema'
import { ContentInfo, id_data } from '@peculiar/asn1-cms'
import { PFX, AuthenticatedSafe, SafeContents, SafeBag, CertBag, PKCS12Attribute, id_certBag, id_x509Certificate } from '@peculiar/asn1-pfx'
import * as asn1js from 'asn1js'
import { PodshellError } from '../errors.js'
import { parsePemCerts, loadExtraCaFiles } from './pem.js'
import type { Env } from '../config/paths.js'
import type { Ca } from './ca.js'
import { fingerprintOf } from './pem.js'
import { upstreamRootsFile, sandboxTlsDir, tlsStateDir } from './paths.js'
import { createHash } from 'node:crypto'
export { upstreamRootsFile, sandboxTlsDir } from './paths.js'

// ---------------------------------------------------------------------------------------------
// Host trust store
// ---------------------------------------------------------------------------------------------

/**
 * System bundle files, in the order OpenSSL-based tools on each family use them (curl's
 * configure list and Go's crypto/x509 root_linux.go list the same files).
 */
export const HOST_BUNDLE_CANDIDATES = [
  '/etc/ssl/certs/ca-certificates.crt', // Debian, Ubuntu, Gentoo, Arch, Alpine
  '/etc/pki/tls/certs/ca-bundle.crt', // Fedora, RHEL, CentOS
  '/etc/ssl/ca-bundle.pem', // openSUSE
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem', // RHEL 7+ canonical
  '/etc/pki/tls/cacert.pem', // OpenELEC
  '/etc/ssl/cert.pem', // Alpine, macOS, BSD
] as const

/** The bundle paths a sandbox image may read its system roots from; each is covered by a mount. */
export const IMAGE_BUNDLE_PATHS = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'] as const

/** Where a sandbox sees its own tls dir. */
export const SANDBOX_TLS_DIR = '/etc/podshell-tls'
export const SANDBOX_BUNDLE = `${SANDBOX_TLS_DIR}/ca-bundle.pem`
export const SANDBOX_CA = `${SANDBOX_TLS_DIR}/podshell-ca.pem`
export const SANDBOX_TRUSTSTORE = `${SANDBOX_TLS_DIR}/truststore.p12`
/** Java needs a password argument for a PKCS#12 store; the store holds public certificates only. */
export const TRUSTSTORE_PASSWORD = 'changeit'

/**
 * The host's system bundle: $SSL_CERT_FILE when the user set one (what the host's OpenSSL tools
 * use then), else the first existing candidate. Undefined when the host has none.
 */
export { parsePemCerts, loadExtraCaFiles, derToPem, type PemCert } from './pem.js'

export function findHostBundle(env: Env = process.env, exists: (p: string) => boolean = isNonEmptyFile): string | undefined {
  const own = env.SSL_CERT_FILE
  if (own && own.startsWith('/') && exists(own)) return own
  return HOST_BUNDLE_CANDIDATES.find(p => exists(p))
}

function isNonEmptyFile(p: string): boolean {
  try {
    const st = statSync(p)
    return st.isFile() && st.size > 0
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------------
// Java truststore (PKCS#12)
// ---------------------------------------------------------------------------------------------

/** Oracle's "trusted key usage" bag attribute: what makes Java load a cert bag as a trustedCertEntry. */
const ORACLE_TRUSTED_KEY_USAGE = '2.16.840.1.113894.746875.1.1'
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0'
const FRIENDLY_NAME = '1.2.840.113549.1.9.20'

function ber(v: asn1js.BaseBlock): ArrayBuffer {
  return v.toBER(false)
}

/**
 * PKCS12Attribute's constructor (asn1-pfx 2.11.1) drops its params (`Object.assign(params)`), so
 * the fields are set here; the test suite checks the result with openssl and keytool.
 */
function attribute(attrId: string, value: ArrayBuffer): PKCS12Attribute {
  const a = new PKCS12Attribute()
  a.attrId = attrId
  a.attrValues = [value]
  return a
}

/**
 * A PKCS#12 truststore of `certs`: one unencrypted SafeContents of cert bags, each with a
 * friendlyName (the alias) and Oracle's trusted-key-usage attribute (anyExtendedKeyUsage), which
 * is how keytool itself writes trusted certificates into PKCS#12. No private key, so no
 * encryption; no MAC (Java 11.0.12+/17 load a MAC-less store; the password Java is given is then
 * not checked). Built with @peculiar/asn1-pfx (no hand-written ASN.1 framing).
 */
export function buildTruststore(certs: readonly { der: Uint8Array; alias: string }[]): Buffer {
  const bags = certs.map(
    c =>
      new SafeBag({
        bagId: id_certBag,
        bagValue: AsnConvert.serialize(new CertBag({ certId: id_x509Certificate, certValue: AsnConvert.serialize(new OctetString(c.der)) })),
        bagAttributes: [
          attribute(FRIENDLY_NAME, ber(new asn1js.BmpString({ value: c.alias }))),
          attribute(ORACLE_TRUSTED_KEY_USAGE, ber(new asn1js.ObjectIdentifier({ value: ANY_EXTENDED_KEY_USAGE }))),
        ],
      }),
  )
  const safe = AsnConvert.serialize(new SafeContents(bags))
  const auth = AsnConvert.serialize(new AuthenticatedSafe([new ContentInfo({ contentType: id_data, content: AsnConvert.serialize(new OctetString(safe)) })]))
  const pfx = new PFX({ version: 3, authSafe: new ContentInfo({ contentType: id_data, content: AsnConvert.serialize(new OctetString(auth)) }) })
  ;(pfx as { macData?: unknown }).macData = undefined
  return Buffer.from(AsnConvert.serialize(pfx))
}

// ---------------------------------------------------------------------------------------------
// Files: upstream roots (gateway) and per-sandbox bundles
// ---------------------------------------------------------------------------------------------


function writeAtomic(file: string, data: string | Buffer, mode = 0o644): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, data, { mode })
  renameSync(tmp, file)
}

export interface TrustSources {
  /** The host's system bundle file, or undefined (then only extra CAs are trusted upstream). */
  readonly hostBundle: string | undefined
  /** `tls.extra_ca_files`, already expanded to absolute paths. */
  readonly extraCaFiles: readonly string[]
}

export function trustSources(env: Env, extraCaFiles: readonly string[] = []): TrustSources {
  return { hostBundle: findHostBundle(env), extraCaFiles }
}

/**
 * The upstream roots as one PEM text: host store + extra CAs. Writes it (when changed) to
 * `gateway/tls/upstream-roots.pem`, where the gateway reads it. Returns the text.
 */
export function writeUpstreamRoots(data: string, src: TrustSources): string {
  let text = ''
  if (src.hostBundle) {
    try {
      text = readFileSync(src.hostBundle, 'utf8')
    } catch (e) {
      throw new PodshellError(`cannot read the host's trust store ${src.hostBundle} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, {
        hint: 'check its permissions, or set SSL_CERT_FILE to a readable bundle',
        code: 'TLS_TRUST',
      })
    }
    if (!text.endsWith('\n')) text += '\n'
  }
  for (const x of loadExtraCaFiles(src.extraCaFiles)) text += `# tls.extra_ca_files: ${x.file}\n${x.pem}`
  const file = upstreamRootsFile(data)
  let old: string | undefined
  try {
    old = readFileSync(file, 'utf8')
  } catch {
    old = undefined
  }
  if (old !== text) writeAtomic(file, text)
  return text
}

export interface SandboxMount {
  readonly source: string
  readonly target: string
}

/** What a sandbox's agent container gets for TLS: read-only bind mounts and environment. */
export interface SandboxTrust {
  readonly mounts: readonly SandboxMount[]
  readonly env: Readonly<Record<string, string>>
  /** Fingerprint of the podshell CA in the bundle. */
  readonly caFingerprint: string
}

/**
 * Writes `gateway/sandboxes/<name>/tls/{ca-bundle.pem,podshell-ca.pem,truststore.p12}` (upstream roots +
 * the CA) and returns the mounts and variables that make every usual client trust it without
 * flags. All mounts are read-only; the source dir holds no key.
 */
export function prepareSandboxTrust(data: string, name: string, ca: Ca, upstreamRoots: string): SandboxTrust {
  const dir = sandboxTlsDir(data, name)
  const bundle = (upstreamRoots.endsWith('\n') || upstreamRoots === '' ? upstreamRoots : upstreamRoots + '\n') + `# podshell sandbox CA (${ca.cert.subject})\n` + ca.certPem
  const { certs } = parsePemCerts(upstreamRoots, false)
  const seen = new Set<string>()
  const entries: { der: Uint8Array; alias: string }[] = []
  const caDer = new Uint8Array(ca.cert.rawData)
  for (const c of [{ der: caDer, subject: 'podshell-ca' }, ...certs]) {
    const fp = fingerprintOf(c.der)
    if (seen.has(fp)) continue
    seen.add(fp)
    entries.push({ der: c.der, alias: entries.length === 0 ? 'podshell-ca' : `root-${fp.slice(0, 16)}` })
  }
  writeAtomic(join(dir, 'ca-bundle.pem'), bundle)
  writeAtomic(join(dir, 'podshell-ca.pem'), ca.certPem)
  writeAtomic(join(dir, 'truststore.p12'), cachedTruststore(data, entries))
  return { ...sandboxTrustSpec(data, name), caFingerprint: ca.fingerprint }
}

/**
 * The PKCS#12 trust store is the same for every sandbox of a data dir (the user's CA and upstream
 * roots): built once per distinct set of certificates (~290 ms of asn1 encoding on this machine,
 * which was the largest single step of `sandbox create`), then reused. Keyed by the certificates'
 * fingerprints and aliases; public certificates only, kept in the gateway's TLS state dir.
 */
function cachedTruststore(data: string, entries: readonly { der: Uint8Array; alias: string }[]): Buffer {
  const key = createHash('sha256')
    .update(entries.map(e => `${e.alias}=${fingerprintOf(e.der)}`).join('\n'))
    .digest('hex')
    .slice(0, 32)
  const file = join(tlsStateDir(data), `truststore-${key}.p12`)
  try {
    return readFileSync(file)
  } catch {
    const built = buildTruststore(entries)
    try {
      writeAtomic(file, built)
    } catch {
      // a cache: the sandbox gets its copy either way
    }
    return built
  }
}

/** The mounts and variables for a sandbox whose tls dir is prepared (pure). */
export function sandboxTrustSpec(data: string, name: string): { mounts: SandboxMount[]; env: Record<string, string> } {
  const dir = sandboxTlsDir(data, name)
  const bundle = join(dir, 'ca-bundle.pem')
  return {
    mounts: [
      { source: dir, target: SANDBOX_TLS_DIR },
      // Over the image's own system bundle: clients that ignore every variable (Go's crypto/x509,
      // OpenSSL's default paths) read one of these. Whichever exists in the image is covered; a
      // path the image lacks is created in the container's own (discarded) layer.
      ...IMAGE_BUNDLE_PATHS.map(target => ({ source: bundle, target })),
    ],
    env: {
      SSL_CERT_FILE: SANDBOX_BUNDLE,
      NODE_EXTRA_CA_CERTS: SANDBOX_BUNDLE,
      REQUESTS_CA_BUNDLE: SANDBOX_BUNDLE,
      CURL_CA_BUNDLE: SANDBOX_BUNDLE,
      GIT_SSL_CAINFO: SANDBOX_BUNDLE,
      DENO_CERT: SANDBOX_BUNDLE,
      JAVA_TOOL_OPTIONS: `-Djavax.net.ssl.trustStore=${SANDBOX_TRUSTSTORE} -Djavax.net.ssl.trustStoreType=PKCS12 -Djavax.net.ssl.trustStorePassword=${TRUSTSTORE_PASSWORD}`,
    },
  }
}

/** Fingerprint of the podshell CA a sandbox's bundle holds (the gateway signs its leaves with it). */
export function sandboxCaFingerprint(data: string, name: string): string | undefined {
  try {
    const pem = readFileSync(join(sandboxTlsDir(data, name), 'podshell-ca.pem'), 'utf8')
    const c = parsePemCerts(pem, true).certs[0]
    return c ? fingerprintOf(c.der) : undefined
  } catch {
    return undefined
  }
}
