import { describe, expect, it, beforeAll } from 'vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { cli, podman, ROOT } from '../helpers/cli.js'

/**
 * podshell's images against real rootless Podman. The global setup (and CI before it) ran
 * `podshell image build all --offline`, so these tests start from built images and must never
 * rebuild them from scratch.
 */
const SANDBOX = 'localhost/podshell-sandbox:latest'
const GATEWAY = 'localhost/podshell-gateway:latest'
const BASE = 'localhost/podshell-base:bookworm'
const HASH_LABEL = 'io.podshell.input-hash'

interface Result { kind: string; ref: string; id: string; status: string; base: string; inputHash: string }

async function inspect(ref: string): Promise<{ Id: string; Labels: Record<string, string>; Config: { User?: string } }> {
  const r = await podman(['image', 'inspect', ref])
  expect(r.code, r.stderr).toBe(0)
  return (JSON.parse(r.stdout) as { Id: string; Labels: Record<string, string>; Config: { User?: string } }[])[0]!
}

async function inImage(ref: string, script: string, user?: string): Promise<{ stdout: string; stderr: string; code: number }> {
  return podman(['run', '--rm', '--network', 'none', ...(user ? ['--user', user] : []), ref, 'sh', '-c', script])
}

describe('podshell image build', () => {
  let before: { sandbox: string; gateway: string }
  beforeAll(async () => {
    before = { sandbox: (await inspect(SANDBOX)).Id, gateway: (await inspect(GATEWAY)).Id }
  })

  it('a second offline build is a no-op: both images "up to date", same ids, nothing built', async () => {
    const r = await cli(['image', 'build', 'all', '--offline', '-o', 'json'])
    expect(r.code, r.stderr).toBe(0)
    const results = JSON.parse(r.stdout) as Result[]
    expect(results.map(x => [x.kind, x.status])).toEqual([['sandbox', 'up to date'], ['gateway', 'up to date']])
    expect(results.map(x => x.id)).toEqual([before.sandbox, before.gateway])
    expect(r.stderr).toMatch(/podshell-sandbox:latest: up to date/)
    expect(r.stderr).not.toMatch(/building|bootstrapping|importing/)
  })

  it('labels each image with the hash of its inputs and the base it was built from', async () => {
    for (const ref of [SANDBOX, GATEWAY]) {
      const img = await inspect(ref)
      expect(img.Labels[HASH_LABEL]).toMatch(/^[0-9a-f]{64}$/)
      expect(img.Labels['io.podshell.base']).toBeTruthy()
    }
    expect((await inspect(GATEWAY)).Labels['io.podshell.app-hash']).toMatch(/^[0-9a-f]{64}$/)
  })

  it('a changed input (another base reference) rebuilds; the original inputs rebuild back, then up to date', async () => {
    // Same base content under another name: BASE is a build arg, so the input hash changes, while
    // podman's layer cache keeps the rebuild cheap.
    const alias = 'localhost/podshell-e2e-base:alias'
    expect((await podman(['tag', BASE, alias])).code).toBe(0)
    try {
      const r1 = await cli(['image', 'build', 'sandbox', '--base', alias, '-o', 'json'])
      expect(r1.code, r1.stderr).toBe(0)
      const [changed] = JSON.parse(r1.stdout) as Result[]
      expect(changed!.status).toBe('built')
      expect((await inspect(SANDBOX)).Labels['io.podshell.base']).toBe(alias)
      expect(r1.stderr).toMatch(/building localhost\/podshell-sandbox:latest \(inputs changed\)/)

      const r2 = await cli(['image', 'build', 'sandbox', '--offline', '-o', 'json'])
      expect(r2.code, r2.stderr).toBe(0)
      const [back] = JSON.parse(r2.stdout) as Result[]
      expect(back!.status).toBe('built')
      expect(back!.inputHash).not.toBe(changed!.inputHash)
      expect((await inspect(SANDBOX)).Labels['io.podshell.base']).toBe(BASE)

      const r3 = await cli(['image', 'build', 'sandbox', '--offline', '-o', 'json'])
      expect((JSON.parse(r3.stdout) as Result[])[0]!.status).toBe('up to date')
    } finally {
      await podman(['rmi', alias])
    }
  })

  it('without --offline and no local registry base: pulls, or (no registry, as on this machine) falls back to the offline base', async () => {
    const registryBase = 'docker.io/library/debian:bookworm-slim'
    const hadLocal = (await podman(['image', 'exists', registryBase])).code === 0
    const r = await cli(['image', 'build', 'sandbox', '-o', 'json'])
    expect(r.code, r.stderr).toBe(0)
    const [res] = JSON.parse(r.stdout) as Result[]
    if (hadLocal || (await podman(['image', 'exists', registryBase])).code === 0) {
      // A registry (or an earlier pull) provided the base: the image is built on it.
      expect(res!.base).toBe(registryBase)
      const back = await cli(['image', 'build', 'sandbox', '--offline'])
      expect(back.code, back.stderr).toBe(0)
    } else {
      expect(r.stderr).toMatch(/no registry answers \(.+\): building offline/)
      expect(res).toMatchObject({ base: BASE, status: 'up to date' })
    }
  })

  it('an explicit --base that cannot be pulled fails in one line with the fix', async () => {
    const r = await cli(['image', 'build', 'sandbox', '--base', 'localhost/podshell-no-such-base:x'])
    expect(r.code).toBe(1)
    const lines = r.stderr.trim().split('\n').filter(l => l.startsWith('podshell:'))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^podshell: cannot pull localhost\/podshell-no-such-base:x: .+: .*--offline/)
  })

  it('rejects --offline with --base, unknown images and unsafe agent versions before doing anything', async () => {
    expect((await cli(['image', 'build', 'all', '--offline', '--base', BASE])).stderr).toMatch(/--offline and --base exclude each other/)
    expect((await cli(['image', 'build', 'everything'])).code).toBe(2)
    const bad = await cli(['image', 'build', 'sandbox', '--offline', '--build-arg', 'CODEX_VERSION=1.0 evil'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/invalid CODEX_VERSION/)
  })
})

