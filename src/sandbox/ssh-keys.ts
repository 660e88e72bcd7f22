import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PodshellError } from '../errors.js'
import { sandboxDir } from '../config/paths.js'
import { withLockSync } from '../util/lockfile.js'

/**
 * The per-sandbox SSH keys behind `podshell sandbox ssh-config` (VS Code / Cursor Remote-SSH).
 *
 * Two ed25519 key pairs, made by podshell with Node's crypto (no ssh-keygen needed) and kept in
 * `<data>/sandboxes/<name>/ssh/` (dir 0700, every file 0600), deleted with the sandbox's state:
 *  - the host key: sshd's identity. It is handed to `sshd -i` inside the agent container on each
 *    connection (src/sandbox/sshd.ts), so the agent can read it: it authenticates nothing the
 *    agent could not impersonate anyway (the agent IS the server side), which is why the Host block
 *    keeps OpenShell's `StrictHostKeyChecking no`.
 *  - the client key: what ssh presents. Only its public half enters the sandbox (as the one
 *    authorised key); the private half never leaves the host's state dir.
 */
export interface SshKeyFiles {
  dir: string
  hostKey: string
  clientKey: string
  clientPublicKey: string
}

export const sshDir = (data: string, name: string): string => join(sandboxDir(data, name), 'ssh')

export function sshKeyFiles(data: string, name: string): SshKeyFiles {
  const dir = sshDir(data, name)
  return { dir, hostKey: join(dir, 'host_ed25519_key'), clientKey: join(dir, 'client_ed25519_key'), clientPublicKey: join(dir, 'client_ed25519_key.pub') }
}

/** Makes the two key pairs unless present (idempotent); every file 0600, the dir 0700. */
export function ensureSshKeys(data: string, name: string): SshKeyFiles {
  const f = sshKeyFiles(data, name)
  mkdirSync(f.dir, { recursive: true, mode: 0o700 })
  const st = lstatSync(f.dir)
  if (!st.isDirectory()) throw new PodshellError(`${f.dir} is not a directory`, { hint: 'remove it; podshell recreates the keys', code: 'STATE_CORRUPT' })
  chmodSync(f.dir, 0o700)
  // Two `ssh-config` runs at once must not leave a private key and a public key of different pairs.
  const busy = (holder: string) => new PodshellError(`the SSH keys of ${name} are being made by process ${holder}`, { hint: 'try again in a moment', code: 'BUSY' })
  withLockSync(join(f.dir, '.lock'), { waitMs: 10_000, pollMs: 50, busy }, () => {
    if (!existsSync(f.hostKey)) writeSecret(f.hostKey, ed25519KeyPair(`podshell-host-${name}`).privateKey)
    if (!existsSync(f.clientKey) || !existsSync(f.clientPublicKey)) {
      const pair = ed25519KeyPair(`podshell-${name}`)
      writeSecret(f.clientKey, pair.privateKey, true)
      writeSecret(f.clientPublicKey, `${pair.publicKey}\n`, true)
    }
  })
  return f
}

/** What `sshd -i` needs: the host private key and the one authorised public key. */
export function readSshdKeys(data: string, name: string): { hostKey: string; authorizedKey: string } {
  const f = sshKeyFiles(data, name)
  try {
    return { hostKey: readFileSync(f.hostKey, 'utf8'), authorizedKey: readFileSync(f.clientPublicKey, 'utf8').trim() }
  } catch {
    throw new PodshellError(`sandbox ${name} has no SSH keys`, { hint: `run \`podshell sandbox ssh-config ${name}\` first`, code: 'NOT_FOUND' })
  }
}

function writeSecret(path: string, data: string, replace = false): void {
  // 'wx' refuses to follow a planted symlink or to race another writer; a half pair is replaced.
  writeFileSync(path, data, { mode: 0o600, flag: replace && existsSync(path) ? 'w' : 'wx' })
  chmodSync(path, 0o600)
}

function sshString(b: Buffer | string): Buffer {
  const body = typeof b === 'string' ? Buffer.from(b) : b
  const len = Buffer.alloc(4)
  len.writeUInt32BE(body.length)
  return Buffer.concat([len, body])
}

/**
 * An ed25519 key pair in OpenSSH's formats: the private key as an unencrypted
 * `openssh-key-v1` PEM block (PROTOCOL.key in OpenSSH's source), the public key as an
 * `ssh-ed25519 BASE64 COMMENT` line. Pure apart from the randomness.
 */
export function ed25519KeyPair(comment: string): { privateKey: string; publicKey: string } {
  const { privateKey } = generateKeyPairSync('ed25519')
  const jwk = privateKey.export({ format: 'jwk' })
  const seed = Buffer.from(jwk.d!, 'base64url')
  const pub = Buffer.from(jwk.x!, 'base64url')
  const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)])
  const check = randomBytes(4)
  let priv = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)])
  const pad: number[] = []
  for (let i = 1; (priv.length + pad.length) % 8 !== 0; i++) pad.push(i)
  priv = Buffer.concat([priv, Buffer.from(pad)])
  const nkeys = Buffer.alloc(4)
  nkeys.writeUInt32BE(1)
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), sshString('none'), sshString('none'), sshString(''), nkeys, sshString(pubBlob), sshString(priv)])
  const b64 = body.toString('base64').replace(/(.{70})/g, '$1\n').replace(/\n$/, '')
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${pubBlob.toString('base64')} ${comment}`,
  }
}
