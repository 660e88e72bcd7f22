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
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { AsnConvert, OctetString } from '@peculiar/asn1-schema'
import { ContentInfo, id_data } from '@peculiar/asn1-cms'
import { PFX, AuthenticatedSafe, SafeContents, SafeBag, CertBag, PKCS12Attribute, id_certBag, id_x509Certificate } from '@peculiar/asn1-pfx'
import * as asn1js from 'asn1js'
import { parsePemCerts } from './pem.js'
import type { Ca } from './ca.js'
import { fingerprintOf } from './pem.js'
import { sandboxTlsDir, tlsStateDir } from './paths.js'
import { createHash } from 'node:crypto'
export { upstreamRootsFile, sandboxTlsDir } from './paths.js'
export { parsePemCerts, loadExtraCaFiles, derToPem, type PemCert } from './pem.js'
export {
  HOST_BUNDLE_CANDIDATES,
  IMAGE_BUNDLE_PATHS,
  SANDBOX_TLS_DIR,
  SANDBOX_BUNDLE,
  SANDBOX_CA,
  SANDBOX_TRUSTSTORE,
  TRUSTSTORE_PASSWORD,
  findHostBundle,
  trustSources,
  writeUpstreamRoots,
  sandboxTrustSpec,
  type TrustSources,
  type SandboxMount,
  type SandboxTrust,
} from './roots.js'
import { sandboxTrustSpec, writeAtomic, type SandboxTrust } from './roots.js'

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
// Per-sandbox bundles
// ---------------------------------------------------------------------------------------------

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