describe('the sandbox image', () => {
  it('runs as the non-root user agent (uid 1000) by default', async () => {
    expect((await inspect(SANDBOX)).Config.User).toBe('agent')
    const r = await inImage(SANDBOX, 'id -u; id -un; echo $HOME; pwd')
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.trim().split('\n')).toEqual(['1000', 'agent', '/home/agent', '/home/agent'])
  })

  it('has bash, git, curl, python3, node, ip, unshare, ps and find', async () => {
    const r = await inImage(SANDBOX, 'for c in bash git curl python3 node ip unshare ps find; do command -v $c >/dev/null || echo "missing $c"; done; git --version; python3 -c "print(1+1)"; node -e "console.log(40+2)"; ip -br addr')
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).not.toMatch(/missing/)
    expect(r.stdout).toMatch(/git version 2\./)
    expect(r.stdout).toMatch(/^2$/m)
    expect(r.stdout).toMatch(/^42$/m)
    expect(r.stdout).toMatch(/^lo\s/m)
  })

  it('trusts public CAs (ca-certificates) and has no package lists or man pages left over', async () => {
    const r = await inImage(SANDBOX, 'test -s /etc/ssl/certs/ca-certificates.crt && echo certs; ls /var/lib/apt/lists | grep -c _Packages || true; ls /usr/share/man 2>/dev/null | wc -l')
    expect(r.stdout.trim().split('\n')).toEqual(['certs', '0', '0'])
  })

  it('has sshd for ssh-config, but no baked host keys and no setuid ssh-keysign', async () => {
    const r = await inImage(SANDBOX, 'test -x /usr/sbin/sshd && echo sshd; ls /etc/ssh | grep -c ssh_host_ || true; find /usr/lib/openssh -perm -4000 | wc -l')
    expect(r.stdout.trim().split('\n')).toEqual(['sshd', '0', '0'])
  })
})

describe('the gateway image', () => {
  it('has node >= 22 at /usr/local/bin/node and socat', async () => {
    const r = await inImage(GATEWAY, 'command -v node; node -p "process.versions.node"; command -v socat')
    expect(r.code, r.stderr).toBe(0)
    const [nodePath, version, socat] = r.stdout.trim().split('\n')
    expect(nodePath).toBe('/usr/local/bin/node')
    expect(Number(version!.split('.')[0])).toBeGreaterThanOrEqual(22)
    expect(socat).toBe('/usr/bin/socat')
  })

  it('holds the built podshell as one bundled command layer that runs: no node_modules, no dev tooling', async () => {
    const r = await inImage(GATEWAY, 'cd /opt/podshell && ls; test -f dist/bundle/run.js && echo bundle; node dist/cli/main.js --version')
    expect(r.code, r.stderr).toBe(0)
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
    expect(r.stdout.trim().split('\n')).toEqual(['dist', 'package.json', 'policies', 'bundle', version])
  })

  it('its default command is the gateway server on /var/lib/podshell', async () => {
    const r = await podman(['image', 'inspect', '--format', '{{json .Config.Cmd}}', GATEWAY])
    expect(JSON.parse(r.stdout)).toEqual(['node', '/opt/podshell/dist/cli/main.js', 'gateway', 'serve', '--data', '/var/lib/podshell'])
  })

  it('socat runs as an arbitrary non-root uid on a read-only rootfs (how the bridge runs it)', async () => {
    const r = await podman(['run', '--rm', '--network', 'none', '--user', '4242:4242', '--read-only', '--cap-drop', 'ALL', GATEWAY, 'socat', '-V'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/socat version 1\./)
  })
})
