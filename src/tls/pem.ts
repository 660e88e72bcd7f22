/**
 * PEM certificate lists: parsing (node:crypto's X509Certificate, no extra dependency, so that
 * config loading on every command stays cheap) and the `tls.extra_ca_files` check.
 */
import { readFileSync, statSync } from 'node:fs'
import { X509Certificate, createHash } from 'node:crypto'
import { PodshellError } from '../errors.js'

export interface PemCert {
  readonly der: Uint8Array
  readonly subject: string
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END CERTIFICATE-----/g

/**
 * The certificates of a PEM text. Blocks that do not parse as X.509 are skipped when `strict` is
 * false (a host bundle with one odd entry must not disable TLS) and an error when true.
 */
export function parsePemCerts(text: string, strict: boolean): { certs: PemCert[]; bad: number } {
  const certs: PemCert[] = []
  let bad = 0
  for (const m of text.matchAll(PEM_CERT_RE)) {
    try {
      const der = new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'))
      const c = new X509Certificate(der)
      certs.push({ der, subject: c.subject.replace(/\n/g, ', ') })
    } catch {
      if (strict) throw new Error(`certificate #${certs.length + bad + 1} does not parse as X.509`)
      bad++
    }
  }
  return { certs, bad }
}

/** Largest extra CA file accepted (a bundle of a few hundred certificates is ~250 KB). */
const MAX_CA_FILE = 4 * 1024 * 1024

/**
 * `tls.extra_ca_files`: each file must be readable and hold at least one certificate, all of
 * which parse. An error names the file and what is wrong (config load calls this).
 */
export function loadExtraCaFiles(files: readonly string[]): { file: string; pem: string; certs: PemCert[] }[] {
  return files.map(file => {
    const fail = (why: string) =>
      new PodshellError(`tls.extra_ca_files: ${file}: ${why}`, { hint: 'give PEM files of CA certificates (-----BEGIN CERTIFICATE-----), or remove the entry', code: 'INVALID_CONFIG', exitCode: 2 })
    let text: string
    try {
      const st = statSync(file)
      if (!st.isFile()) throw fail('not a regular file')
      if (st.size > MAX_CA_FILE) throw fail('larger than 4 MiB')
      text = readFileSync(file, 'utf8')
    } catch (e) {
      if (e instanceof PodshellError) throw e
      throw fail(`cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
    }
    let certs: PemCert[]
    try {
      certs = parsePemCerts(text, true).certs
    } catch (e) {
      throw fail((e as Error).message)
    }
    if (certs.length === 0) throw fail('no PEM certificate in it')
    return { file, pem: certs.map(c => derToPem(c.der)).join(''), certs }
  })
}

export function derToPem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64')
  return `-----BEGIN CERTIFICATE-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`
}


/** SHA-256 fingerprint of a DER certificate, lowercase hex. */
export function fingerprintOf(der: ArrayBuffer | Uint8Array): string {
  return createHash('sha256').update(new Uint8Array(der)).digest('hex')
}
