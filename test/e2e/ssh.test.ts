import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execa } from 'execa'
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { cli, testEnv, TEST_HOME, uniqueName } from '../helpers/cli.js'

/**
 * `sandbox ssh-config` and `connect --editor` on real rootless Podman: plain OpenSSH (`ssh -F`,
 * `scp`) reaches the sandbox through the ProxyCommand (podshell → `podman exec -i` → `sshd -i` as
 * the agent), with no port listening on the host and the sandbox still on `lo` only. One sandbox
 * for every case; the last cases stop and delete it.
 */
let name: string
let work: string
let conf: string
const keyDir = () => join(TEST_HOME, 'sandboxes', name, 'ssh')
const alias = () => `openshell-${name}.default`

function ssh(args: string[], opts: { timeoutMs?: number } = {}) {
  return execa('ssh', ['-F', conf, ...args], { reject: false, env: testEnv(), extendEnv: false, stdin: 'ignore', timeout: opts.timeoutMs ?? 120_000 })
}

/** Listening TCP sockets of this uid in this network namespace, as `addr:port` (state 0A). */
function hostListeners(): Set<string> {
  const out = new Set<string>()
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try {
      text = readFileSync(f, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/)
      if (c[3] === '0A' && Number(c[7]) === process.getuid!()) out.add(c[1]!)
    }
  }
  return out
}

beforeAll(async () => {
  name = uniqueName('ssh')
  work = mkdtempSync(join(tmpdir(), 'podshell-ssh-'))
  conf = join(work, 'ssh_config')
  const r = await cli(['sandbox', 'create', '--name', name, '--detach'])
  expect(r.code, r.stderr).toBe(0)
})

afterAll(async () => {
  await cli(['sandbox', 'delete', name])
  rmSync(work, { recursive: true, force: true })
})

