/**
 * Trust material without an X.509 or ASN.1 library (see src/tls/trust.ts for what it is): the
 * host's trust store, the upstream roots file, and the mounts and variables of a sandbox's bundle.
 * Split from trust.ts so that `sandbox create`, which finds its bundle in the cache
 * (src/tls/sandbox-tls.ts), loads none of @peculiar/* (~150 ms of module loading per create).
 */
import { readFileSync, writeFileSync, renameSync, mkdirSync, statSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { PodshellError } from '../errors.js'
import { loadExtraCaFiles } from './pem.js'
import type { Env } from '../config/paths.js'
import { upstreamRootsFile, sandboxTlsDir } from './paths.js'

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
// Files: upstream roots (gateway) and per-sandbox bundles
// ---------------------------------------------------------------------------------------------


export function writeAtomic(file: string, data: string | Buffer, mode = 0o644): void {
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
