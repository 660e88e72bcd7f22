import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { cli, hostDir, uniqueName, podman, TEST_HOME } from '../helpers/cli.js'
import { hostAddress, writePolicyText, gatewayHosts, expectLogged, deleteSandboxes, python } from '../helpers/attack.js'
import { TlsUpstream } from '../helpers/tls-upstream.js'

/**
 * TLS inspection end to end: real clients in a real sandbox, with NO CA flags (only what podshell
 * mounts and sets), through the real bridge and gateway container, to HTTPS servers on the test
 * network address that have their own test CA, given to podshell through `tls.extra_ca_files`.
 * The gateway resolves the test names through its /etc/hosts (gatewayHosts).
 */
const H = hostAddress()
let good: TlsUpstream // leaf for any SNI, from CA 1 (configured)
let wrong: TlsUpstream // always a leaf for api.tls.test, CA 1: wrong name for wrong.tls.test
let rogue: TlsUpstream // CA nobody configured
let name: string
let cfg: string
let dir: string
const env = () => ({ XDG_CONFIG_HOME: cfg })

const NAMES = ['api.tls.test', 'front.tls.test', 'other.tls.test', 'skip.tls.test', 'wrong.tls.test', 'rogue.tls.test', 'git.tls.test']

beforeAll(async () => {
  dir = hostDir('tls')
  // A bare repository served over git's dumb HTTP protocol, over HTTPS.
  const work = join(dir, 'work')
  await execa('git', ['init', '-q', '-b', 'main', work])
  writeFileSync(join(work, 'hello.txt'), 'hello over inspected TLS\n')
  await execa('git', ['-C', work, 'add', '.'])
  await execa('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'commit', '-q', '-m', 'init'])
  await execa('git', ['clone', '-q', '--bare', work, join(dir, 'repo.git')])
  await execa('git', ['-C', join(dir, 'repo.git'), 'update-server-info'])
  good = await TlsUpstream.start({ dir, caName: 'tls e2e upstream CA', gitRoot: dir })
  wrong = await TlsUpstream.start({ dir, caName: 'tls e2e upstream CA 2', fixedName: 'api.tls.test' })
  rogue = await TlsUpstream.start({ dir, caName: 'tls e2e rogue CA' })
  cfg = join(dir, 'cfg')
  mkdirSync(join(cfg, 'podshell'), { recursive: true })
  writeFileSync(join(cfg, 'podshell', 'config.yaml'), `tls:\n  extra_ca_files:\n    - ${good.caFile}\n    - ${wrong.caFile}\n`)
  const ip = [`${H}/32`]
  const P = good.port
  const policy = writePolicyText(`version: 1
network_policies:
  github:
    name: github
    endpoints:
      - { host: api.tls.test, port: ${P}, protocol: rest, enforcement: enforce, access: read-only, allowed_ips: [${ip.join(',')}] }
      - { host: git.tls.test, port: ${P}, protocol: rest, enforcement: enforce, access: read-only, allowed_ips: [${ip.join(',')}] }
      - { host: front.tls.test, port: ${P}, protocol: rest, enforcement: enforce, access: full, allowed_ips: [${ip.join(',')}] }
      - { host: wrong.tls.test, port: ${wrong.port}, protocol: rest, enforcement: enforce, access: read-only, allowed_ips: [${ip.join(',')}] }
      - { host: rogue.tls.test, port: ${rogue.port}, protocol: rest, enforcement: enforce, access: read-only, allowed_ips: [${ip.join(',')}] }
  cdn:
    name: cdn
    endpoints:
      - { host: other.tls.test, port: ${P}, allowed_ips: [${ip.join(',')}] }
      - { host: skip.tls.test, port: ${P}, tls: skip, allowed_ips: [${ip.join(',')}] }
`)
  writeFileSync(join(dir, 'policy-fed.yaml'), readFileSync(policy, 'utf8'))
  name = uniqueName('tls')
  const r = await cli(['sandbox', 'create', '--name', name, '--policy', policy, '--mount', `${process.execPath}:/opt/node24/node:ro`, '--detach'], { env: env() })
  expect(r.code, r.stderr).toBe(0)
  await gatewayHosts(NAMES.map(n => [H, n] as [string, string]))
})

afterAll(async () => {
  await deleteSandboxes([name])
  await Promise.all([good?.close(), wrong?.close(), rogue?.close()])
})

const inSandbox = (cmd: string[]) => cli(['sandbox', 'exec', '-n', name, '--', ...cmd])
const url = (host: string, path: string, port = good.port) => `https://${host}:${port}${path}`

describe('TLS inspection with real clients (no CA flags)', () => {
  it('curl: GET allowed and verified against the sandbox CA; POST denied with the L7 deny body', async () => {
    const get = await inSandbox(['curl', '-sS', '-v', url('api.tls.test', '/ok')])
    expect(get.code, get.stderr).toBe(0)
    expect(get.stdout).toBe('upstream-ok')
    expect(get.stderr).toMatch(/issuer: .*CN=podshell sandbox CA/)
    const post = await inSandbox(['curl', '-sS', '-w', '\\n%{http_code}', '-X', 'POST', '--data', 'x=1', url('api.tls.test', '/echo')])
    expect(post.code, post.stderr).toBe(0)
    const [body, status] = post.stdout.split('\n')
    expect(status).toBe('403')
    expect(JSON.parse(body!)).toMatchObject({ error: 'policy_denied', policy: 'github', rule: 'POST /echo', layer: 'l7', protocol: 'rest', method: 'POST', path: '/echo', host: 'api.tls.test', port: good.port })
    expect(good.seen('/echo')).toBe(0)
    await expectLogged(name, /HTTP:POST/, /DENIED/, /api\.tls\.test/, /\/echo/)
  })

  it('python3 urllib: GET allowed, POST refused', async () => {
    const r = await python(name, `
import urllib.request, urllib.error, sys
print(urllib.request.urlopen(sys.argv[1] + '/ok').read().decode())
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/echo', data=b'x', method='POST'))
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
`, [`https://api.tls.test:${good.port}`])
    expect(r.code, r.stderr).toBe(0)
    const [ok, denied] = r.stdout.trim().split('\n')
    expect(ok).toBe('upstream-ok')
    expect(denied).toMatch(/^403 \{"error":"policy_denied"/)
  })

  it('git ls-remote and clone over HTTPS', async () => {
    const r = await inSandbox(['sh', '-c', `git ls-remote ${url('git.tls.test', '/repo.git')} && cd /tmp && git clone -q ${url('git.tls.test', '/repo.git')} r && cat r/hello.txt`])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^[0-9a-f]{40}\tHEAD\n/)
    expect(r.stdout).toMatch(/hello over inspected TLS\n$/)
  })

  it("node fetch (NODE_EXTRA_CA_CERTS): GET allowed, POST denied", async () => {
    const r = await inSandbox(['/opt/node24/node', '-e', `
const u = process.argv[1]
;(async () => {
  const a = await fetch(u + '/ok'); console.log(a.status, await a.text())
  const b = await fetch(u + '/echo', { method: 'POST', body: 'x' }); console.log(b.status, (await b.json()).error)
})()`, `https://api.tls.test:${good.port}`])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('200 upstream-ok\n403 policy_denied\n')
  })

  it('keep-alive: every request on one connection is checked; a denial does not end the connection', async () => {
    const r = await python(name, `
import http.client, sys, ssl
c = http.client.HTTPSConnection('127.0.0.1', 3128, context=ssl.create_default_context())
c.set_tunnel('api.tls.test', int(sys.argv[1]))
out = []
for m, p in [('GET', '/ok'), ('POST', '/echo'), ('GET', '/whoami'), ('DELETE', '/whoami')]:
    c.request(m, p, body=b'payload' if m == 'POST' else None)
    r = c.getresponse(); r.read(); out.append(str(r.status))
print(' '.join(out))
`, [String(good.port)])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.trim()).toBe('200 403 200 403')
  })

  it('#14 SNI spoofing and domain fronting → refused at the handshake (SNI) or per request (Host), logged', async () => {
    const r = await python(name, `
import socket, ssl, sys, json
port = int(sys.argv[1])
def tunnel(target):
    s = socket.create_connection(('127.0.0.1', 3128))
    s.sendall(f'CONNECT {target}:{port} HTTP/1.1\\r\\nHost: {target}:{port}\\r\\n\\r\\n'.encode())
    assert s.recv(4096).startswith(b'HTTP/1.1 200')
    return s
ctx = ssl.create_default_context()
# SNI for another host than the CONNECT target
try:
    ctx.wrap_socket(tunnel('front.tls.test'), server_hostname='other.tls.test')
    print('sni: handshake completed')
except (ssl.SSLError, ConnectionError, OSError) as e:
    print('sni: refused')
# Matching SNI, another site's Host inside
s = ctx.wrap_socket(tunnel('front.tls.test'), server_hostname='front.tls.test')
s.sendall(f'GET /whoami?fronted HTTP/1.1\\r\\nHost: other.tls.test:{port}\\r\\n\\r\\n'.encode())
data = b''
while b'\\r\\n\\r\\n' not in data: data += s.recv(65536)
head, body = data.split(b'\\r\\n\\r\\n', 1)
n = int([l.split(b':')[1] for l in head.split(b'\\r\\n') if l.lower().startswith(b'content-length')][0])
while len(body) < n: body += s.recv(65536)
print('host:', head.split(b' ')[1].decode(), json.loads(body)['detail'])
# A tunnelled endpoint (tls: skip): the gateway does not terminate it but reads its ClientHello.
# Unverified on purpose: any refusal must come from the gateway, not from the client's checks.
try:
    t = ssl._create_unverified_context().wrap_socket(tunnel('skip.tls.test'), server_hostname='api.tls.test')
    t.sendall(f'GET /whoami?skipfronted HTTP/1.1\\r\\nHost: api.tls.test:{port}\\r\\n\\r\\n'.encode())
    t.recv(65536)
    print('skip-sni: handshake completed')
except (ssl.SSLError, ConnectionError, OSError) as e:
    print('skip-sni: refused')
`, [String(good.port)])
    expect(r.code, r.stderr).toBe(0)
    const lines = r.stdout.trim().split('\n')
    expect(lines[0]).toBe('sni: refused')
    expect(lines[1]).toBe(`host: 403 Host other.tls.test:${good.port} does not match the CONNECT target front.tls.test:${good.port} (domain fronting)`)
    expect(lines[2]).toBe('skip-sni: refused')
    expect(good.seen('fronted')).toBe(0)
    expect(good.seen('skipfronted')).toBe(0)
    await expectLogged(name, /DENIED/, /skip\.tls\.test/, /tunnel closed: SNI api\.tls\.test does not match the CONNECT target skip\.tls\.test/)
    await expectLogged(name, /DENIED/, /front\.tls\.test/, /SNI other\.tls\.test does not match the CONNECT target front\.tls\.test \(domain fronting\)/)
    await expectLogged(name, /DENIED/, /front\.tls\.test/, /Host other\.tls\.test:\d+ does not match/)
  })

  it('upstream with an untrusted CA or a wrong-name certificate: 502, nothing served, logged', async () => {
    const rog = await inSandbox(['curl', '-sS', '-w', '\\n%{http_code}', url('rogue.tls.test', '/ok', rogue.port)])
    expect(rog.stdout).toMatch(/"error":"upstream_certificate_invalid"[\s\S]*\n502$/)
    const wr = await inSandbox(['curl', '-sS', '-w', '\\n%{http_code}', url('wrong.tls.test', '/ok', wrong.port)])
    expect(wr.stdout).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID[\s\S]*\n502$/)
    expect(rogue.requests.length + wrong.requests.length).toBe(0)
    await expectLogged(name, /wrong\.tls\.test/, /upstream certificate of wrong\.tls\.test:\d+ refused: ERR_TLS_CERT_ALTNAME_INVALID/)
  })

  it("tls: skip and L4 endpoints are tunnelled: the client sees the upstream's own chain", async () => {
    for (const host of ['skip.tls.test', 'other.tls.test']) {
      const r = await inSandbox(['curl', '-sS', '-v', url(host, '/whoami')])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stderr).toMatch(/issuer: CN=tls e2e upstream CA/)
      expect(JSON.parse(r.stdout)).toMatchObject({ sni: host })
    }
  })

  it('the bundle is mounted read-only over the system paths; the CA key is nowhere in the sandbox', async () => {
    const r = await inSandbox(['sh', '-c', 'cmp /etc/ssl/certs/ca-certificates.crt /etc/podshell-tls/ca-bundle.pem && echo same; echo x >> /etc/ssl/certs/ca-certificates.crt 2>/dev/null || echo ro; grep -rl "PRIVATE KEY" /etc/podshell-tls /etc/ssl 2>/dev/null | wc -l; env | grep -c -E "^(SSL_CERT_FILE|NODE_EXTRA_CA_CERTS|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|GIT_SSL_CAINFO|DENO_CERT|JAVA_TOOL_OPTIONS)="'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('same\nro\n0\n7\n')
    // The key exists on the host side only, in the gateway's data.
    expect(readFileSync(join(TEST_HOME, 'gateway/tls/ca/ca-key.pem'), 'utf8')).toMatch(/PRIVATE KEY/)
  })

  it('clients that ignore every variable read the system bundle path, which is the podshell bundle', async () => {
    // python with no CA variable: OpenSSL's default file (Debian: /usr/lib/ssl/cert.pem -> /etc/ssl/certs/ca-certificates.crt).
    const r = await inSandbox(['env', '-u', 'SSL_CERT_FILE', '-u', 'REQUESTS_CA_BUNDLE', 'python3', '-c', `import urllib.request; print(urllib.request.urlopen('${url('api.tls.test', '/ok')}').read().decode())`])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('upstream-ok\n')
  })

  it('--from an image with the Fedora/RHEL bundle layout (symlinked ca-bundle.crt, no Debian bundle)', async () => {
    const ctx = join(dir, 'fedora-layout')
    mkdirSync(ctx, { recursive: true })
    writeFileSync(join(ctx, 'Containerfile'), [
      'FROM localhost/podshell-sandbox:latest',
      'USER root',
      'RUN mkdir -p /etc/pki/ca-trust/extracted/pem /etc/pki/tls/certs && mv /etc/ssl/certs/ca-certificates.crt /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem \\',
      ' && ln -s /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem /etc/pki/tls/certs/ca-bundle.crt && rm -f /usr/lib/ssl/cert.pem',
      '',
    ].join('\n'))
    const tag = 'localhost/podshell-test-fedora-layout:latest'
    const b = await podman(['build', '-q', '--pull=never', '--network', 'none', '-t', tag, ctx])
    expect(b.code, b.stderr).toBe(0)
    const n = uniqueName('tlsfed')
    const c = await cli(['sandbox', 'create', '--name', n, '--from', tag, '--policy', join(dir, 'policy-fed.yaml'), '--detach'], { env: env() })
    try {
      expect(c.code, c.stderr).toBe(0)
      // The symlink target (Fedora's canonical file) now holds the podshell bundle; curl pointed at
      // the distribution path alone verifies the gateway's certificate.
      const r = await cli(['sandbox', 'exec', '-n', n, '--', 'sh', '-c', `cmp /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem /etc/podshell-tls/ca-bundle.pem && env -u CURL_CA_BUNDLE -u SSL_CERT_FILE curl -sS --cacert /etc/pki/tls/certs/ca-bundle.crt ${url('api.tls.test', '/ok')}`])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toBe('upstream-ok')
    } finally {
      await deleteSandboxes([n])
    }
  })

  it('a mount that would expose the data dir (and so the CA key) is refused', async () => {
    const r = await cli(['sandbox', 'create', '--name', uniqueName('tlsmnt'), '--mount', `${join(TEST_HOME, 'gateway')}:/x:ro`, '--no-keep', '--', 'true'], { env: env() })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/refusing to mount --mount .*podshell's data \(policies, gateway sockets, the sandbox CA key\)/)
  })

  it('a gateway restart regenerates nothing: same CA, the running sandbox still trusts it', async () => {
    const before = JSON.parse((await cli(['gateway', 'ca', '-o', 'json'], { env: env() })).stdout).fingerprint_sha256
    expect((await cli(['gateway', 'stop'], { env: env() })).code).toBe(0)
    const start = await cli(['gateway', 'start'], { env: env() })
    expect(start.code, start.stderr).toBe(0)
    await gatewayHosts(NAMES.map(n => [H, n] as [string, string]))
    const after = JSON.parse((await cli(['gateway', 'ca', '-o', 'json'], { env: env() })).stdout).fingerprint_sha256
    expect(after).toBe(before)
    const r = await inSandbox(['curl', '-sS', url('api.tls.test', '/ok')])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('upstream-ok')
  })

  it('gateway ca prints the CA and its fingerprint', async () => {
    const r = await cli(['gateway', 'ca'], { env: env() })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\nSHA-256 Fingerprint=([0-9A-F]{2}:){31}[0-9A-F]{2}\n$/)
    const j = await cli(['gateway', 'ca', '-o', 'json'], { env: env() })
    expect(JSON.parse(j.stdout).subject).toMatch(/^CN=podshell sandbox CA /)
  })

  it('gateway ca --rotate: running sandboxes keep working on the old CA; after a restart they trust the new one', async () => {
    const issuer = async () => {
      const r = await inSandbox(['curl', '-sS', '-v', '-o', '/dev/null', url('api.tls.test', '/ok')])
      expect(r.code, r.stderr).toBe(0)
      return /issuer: (.*)/.exec(r.stderr)![1]!.trim()
    }
    const before = await issuer()
    const rot = await cli(['gateway', 'ca', '--rotate', '-o', 'json'], { env: env() })
    expect(rot.code, rot.stderr).toBe(0)
    expect(rot.stderr).toMatch(/running sandboxes keep working with the previous CA until they are recreated/)
    expect(await issuer()).toBe(before)
    const rs = await cli(['sandbox', 'restart', name], { env: env() })
    expect(rs.code, rs.stderr).toBe(0)
    const bundleCa = await inSandbox(['sh', '-c', 'grep -c "BEGIN CERTIFICATE" /etc/podshell-tls/podshell-ca.pem'])
    expect(bundleCa.stdout.trim()).toBe('1')
    // Same subject (same user@host), new key: the chain verifies against the rewritten bundle.
    expect(await issuer()).toBe(before)
    const fp = JSON.parse(rot.stdout).fingerprint_sha256.replace(/:/g, '').toLowerCase()
    const inBundle = await inSandbox(['sh', '-c', 'openssl x509 -noout -fingerprint -sha256 -in /etc/podshell-tls/podshell-ca.pem 2>/dev/null || python3 -c "import ssl,hashlib,sys; print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())).hexdigest())" /etc/podshell-tls/podshell-ca.pem'])
    expect(inBundle.stdout.replace(/.*=/, '').replace(/:/g, '').trim().toLowerCase()).toBe(fp)
  })
})