describe('sandbox ssh-config', () => {
  it('bad or unknown names: one line, nothing made', async () => {
    const bad = await cli(['sandbox', 'ssh-config', 'Bad_Name'])
    expect(bad.code).toBe(2)
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)
    expect(bad.stderr).toMatch(/^podshell: .*sandbox name/)
    const ghost = uniqueName('ghost')
    const unknown = await cli(['sandbox', 'ssh-config', ghost])
    expect(unknown.code).not.toBe(0)
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1)
    expect(unknown.stderr).toContain(ghost)
    expect(existsSync(join(TEST_HOME, 'sandboxes', ghost))).toBe(false)
  })

  it("prints OpenShell's Host block with podshell as the ProxyCommand; keys are 0600 in the state dir", async () => {
    const r = await cli(['sandbox', 'ssh-config', name])
    expect(r.code, r.stderr).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines[0]).toBe(`Host ${alias()}`)
    expect(lines.slice(2, 8)).toEqual([
      '    StrictHostKeyChecking no',
      '    UserKnownHostsFile /dev/null',
      '    GlobalKnownHostsFile /dev/null',
      '    LogLevel ERROR',
      '    ServerAliveInterval 15',
      '    ServerAliveCountMax 3',
    ])
    expect(lines[8]).toMatch(new RegExp(`^    ProxyCommand .*ssh-proxy --name ${name}$`))
    writeFileSync(conf, r.stdout)
    expect(statSync(keyDir()).mode & 0o777).toBe(0o700)
    const files = readdirSync(keyDir()).sort()
    expect(files).toEqual(['client_ed25519_key', 'client_ed25519_key.pub', 'host_ed25519_key'])
    for (const f of files) expect(statSync(join(keyDir(), f)).mode & 0o777, f).toBe(0o600)
    // Idempotent: the same keys the second time.
    const again = await cli(['sandbox', 'ssh-config', name])
    expect(again.stdout).toBe(r.stdout)
  })

  it('ssh -F runs a command in the sandbox as the agent uid', async () => {
    const r = await ssh([alias(), 'id -u; cat /etc/hostname'])
    expect(r.exitCode, r.stderr).toBe(0)
    const inside = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'id -u; cat /etc/hostname'])
    expect(inside.code, inside.stderr).toBe(0)
    expect(r.stdout.split('\n')[0]).toBe(String(process.getuid!()))
    expect(`${r.stdout}\n`.replace(/\n+$/, '')).toBe(inside.stdout.replace(/\n+$/, ''))
    // The session has the sandbox's environment (its egress goes through the gateway's proxy).
    const env = await ssh([alias(), 'echo "$HTTPS_PROXY"'])
    expect(env.stdout.trim()).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    // Each session is in the sandbox's audit log.
    const logs = await cli(['logs', name, '-n', '50'])
    expect(logs.stdout, logs.stderr).toContain('[event:ssh_session]')
  })

  it('scp copies a file in and out', async () => {
    const src = join(work, 'in.bin')
    const data = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 256))
    writeFileSync(src, data)
    const up = await execa('scp', ['-F', conf, src, `${alias()}:/tmp/copied.bin`], { reject: false, env: testEnv(), extendEnv: false, stdin: 'ignore' })
    expect(up.exitCode, up.stderr).toBe(0)
    const owner = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'stat -c %u /tmp/copied.bin; sha256sum < /tmp/copied.bin'])
    expect(owner.stdout.split('\n')[0]).toBe(String(process.getuid!()))
    const back = join(work, 'out.bin')
    const down = await execa('scp', ['-F', conf, `${alias()}:/tmp/copied.bin`, back], { reject: false, env: testEnv(), extendEnv: false, stdin: 'ignore' })
    expect(down.exitCode, down.stderr).toBe(0)
    expect(readFileSync(back).equals(data)).toBe(true)
  })

  it('during a session: no new listening port on the host, the sandbox has only lo and no new listener; only the public key is inside', async () => {
    const before = hostListeners()
    const session = ssh([alias(), 'sleep 60'])
    try {
      let dirs = ''
      for (let i = 0; i < 100 && !dirs; i++) {
        const r = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'ls -d /tmp/podshell-sshd.* 2>/dev/null || true'])
        dirs = r.stdout.trim()
        if (!dirs) await new Promise(res => setTimeout(res, 200))
      }
      // Exactly this session's dir: the earlier sessions' were removed when they ended.
      expect(dirs.split('\n'), 'sshd session dirs').toHaveLength(1)
      expect([...hostListeners()].filter(l => !before.has(l))).toEqual([])
      const net = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', "ip -o link | cut -d: -f2 | tr -d ' '; echo --; cat /proc/net/tcp /proc/net/tcp6 | awk '$4 == \"0A\" {print $2}'"])
      const [links, listening] = net.stdout.split('--\n')
      expect(links).toBe('lo\n')
      // The only listener in the pod is the bridge's proxy port (3128 = 0x0C38), as before ssh.
      expect(listening!.trim().split('\n').every(l => l.endsWith(':0C38')), listening).toBe(true)
      const inside = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'cat /tmp/podshell-sshd.*/authorized_keys; test -p /tmp/podshell-sshd.*/sshd_config && echo fifo; find /tmp/podshell-sshd.* -type f -exec grep -l "127.0.0.1:3128" {} + || echo no-env-in-files'])
      expect(inside.stdout.split('\n')[0]).toBe(readFileSync(join(keyDir(), 'client_ed25519_key.pub'), 'utf8').trim())
      // The session's environment (proxy variables, provider credentials) reaches sshd through a FIFO: no file holds it.
      expect(inside.stdout.split('\n').slice(1, 3), inside.stderr).toEqual(['fifo', 'no-env-in-files'])
      // Only the host key is a private key in there; the client's private key never enters.
      // (Lines 3-4 of the PEM body hold the key's own bytes; line 1 is the format header every key shares.)
      const clientPriv = readFileSync(join(keyDir(), 'client_ed25519_key'), 'utf8').split('\n').slice(3, 5)
      const grep = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', `grep -rl -F -e '${clientPriv[0]}' -e '${clientPriv[1]}' /tmp /home 2>/dev/null || echo none`])
      expect(grep.stdout.trim()).toBe('none')
    } finally {
      session.kill('SIGTERM')
      await session
    }
    // The session's sshd, its temp dir and the config writer are gone once the client is.
    let left = 'unchecked'
    for (let i = 0; i < 50 && left !== ''; i++) {
      if (i) await new Promise(res => setTimeout(res, 200))
      const r = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'ls -d /tmp/podshell-sshd.* 2>/dev/null; pgrep -x sshd || true'])
      left = r.stdout.trim()
    }
    expect(left).toBe('')
  })

  it('forwarding: -R (a listener in the sandbox leading back to the host) is refused; -W/-L (what Remote-SSH uses) connects from inside the sandbox', async () => {
    const r = await ssh(['-o', 'ExitOnForwardFailure=yes', '-R', '127.0.0.1:0:127.0.0.1:9', alias(), 'true'])
    expect(r.exitCode).not.toBe(0)
    expect(r.stderr).toMatch(/remote port forwarding failed/)
    // A direct-tcpip channel to the sandbox's own loopback (the bridge's proxy port answers HTTP).
    const w = await execa('ssh', ['-F', conf, '-W', '127.0.0.1:3128', alias()], { reject: false, env: testEnv(), extendEnv: false, input: 'GET / HTTP/1.0\r\n\r\n', timeout: 60_000 })
    expect(w.stdout, w.stderr).toMatch(/^HTTP\/1\.[01] \d{3} /)
  })

  it('connect --editor: one line without the editor; with it, the managed config is included from ~/.ssh/config and the editor gets --remote ssh-remote+ALIAS', async () => {
    const missing = await cli(['sandbox', 'connect', name, '--editor', 'cursor'], { env: { PATH: '/usr/bin:/bin' } })
    expect(missing.code).not.toBe(0)
    expect(missing.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^podshell: cursor is not installed or not on PATH/)])

    // A stand-in `code` records its argv. ~/.ssh/config of the test user is restored afterwards.
    const bin = join(work, 'bin')
    const argsFile = join(work, 'code-args')
    mkdirSync(bin)
    writeFileSync(join(bin, 'code'), `#!/bin/sh\nprintf '%s\\n' "$@" > '${argsFile}'\n`)
    chmodSync(join(bin, 'code'), 0o755)
    const userConf = join(homedir(), '.ssh', 'config')
    const backup = existsSync(userConf) ? join(work, 'config.bak') : undefined
    if (backup) copyFileSync(userConf, backup)
    try {
      const r = await cli(['sandbox', 'connect', name, '--editor', 'vscode'], { env: { PATH: `${bin}:${process.env.PATH}` } })
      expect(r.code, r.stderr).toBe(0)
      expect(r.stderr).toContain(`✓ Opened VS Code for sandbox ${name}`)
      for (let i = 0; i < 50 && !existsSync(argsFile); i++) await new Promise(res => setTimeout(res, 100))
      expect(readFileSync(argsFile, 'utf8').split('\n').slice(0, 2)).toEqual(['--remote', `ssh-remote+${alias()}`])
      expect(readFileSync(userConf, 'utf8')).toMatch(/^Include ".*\/podshell\/ssh_config"$/m)
      // What the editor does: plain `ssh ALIAS`, through ~/.ssh/config's Include.
      const viaInclude = await execa('ssh', [alias(), 'id -u'], { reject: false, env: testEnv(), extendEnv: false, stdin: 'ignore' })
      expect(viaInclude.exitCode, viaInclude.stderr).toBe(0)
      expect(viaInclude.stdout.trim()).toBe(String(process.getuid!()))
    } finally {
      if (backup) copyFileSync(backup, userConf)
      else rmSync(userConf, { force: true })
    }
  })

  it('create --editor: bad combinations and a missing editor leave nothing; otherwise the sandbox is kept and the editor gets a host that connects', async () => {
    const other = uniqueName('sshed')
    const withCmd = await cli(['sandbox', 'create', '--name', other, '--editor', 'vscode', '--', 'true'])
    expect(withCmd.code).toBe(2)
    expect(withCmd.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^podshell: --editor cannot be combined with a trailing command/)])
    const noKeep = await cli(['sandbox', 'create', '--name', other, '--editor', 'vscode', '--no-keep'])
    expect(noKeep.code).toBe(2)
    expect(noKeep.stderr).toMatch(/^podshell: --editor cannot be combined with --no-keep/)
    const missing = await cli(['sandbox', 'create', '--name', other, '--editor', 'cursor'], { env: { PATH: '/usr/bin:/bin' } })
    expect(missing.code).not.toBe(0)
    expect(missing.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^podshell: cursor is not installed or not on PATH/)])
    expect(existsSync(join(TEST_HOME, 'sandboxes', other))).toBe(false)

    const bin = join(work, 'bin-create')
    const argsFile = join(work, 'cursor-args')
    mkdirSync(bin)
    writeFileSync(join(bin, 'cursor'), `#!/bin/sh\nprintf '%s\\n' "$@" > '${argsFile}'\n`)
    chmodSync(join(bin, 'cursor'), 0o755)
    const userConf = join(homedir(), '.ssh', 'config')
    const backup = existsSync(userConf) ? join(work, 'config-create.bak') : undefined
    if (backup) copyFileSync(userConf, backup)
    try {
      const r = await cli(['sandbox', 'create', '--name', other, '--editor', 'cursor'], { env: { PATH: `${bin}:${process.env.PATH}` } })
      expect(r.code, r.stderr).toBe(0)
      expect(r.stderr).toContain(`✓ Opened Cursor for sandbox ${other}`)
      for (let i = 0; i < 50 && !existsSync(argsFile); i++) await new Promise(res => setTimeout(res, 100))
      expect(readFileSync(argsFile, 'utf8').split('\n').slice(0, 2)).toEqual(['--remote', `ssh-remote+openshell-${other}.default`])
      // The sandbox is kept running, and the named host connects through ~/.ssh/config's Include.
      const viaInclude = await execa('ssh', [`openshell-${other}.default`, 'id -u'], { reject: false, env: testEnv(), extendEnv: false, stdin: 'ignore', timeout: 120_000 })
      expect(viaInclude.exitCode, viaInclude.stderr).toBe(0)
      expect(viaInclude.stdout.trim()).toBe(String(process.getuid!()))
    } finally {
      if (backup) copyFileSync(backup, userConf)
      else rmSync(userConf, { force: true })
      await cli(['sandbox', 'delete', other])
    }
  })

  it('a stopped sandbox: ssh fails with one podshell line; delete removes the keys', async () => {
    const stop = await cli(['sandbox', 'stop', name])
    expect(stop.code, stop.stderr).toBe(0)
    const r = await ssh([alias(), 'true'])
    expect(r.exitCode).not.toBe(0)
    const ours = r.stderr.split('\n').filter(l => l.startsWith('podshell:'))
    expect(ours).toEqual([expect.stringMatching(new RegExp(`^podshell: sandbox ${name} is \\w+: start it`))])
    const del = await cli(['sandbox', 'delete', name])
    expect(del.code, del.stderr).toBe(0)
    expect(existsSync(keyDir())).toBe(false)
  })
})
