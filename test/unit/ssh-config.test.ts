import { describe, it, expect } from 'vitest'
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { ensureInclude, hostAlias, renderSshConfig, shellWord, upsertHostBlock } from '../../src/cli/ssh.js'
import { ed25519KeyPair } from '../../src/sandbox/ssh-keys.js'
import { SSHD_OPTIONS, sshdScript } from '../../src/sandbox/sshd.js'

/**
 * The Host block as OpenShell prints it (crates/openshell-cli/src/ssh.rs render_ssh_config):
 * `Host openshell-{name}.{workspace}` then eight indented lines; podshell's lines follow them.
 * The managed-file edits (upsert, Include) as OpenShell's upsert_host_block /
 * ensure_openshell_include; the OpenSSH key format podshell writes without ssh-keygen.
 */
describe('ssh-config Host block', () => {
  it("OpenShell's lines in OpenShell's order, then podshell's", () => {
    const block = renderSshConfig({ name: 'demo', user: '1000', proxy: ['/usr/bin/node', '/opt/podshell/dist/cli/main.js', 'ssh-proxy', '--name', 'demo'], identityFile: '/home/u/.local/share/podshell/sandboxes/demo/ssh/client_ed25519_key' })
    expect(block).toBe(
      [
        'Host openshell-demo.default',
        '    User 1000',
        '    StrictHostKeyChecking no',
        '    UserKnownHostsFile /dev/null',
        '    GlobalKnownHostsFile /dev/null',
        '    LogLevel ERROR',
        '    ServerAliveInterval 15',
        '    ServerAliveCountMax 3',
        '    ProxyCommand /usr/bin/node /opt/podshell/dist/cli/main.js ssh-proxy --name demo',
        '    IdentityFile "/home/u/.local/share/podshell/sandboxes/demo/ssh/client_ed25519_key"',
        '    IdentitiesOnly yes',
        '    ForwardAgent no',
        '    ForwardX11 no',
        '',
      ].join('\n'),
    )
    expect(hostAlias('a-b')).toBe('openshell-a-b.default')
  })

  it('ProxyCommand words: quoted for /bin/sh, % doubled for ssh', () => {
    expect(shellWord('/usr/bin/node')).toBe('/usr/bin/node')
    expect(shellWord('PODSHELL_HOME=/h/x')).toBe('PODSHELL_HOME=/h/x')
    expect(shellWord("/my dir/it's")).toBe(`'/my dir/it'\\''s'`)
    expect(shellWord('/a%b')).toBe(`'/a%%b'`)
    expect(shellWord('$(reboot)')).toBe(`'$(reboot)'`)
  })

  it('upsert replaces the block of the alias without duplicates and keeps the others', () => {
    const block = 'Host openshell-demo.default\n    User 1000\n'
    const input = 'Host personal\n    HostName example.com\n\nHost openshell-demo.default\n    User old\n\nHost other\n    HostName o.example\n'
    const out = upsertHostBlock(input, 'openshell-demo.default', block)
    expect(out).toBe('Host personal\n    HostName example.com\n\nHost openshell-demo.default\n    User 1000\n\nHost other\n    HostName o.example\n')
    expect(upsertHostBlock(out, 'openshell-demo.default', block)).toBe(out)
    expect(upsertHostBlock('', 'openshell-demo.default', block)).toBe(block)
    expect(upsertHostBlock('Host x\n    User y\n', 'openshell-demo.default', block)).toBe(`Host x\n    User y\n\n${block}`)
  })

  it('Include goes before the first Host/Match block, once', () => {
    const managed = '/home/u/.config/podshell/ssh_config'
    const once = ensureInclude('# mine\nServerAliveInterval 5\nHost personal\n    HostName example.com\n', managed)
    expect(once).toBe(`# mine\nServerAliveInterval 5\n\nInclude "${managed}"\n\nHost personal\n    HostName example.com\n`)
    expect(ensureInclude(once, managed).match(/Include /g)).toHaveLength(1)
    expect(ensureInclude('', managed)).toBe(`Include "${managed}"\n`)
  })
})

describe('per-sandbox keys (openssh-key-v1, ed25519)', () => {
  it('the private key carries the public key, and the seed signs what the public key verifies', () => {
    const { privateKey, publicKey } = ed25519KeyPair('podshell-demo')
    expect(privateKey).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n([A-Za-z0-9+/=]{1,70}\n)+-----END OPENSSH PRIVATE KEY-----\n$/)
    const [type, b64, comment] = publicKey.split(' ')
    expect([type, comment]).toEqual(['ssh-ed25519', 'podshell-demo'])
    const body = Buffer.from(privateKey.split('\n').slice(1, -2).join(''), 'base64')
    expect(body.subarray(0, 15).toString('latin1')).toBe('openssh-key-v1\0')
    const pubBlob = Buffer.from(b64!, 'base64')
    expect(body.includes(pubBlob)).toBe(true)
    // Private section: check1 == check2, then type, pub, seed||pub, comment, padding 1,2,3…
    const privLen = body.readUInt32BE(body.indexOf(pubBlob) + pubBlob.length)
    const priv = body.subarray(body.indexOf(pubBlob) + pubBlob.length + 4)
    expect(priv.length).toBe(privLen)
    expect(privLen % 8).toBe(0)
    expect(priv.readUInt32BE(0)).toBe(priv.readUInt32BE(4))
    const pub = pubBlob.subarray(pubBlob.length - 32)
    const seedAndPub = priv.subarray(8 + 4 + 11 + 4 + 32 + 4, 8 + 4 + 11 + 4 + 32 + 4 + 64)
    expect(seedAndPub.subarray(32).equals(pub)).toBe(true)
    const key = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: seedAndPub.subarray(0, 32).toString('base64url'), x: pub.toString('base64url') }, format: 'jwk' })
    const pubKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: pub.toString('base64url') }, format: 'jwk' })
    expect(verify(null, Buffer.from('x'), pubKey, sign(null, Buffer.from('x'), key))).toBe(true)
    expect(ed25519KeyPair('podshell-demo').publicKey).not.toBe(publicKey)
  })
})

describe('sshd -i config', () => {
  it('no agent, X11, stream-local or remote forwarding; public key only; no PAM', () => {
    for (const o of ['AllowAgentForwarding no', 'AllowStreamLocalForwarding no', 'AllowTcpForwarding local', 'X11Forwarding no', 'PermitTunnel no', 'PasswordAuthentication no', 'AuthenticationMethods publickey', 'UsePAM no']) {
      expect(SSHD_OPTIONS).toContain(o)
    }
  })

  it('the script is valid POSIX sh and reads the keys from the environment, never from arguments', () => {
    const s = sshdScript()
    expect(spawnSync('sh', ['-n', '-c', s]).status).toBe(0)
    expect(s).toContain('"$PODSHELL_SSHD_HOST_KEY"')
    expect(s).toContain('unset PODSHELL_SSHD_HOST_KEY PODSHELL_SSHD_AUTHORIZED_KEY')
    expect(s).toMatch(/\/usr\/sbin\/sshd -i -e -f "\$d\/sshd_config"$/)
  })
})
