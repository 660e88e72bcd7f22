import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtempSync, rmSync, readFileSync, writeFileSync, statSync, mkdirSync, existsSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { ensureCa, rotateCa, caDir, caForFingerprint, generateCa, prunePreviousCas } from '../../src/tls/ca.js'
import { LeafIssuer, MIN_LEAF_CACHE } from '../../src/tls/leaf.js'
import {
  buildTruststore, findHostBundle, loadExtraCaFiles, parsePemCerts, prepareSandboxTrust, writeUpstreamRoots,
  upstreamRootsFile, sandboxCaFingerprint, IMAGE_BUNDLE_PATHS, TRUSTSTORE_PASSWORD, HOST_BUNDLE_CANDIDATES,
} from '../../src/tls/trust.js'

const id = { user: 'alice', host: 'box' }
let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'psh-tls-'))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] })
}

describe('sandbox CA', () => {
  it('is generated once, ECDSA P-256, one year, CA:TRUE pathlen 0, named after user@host; the key is 0600', async () => {
    const ca = await ensureCa(dir, id)
    const c = new X509Certificate(ca.certPem)
    expect(c.subject).toContain('CN=podshell sandbox CA alice@box')
    expect(c.ca).toBe(true)
    expect(c.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    const days = (Date.parse(c.validTo) - Date.parse(c.validFrom)) / 86400_000
    expect(Math.round(days)).toBe(365)
    expect(openssl(['x509', '-noout', '-text'], ca.certPem)).toMatch(/CA:TRUE, pathlen:0/)
    expect(statSync(join(caDir(dir), 'ca-key.pem')).mode & 0o777).toBe(0o600)
    // Persisted: a second call (a gateway restart) loads the same CA.
    const again = await ensureCa(dir, id)
    expect(again.fingerprint).toBe(ca.fingerprint)
    expect(c.fingerprint256.replace(/:/g, '').toLowerCase()).toBe(ca.fingerprint)
  })

  it('concurrent first starts agree on one CA', async () => {
    const all = await Promise.all([ensureCa(dir, id), ensureCa(dir, id), ensureCa(dir, id)])
    expect(new Set(all.map(a => a.fingerprint)).size).toBe(1)
  })

  it('a corrupt CA is an error, never silently replaced; --rotate replaces it', async () => {
    const ca = await ensureCa(dir, id)
    writeFileSync(join(caDir(dir), 'ca.pem'), 'garbage')
    await expect(ensureCa(dir, id)).rejects.toThrow(/unusable: ca.pem is not a PEM certificate/)
    // A key that belongs to another certificate.
    const other = await generateCa('x')
    writeFileSync(join(caDir(dir), 'ca.pem'), other.certPem)
    await expect(ensureCa(dir, id)).rejects.toThrow(/ca-key.pem does not belong to ca.pem/)
    rmSync(join(caDir(dir), 'ca-key.pem'))
    await expect(ensureCa(dir, id)).rejects.toThrow(/missing file/)
    const r = await rotateCa(dir, id)
    expect(r.ca.fingerprint).not.toBe(ca.fingerprint)
    expect((await ensureCa(dir, id)).fingerprint).toBe(r.ca.fingerprint)
  })

  it('rotation keeps the previous CA for sandboxes that still trust it, until pruned', async () => {
    const a = await ensureCa(dir, id)
    const r = await rotateCa(dir, id)
    expect(r.previous).toBe(a.fingerprint)
    expect((await caForFingerprint(dir, a.fingerprint))?.fingerprint).toBe(a.fingerprint)
    expect((await caForFingerprint(dir, r.ca.fingerprint))?.fingerprint).toBe(r.ca.fingerprint)
    expect(await caForFingerprint(dir, '../../etc')).toBeUndefined()
    expect(prunePreviousCas(dir, new Set())).toEqual([a.fingerprint])
    expect(await caForFingerprint(dir, a.fingerprint)).toBeUndefined()
  })
})

describe('leaf certificates', () => {
  it('verify against the CA with the SAN asked for, serverAuth, not a CA', async () => {
    const ca = await ensureCa(dir, id)
    const leaves = new LeafIssuer(ca)
    const leaf = await leaves.get('api.github.com')
    writeFileSync(join(dir, 'ca.pem'), ca.certPem)
    writeFileSync(join(dir, 'leaf.pem'), leaf.certPem)
    expect(openssl(['verify', '-CAfile', join(dir, 'ca.pem'), '-purpose', 'sslserver', '-verify_hostname', 'api.github.com', join(dir, 'leaf.pem')])).toMatch(/OK/)
    expect(() => openssl(['verify', '-CAfile', join(dir, 'ca.pem'), '-verify_hostname', 'evil.com', join(dir, 'leaf.pem')])).toThrow()
    const c = new X509Certificate(leaf.certPem)
    expect(c.subjectAltName).toBe('DNS:api.github.com')
    expect(c.ca).toBe(false)
    expect(c.checkIssued(new X509Certificate(ca.certPem))).toBe(true)
  })

  it('are cached (LRU of at least 256) and shared by concurrent requests', async () => {
    const ca = await ensureCa(dir, id)
    const leaves = new LeafIssuer(ca, 10)
    const [a, b] = await Promise.all([leaves.get('a.example'), leaves.get('a.example')])
    expect(a).toBe(b)
    expect(leaves.issued).toBe(1)
    for (let i = 0; i < MIN_LEAF_CACHE + 5; i++) await leaves.get(`h${i}.example`)
    expect(leaves.size).toBe(MIN_LEAF_CACHE)
    // a.example was least recently used: evicted and re-issued.
    const before = leaves.issued
    await leaves.get(`h${MIN_LEAF_CACHE + 4}.example`)
    expect(leaves.issued).toBe(before)
    await leaves.get('a.example')
    expect(leaves.issued).toBe(before + 1)
  })

  it('are re-issued close to expiry', async () => {
    const ca = await ensureCa(dir, id)
    const leaves = new LeafIssuer(ca)
    const now = Date.now()
    await leaves.get('x.example', now)
    await leaves.get('x.example', now + 29.5 * 86400_000)
    expect(leaves.issued).toBe(2)
  })
})

describe('trust bundles', () => {
  it('finds the host bundle the way OpenSSL tools do', () => {
    expect(findHostBundle({}, p => p === '/etc/pki/tls/certs/ca-bundle.crt')).toBe('/etc/pki/tls/certs/ca-bundle.crt')
    expect(findHostBundle({}, p => p === '/etc/ssl/cert.pem')).toBe('/etc/ssl/cert.pem')
    expect(findHostBundle({ SSL_CERT_FILE: '/x/own.pem' }, () => true)).toBe('/x/own.pem')
    expect(findHostBundle({}, () => false)).toBeUndefined()
    expect(HOST_BUNDLE_CANDIDATES[0]).toBe('/etc/ssl/certs/ca-certificates.crt')
  })

  it('tls.extra_ca_files: each file validated, errors name the file', async () => {
    const ca = await generateCa('extra test CA')
    const good = join(dir, 'good.pem')
    writeFileSync(good, 'comment line\n' + ca.certPem)
    expect(loadExtraCaFiles([good])[0]!.certs).toHaveLength(1)
    expect(() => loadExtraCaFiles([join(dir, 'missing.pem')])).toThrow(/tls.extra_ca_files: .*missing.pem: cannot read it \(ENOENT\)/)
    writeFileSync(join(dir, 'empty.pem'), 'nothing here')
    expect(() => loadExtraCaFiles([join(dir, 'empty.pem')])).toThrow(/empty.pem: no PEM certificate/)
    writeFileSync(join(dir, 'bad.pem'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')
    expect(() => loadExtraCaFiles([join(dir, 'bad.pem')])).toThrow(/bad.pem: certificate #1 does not parse/)
    expect(() => loadExtraCaFiles([dir])).toThrow(/not a regular file/)
  })

  it('upstream roots = host store + extra CAs; the sandbox bundle adds the podshell CA, with a Java truststore', async () => {
    const ca = await ensureCa(dir, id)
    const extra = await generateCa('corp proxy CA')
    const host = join(dir, 'host.pem')
    const hostCa = await generateCa('host root CA')
    writeFileSync(host, hostCa.certPem)
    writeFileSync(join(dir, 'extra.pem'), extra.certPem)
    const roots = writeUpstreamRoots(dir, { hostBundle: host, extraCaFiles: [join(dir, 'extra.pem')] })
    expect(readFileSync(upstreamRootsFile(dir), 'utf8')).toBe(roots)
    expect(parsePemCerts(roots, true).certs.map(c => c.subject)).toEqual(['CN=host root CA, O=podshell', 'CN=corp proxy CA, O=podshell'])
    mkdirSync(join(dir, 'gateway', 'sandboxes', 's1'), { recursive: true })
    const t = prepareSandboxTrust(dir, 's1', ca, roots)
    const bundle = readFileSync(join(dir, 'gateway/sandboxes/s1/tls/ca-bundle.pem'), 'utf8')
    expect(parsePemCerts(bundle, true).certs).toHaveLength(3)
    expect(t.caFingerprint).toBe(ca.fingerprint)
    expect(sandboxCaFingerprint(dir, 's1')).toBe(ca.fingerprint)
    // Never the key.
    expect(existsSync(join(dir, 'gateway/sandboxes/s1/tls/ca-key.pem'))).toBe(false)
    for (const f of ['ca-bundle.pem', 'podshell-ca.pem', 'truststore.p12']) expect(readFileSync(join(dir, 'gateway/sandboxes/s1/tls', f), 'latin1')).not.toContain('PRIVATE KEY')
    expect(t.mounts.map(m => m.target)).toEqual(['/etc/podshell-tls', ...IMAGE_BUNDLE_PATHS])
    // The PKCS#12 store is built once per set of certificates and reused by the next sandbox.
    const cached = readdirSync(join(dir, 'gateway', 'tls')).filter(f => /^truststore-[0-9a-f]{32}\.p12$/.test(f))
    expect(cached).toHaveLength(1)
    mkdirSync(join(dir, 'gateway', 'sandboxes', 's2'), { recursive: true })
    prepareSandboxTrust(dir, 's2', ca, roots)
    expect(readFileSync(join(dir, 'gateway/sandboxes/s2/tls/truststore.p12'))).toEqual(readFileSync(join(dir, 'gateway/sandboxes/s1/tls/truststore.p12')))
    expect(readdirSync(join(dir, 'gateway', 'tls')).filter(f => f.startsWith('truststore-'))).toEqual(cached)
    expect(Object.keys(t.env).sort()).toEqual(['CURL_CA_BUNDLE', 'DENO_CERT', 'GIT_SSL_CAINFO', 'JAVA_TOOL_OPTIONS', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'SSL_CERT_FILE'])
    // openssl verifies the leaf with the sandbox bundle alone.
    const leaf = await new LeafIssuer(ca).get('example.org')
    writeFileSync(join(dir, 'leaf.pem'), leaf.certPem)
    expect(openssl(['verify', '-CAfile', join(dir, 'gateway/sandboxes/s1/tls/ca-bundle.pem'), join(dir, 'leaf.pem')])).toMatch(/OK/)
    // The truststore is valid PKCS#12 (openssl) and Java sees the CA as a trusted certificate entry.
    const p12 = join(dir, 'gateway/sandboxes/s1/tls/truststore.p12')
    const info = openssl(['pkcs12', '-in', p12, '-nokeys', '-passin', `pass:${TRUSTSTORE_PASSWORD}`, '-info'])
    expect(info.match(/BEGIN CERTIFICATE/g)).toHaveLength(3)
    const list = execFileSync('keytool', ['-list', '-v', '-keystore', p12, '-storetype', 'PKCS12', '-storepass', TRUSTSTORE_PASSWORD], { encoding: 'utf8' })
    expect(list).toMatch(/Your keystore contains 3 entries/)
    expect(list).toMatch(/Alias name: podshell-ca[\s\S]*?Entry type: trustedCertEntry[\s\S]*?podshell sandbox CA alice@box/)
  })

  it('buildTruststore of nothing is still a valid empty store', () => {
    writeFileSync(join(dir, 'e.p12'), buildTruststore([]))
    expect(execFileSync('keytool', ['-list', '-keystore', join(dir, 'e.p12'), '-storetype', 'PKCS12', '-storepass', 'changeit'], { encoding: 'utf8' })).toMatch(/contains 0 entries/)
  })
})

describe('config: tls.extra_ca_files', () => {
  it('combines enterprise and user lists, expands ~/, and fails at load naming a bad file', async () => {
    const { loadEffectiveConfig } = await import('../../src/config/enterprise.js')
    const ca = await generateCa('corp CA')
    mkdirSync(join(dir, 'cfg/podshell'), { recursive: true })
    mkdirSync(join(dir, 'home'), { recursive: true })
    writeFileSync(join(dir, 'home/corp.pem'), ca.certPem)
    writeFileSync(join(dir, 'ent.pem'), ca.certPem)
    writeFileSync(join(dir, 'enterprise.yaml'), `tls:\n  extra_ca_files: [${join(dir, 'ent.pem')}]\n`)
    writeFileSync(join(dir, 'cfg/podshell/config.yaml'), 'tls:\n  extra_ca_files: ["~/corp.pem"]\n')
    const env = { HOME: join(dir, 'home'), XDG_CONFIG_HOME: join(dir, 'cfg') }
    const opts = { enterpriseDefaultPath: join(dir, 'enterprise.yaml') }
    expect(loadEffectiveConfig(env, opts).effective.tlsExtraCaFiles).toEqual([join(dir, 'ent.pem'), join(dir, 'home/corp.pem')])
    writeFileSync(join(dir, 'cfg/podshell/config.yaml'), 'tls:\n  extra_ca_files: ["~/nope.pem"]\n')
    expect(() => loadEffectiveConfig(env, opts)).toThrow(/tls.extra_ca_files: .*nope.pem: cannot read it/)
    writeFileSync(join(dir, 'cfg/podshell/config.yaml'), 'tls:\n  extra_ca_files: ["relative.pem"]\n')
    expect(() => loadEffectiveConfig(env, opts)).toThrow(/tls.extra_ca_files.0: must be an absolute path/)
    writeFileSync(join(dir, 'cfg/podshell/config.yaml'), 'tls:\n  insecure: true\n')
    expect(() => loadEffectiveConfig(env, opts)).toThrow(/tls.insecure: unknown key/)
  })
})
