/**
 * Per-host leaf certificates signed by the podshell sandbox CA, for the TLS the gateway
 * terminates. One ECDSA P-256 key per issuer (per gateway process and CA) is shared by every leaf:
 * issuing a leaf is then one signature (~1 ms), and the key never leaves the gateway's memory.
 *
 * Cached per host name in an LRU of at least 256 entries (OpenShell's cache size); an entry is
 * re-issued when it has less than a day of validity left. Concurrent requests for the same host
 * share one issuance (the cache holds the promise).
 *
 * The SAN is exactly the name the client asked for (its SNI, which the caller has already checked
 * equals the CONNECT host): one DNS name, never a wildcard, so a leaf cannot be reused for
 * another host. IP-literal names are not issued (the caller refuses IP SNI before asking).
 */
import { webcrypto } from 'node:crypto'
import { createSecureContext, type SecureContext } from 'node:tls'
import './ca.js'
import * as x509 from '@peculiar/x509'
import { EC_ALG, SIGN_ALG, randomSerial, type Ca, type CryptoKeyPair } from './ca.js'

const LEAF_VALIDITY_MS = 30 * 24 * 3600 * 1000
const RENEW_BEFORE_MS = 24 * 3600 * 1000

export interface Leaf {
  readonly host: string
  readonly certPem: string
  readonly context: SecureContext
  readonly notAfter: number
}

export const MIN_LEAF_CACHE = 256

export class LeafIssuer {
  readonly ca: Ca
  private readonly capacity: number
  private readonly cache = new Map<string, Promise<Leaf>>()
  private keys: Promise<{ pair: CryptoKeyPair; pem: string }> | undefined
  issued = 0

  constructor(ca: Ca, capacity = MIN_LEAF_CACHE) {
    this.ca = ca
    this.capacity = Math.max(MIN_LEAF_CACHE, capacity)
  }

  get size(): number {
    return this.cache.size
  }

  private leafKeys(): Promise<{ pair: CryptoKeyPair; pem: string }> {
    this.keys ??= (async () => {
      const pair = (await webcrypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair
      const pem = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', pair.privateKey), 'PRIVATE KEY')
      return { pair, pem }
    })()
    return this.keys
  }

  /** The leaf for `host` (a lowercase DNS name without trailing dot), from the cache or issued now. */
  async get(host: string, now = Date.now()): Promise<Leaf> {
    const hit = this.cache.get(host)
    if (hit) {
      const leaf = await hit.catch(() => undefined)
      if (leaf && leaf.notAfter - RENEW_BEFORE_MS > now) {
        // LRU: re-insert as most recent.
        this.cache.delete(host)
        this.cache.set(host, hit)
        return leaf
      }
      if (this.cache.get(host) === hit) this.cache.delete(host)
    }
    const p = this.issue(host, now)
    this.cache.set(host, p)
    p.catch(() => {
      if (this.cache.get(host) === p) this.cache.delete(host)
    })
    while (this.cache.size > this.capacity) this.cache.delete(this.cache.keys().next().value!)
    return p
  }

  private async issue(host: string, now: number): Promise<Leaf> {
    const { pair, pem } = await this.leafKeys()
    const notAfter = Math.min(now + LEAF_VALIDITY_MS, this.ca.cert.notAfter.getTime())
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: [{ CN: [host] }],
      issuer: this.ca.cert.subjectName,
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(notAfter),
      signingAlgorithm: SIGN_ALG,
      publicKey: pair.publicKey,
      signingKey: this.ca.key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: host }]),
        await x509.AuthorityKeyIdentifierExtension.create(this.ca.cert.publicKey),
      ],
    })
    const certPem = cert.toString('pem')
    this.issued++
    return {
      host,
      certPem,
      // The chain sent to the client: leaf + CA (the CA is also in the client's bundle).
      context: createSecureContext({ key: pem, cert: certPem + '\n' + this.ca.certPem, minVersion: 'TLSv1.2' }),
      notAfter,
    }
  }
}
