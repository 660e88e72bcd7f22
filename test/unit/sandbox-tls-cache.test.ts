import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { prepareSandboxTls, bundleCacheDir } from '../../src/tls/sandbox-tls.js'
import { caDir, generateCa } from '../../src/tls/ca.js'
import { sandboxCaFingerprint } from '../../src/tls/trust.js'

// The create-time bundle cache (src/tls/sandbox-tls.ts): a hit gives the same files as the full
// path; any change of the CA files or the roots is a miss that goes through the full path's checks.
let dir: string
let env: Record<string, string>
const tls = (name: string, f: string) => readFileSync(join(dir, 'gateway', 'sandboxes', name, 'tls', f))
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'psh-tlscache-'))
  const host = join(dir, 'host.pem')
  env = { HOME: dir, XDG_CONFIG_HOME: join(dir, 'config'), SSL_CERT_FILE: host }
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

async function make(name: string) {
  mkdirSync(join(dir, 'gateway', 'sandboxes', name), { recursive: true })
  return prepareSandboxTls(dir, name, env)
}

describe('sandbox trust bundle cache', () => {
  it('a hit writes the same bundle, CA copy and truststore as the full path, one entry per inputs', async () => {
    const hostRoot = (await generateCa('host root CA')).certPem
    writeFileSync(env.SSL_CERT_FILE!, hostRoot)
    const a = await make('s1') // first use: creates the CA, full path, stores the entry
    expect(readdirSync(bundleCacheDir(dir))).toHaveLength(1)
    const b = await make('s2') // hit
    expect(b).toEqual({ ...a, mounts: b.mounts, env: b.env })
    expect(b.caFingerprint).toBe(sandboxCaFingerprint(dir, 's1'))
    for (const f of ['ca-bundle.pem', 'podshell-ca.pem', 'truststore.p12']) expect(tls('s2', f)).toEqual(tls('s1', f))
    expect(tls('s2', 'ca-bundle.pem').toString()).toContain(hostRoot)
    // New upstream roots: a miss, a new entry replacing the old one, and the new roots in the bundle.
    const otherRoot = (await generateCa('other root CA')).certPem
    writeFileSync(env.SSL_CERT_FILE!, otherRoot)
    await make('s3')
    expect(tls('s3', 'ca-bundle.pem').toString()).toContain(otherRoot)
    expect(tls('s3', 'ca-bundle.pem').toString()).not.toContain(hostRoot)
    expect(readdirSync(bundleCacheDir(dir))).toHaveLength(1)
  })

  it('a damaged or swapped CA is never served from the cache: the full path refuses it', async () => {
    writeFileSync(env.SSL_CERT_FILE!, (await generateCa('host root CA')).certPem)
    await make('s1')
    await make('s2')
    // A key that does not belong to the certificate (a swapped file).
    const other = await generateCa('x')
    const { webcrypto } = await import('node:crypto')
    const pk = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', other.key)).toString('base64')
    writeFileSync(join(caDir(dir), 'ca-key.pem'), `-----BEGIN PRIVATE KEY-----\n${pk}\n-----END PRIVATE KEY-----\n`)
    await expect(make('s3')).rejects.toThrow(/ca-key.pem does not belong to ca.pem/)
    writeFileSync(join(caDir(dir), 'ca.pem'), 'garbage')
    await expect(make('s4')).rejects.toThrow(/ca.pem is not a PEM certificate/)
  })

  it('an entry that does not match its inputs (tampered, half-written) is a miss', async () => {
    writeFileSync(env.SSL_CERT_FILE!, (await generateCa('host root CA')).certPem)
    await make('s1')
    const [entry] = readdirSync(bundleCacheDir(dir))
    const planted = (await generateCa('planted CA')).certPem
    writeFileSync(join(bundleCacheDir(dir), entry!, 'ca-bundle.pem'), planted)
    await make('s2')
    expect(tls('s2', 'ca-bundle.pem').toString()).not.toContain(planted)
    expect(tls('s2', 'ca-bundle.pem')).toEqual(tls('s1', 'ca-bundle.pem'))
    rmSync(join(bundleCacheDir(dir), entry!, 'truststore.p12'))
    await make('s3')
    expect(tls('s3', 'truststore.p12')).toEqual(tls('s1', 'truststore.p12'))
  })
})

describe('sandbox trust bundle cache: an extra certificate between the roots and the CA', () => {
  it('is a miss', async () => {
    writeFileSync(env.SSL_CERT_FILE!, (await generateCa('host root CA')).certPem)
    await make('s1')
    const [entry] = readdirSync(bundleCacheDir(dir))
    const f = join(bundleCacheDir(dir), entry!, 'ca-bundle.pem')
    const roots = readFileSync(env.SSL_CERT_FILE!, 'utf8')
    const planted = (await generateCa('planted CA')).certPem
    writeFileSync(f, roots + planted + readFileSync(f, 'utf8').slice(roots.length))
    expect(readFileSync(f, 'utf8')).toContain(planted)
    await make('s2')
    expect(tls('s2', 'ca-bundle.pem').toString()).not.toContain(planted)
    expect(tls('s2', 'ca-bundle.pem')).toEqual(tls('s1', 'ca-bundle.pem'))
  })
})
