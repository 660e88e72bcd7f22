/**
 * The gateway's TLS state: the CA(s) it signs leaves with and the upstream roots it verifies
 * servers against. One per gateway process; `forSandbox` gives a sandbox's proxy its
 * `TlsInspection`.
 *
 * Which CA signs a sandbox's leaves: the one whose certificate is in that sandbox's own bundle
 * (`sandboxes/<name>/tls/podshell-ca.pem`), current or retained after a rotation, so a sandbox
 * created before `gateway ca --rotate` keeps working until it is recreated. A sandbox without a
 * bundle (created by an older podshell) gets the current CA.
 *
 * Upstream roots: `gateway/tls/upstream-roots.pem`, written on the host (the container cannot
 * read the host's trust store), re-read when it changes (checked at most once a second). Missing =
 * trusts nothing (fail closed), logged once.
 */
import { statSync, readFileSync } from 'node:fs'
import { userInfo, hostname } from 'node:os'
import { ensureCa, caForFingerprint, type Ca } from './ca.js'
import { LeafIssuer } from './leaf.js'
import { upstreamRootsFile, sandboxCaFingerprint, sandboxTlsDir } from './trust.js'
import { join } from 'node:path'
import type { TlsInspection } from '../gateway/tls-terminate.js'

export class GatewayTls {
  readonly dataDir: string
  private current: Ca | undefined
  private readonly issuers = new Map<string, LeafIssuer>()
  private roots = ''
  private rootsStamp = ''
  private rootsCheckedAt = 0
  private readonly log: (line: string) => void

  constructor(dataDir: string, log: (line: string) => void = () => undefined) {
    this.dataDir = dataDir
    this.log = log
  }

  /** Loads (or, on the very first start, creates) the CA. A damaged CA throws: never replaced silently. */
  async start(): Promise<Ca> {
    const who = safeUser()
    this.current = await ensureCa(this.dataDir, { user: who, host: hostname() })
    this.upstreamRoots()
    return this.current
  }

  private issuer(ca: Ca): LeafIssuer {
    let i = this.issuers.get(ca.fingerprint)
    if (!i) {
      i = new LeafIssuer(ca)
      this.issuers.set(ca.fingerprint, i)
    }
    return i
  }

  /**
   * The sandbox's TLS inspection. The CA is looked up per handshake from the sandbox's own
   * `podshell-ca.pem` (cached on its inode and mtime): `sandbox restart` rewrites the bundle with the
   * current CA, and the gateway must follow without re-serving the sandbox.
   */
  async forSandbox(name: string): Promise<TlsInspection | undefined> {
    if (!this.current) return undefined
    let cached: { stamp: string; issuer: LeafIssuer } | undefined
    const issuerFor = async (): Promise<LeafIssuer> => {
      const stamp = fileStamp(join(sandboxTlsDir(this.dataDir, name), 'podshell-ca.pem'))
      if (cached && cached.stamp === stamp) return cached.issuer
      const fp = sandboxCaFingerprint(this.dataDir, name)
      let ca = this.current!
      if (fp && fp !== ca.fingerprint) {
        const other = await caForFingerprint(this.dataDir, fp)
        if (other) ca = other
        else this.log(`sandbox ${name} trusts a CA (${fp.slice(0, 16)}…) that is gone; it gets the current CA and must be recreated to trust it`)
      }
      cached = { stamp, issuer: this.issuer(ca) }
      return cached.issuer
    }
    await issuerFor()
    return { leaf: async host => (await issuerFor()).get(host), upstreamRoots: () => this.upstreamRoots() }
  }

  upstreamRoots(): string {
    const now = Date.now()
    if (now - this.rootsCheckedAt < 1000) return this.roots
    this.rootsCheckedAt = now
    const file = upstreamRootsFile(this.dataDir)
    let stamp: string
    try {
      const st = statSync(file)
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`
    } catch {
      stamp = 'missing'
    }
    if (stamp === this.rootsStamp) return this.roots
    this.rootsStamp = stamp
    try {
      this.roots = stamp === 'missing' ? '' : readFileSync(file, 'utf8')
    } catch {
      this.roots = ''
    }
    if (this.roots === '') this.log(`no upstream trust roots in ${file}: HTTPS to inspected endpoints fails closed until podshell writes them (any podshell command on the host does)`)
    return this.roots
  }
}

function fileStamp(file: string): string {
  try {
    const st = statSync(file)
    return `${st.ino}:${st.mtimeMs}:${st.size}`
  } catch {
    return 'missing'
  }
}

function safeUser(): string {
  try {
    return userInfo().username
  } catch {
    return String(process.getuid?.() ?? 'user')
  }
}
