import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net'
import { networkInterfaces, tmpdir } from 'node:os'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { stringify } from 'yaml'
import { cli, podman, uniqueName, hostDir, ROOT, TEST_HOME, testEnv, type CliResult } from './cli.js'

/**
 * Shared pieces of the adversarial suite (test/e2e/attack-*, fault-*, load-*).
 *
 * Everything here runs REAL things: sandboxes made by the podshell CLI, the attack probe inside
 * them, upstream servers on this host's own address. Nothing is mocked, and no test traffic goes
 * beyond this machine: the only upstreams are the servers below, and "no route" attacks aim at
 * addresses that a sandbox's loopback-only network namespace cannot reach.
 */

export const SANDBOX_IMAGE = 'localhost/podshell-sandbox:latest'
const ATTACK_SRC = join(ROOT, 'test', 'images', 'attack')

// ───────────────────────────── the attack image ─────────────────────────────

/**
 * The sandbox image plus the podshell-attack probe (test/images/attack/probe.c), tagged by the hash
 * of the probe source, the Containerfile and the sandbox image id: built once, rebuilt only when one
 * of them changes. The probe is compiled on the host with gcc (static, so it needs nothing from the
 * image); the image build has no RUN step.
 */
export async function attackImage(): Promise<string> {
  const base = (await podman(['image', 'inspect', '--format', '{{.Id}}', SANDBOX_IMAGE])).stdout.trim()
  if (!base) throw new Error(`${SANDBOX_IMAGE} is missing: the e2e global setup builds it (podshell image build all --offline)`)
  const containerfile = readFileSync(join(ATTACK_SRC, 'Containerfile'))
  const hash = createHash('sha256').update(probeHash()).update('\0').update(containerfile).update('\0').update(base).digest('hex').slice(0, 16)
  const tag = `localhost/podshell-attack:${hash}`
  if ((await podman(['image', 'exists', tag])).code === 0) return tag
  const ctx = mkdtempSync(join(tmpdir(), 'podshell-attack-'))
  try {
    copyFileSync(await attackBinary(), join(ctx, 'podshell-attack'))
    copyFileSync(join(ATTACK_SRC, 'Containerfile'), join(ctx, 'Containerfile'))
    const b = await podman(['build', '-q', '--pull=never', '--label', 'io.podshell.test=attack-image', '-t', tag, ctx])
    if (b.code !== 0) throw new Error(`building ${tag} failed: ${b.stderr}`)
  } finally {
    rmSync(ctx, { recursive: true, force: true })
  }
  // Older builds of the probe image are dead weight.
  const old = await podman(['images', '--filter', 'reference=localhost/podshell-attack', '--format', '{{.Repository}}:{{.Tag}}'])
  for (const ref of old.stdout.split('\n').filter(r => r && r !== tag)) await podman(['rmi', '-f', ref])
  return tag
}

function probeHash(): string {
  return createHash('sha256').update(readFileSync(join(ATTACK_SRC, 'probe.c'))).digest('hex').slice(0, 16)
}

/**
 * The probe compiled on the host (gcc -static), cached by source hash in the temp dir. Also used
 * directly on the host as a control (e.g. a crash that does leave a core file there).
 */
export async function attackBinary(): Promise<string> {
  const out = join(tmpdir(), `podshell-attack-${process.getuid?.() ?? 0}-${probeHash()}`)
  if (existsSync(out)) return out
  const tmp = `${out}.${process.pid}`
  const gcc = await execa('gcc', ['-static', '-no-pie', '-O1', '-Wall', '-o', tmp, join(ATTACK_SRC, 'probe.c')], { reject: false })
  if (gcc.exitCode !== 0) {
    throw new Error(`compiling the attack probe failed (gcc and the static glibc, Debian package libc6-dev, are needed): ${gcc.stderr || gcc.shortMessage}`)
  }
  renameSync(tmp, out)
  return out
}

export interface ProbeResult {
  attack: string
  blocked: boolean
  /** errno name (EPERM), signal (SIGSYS) or what worked. */
  detail: string
}

/** Parses podshell-attack's `RESULT <attack> blocked|SUCCEEDED <detail>` lines. */
export function parseProbe(out: string): Record<string, ProbeResult> {
  const res: Record<string, ProbeResult> = {}
  for (const line of out.split('\n')) {
    const m = /^RESULT (\S+) (blocked|SUCCEEDED) (.*)$/.exec(line.trim())
    if (m) res[m[1]!] = { attack: m[1]!, blocked: m[2] === 'blocked', detail: m[3]! }
  }
  return res
}

/** Runs probe attacks in a sandbox and returns the result of each (throws if one did not report). */
export async function probeInSandbox(name: string, attacks: string[], opts: { workdir?: string } = {}): Promise<Record<string, ProbeResult>> {
  const r = await cli(['sandbox', 'exec', '-n', name, ...(opts.workdir ? ['--workdir', opts.workdir] : []), '--', 'podshell-attack', ...attacks])
  const res = parseProbe(r.stdout)
  for (const a of attacks) {
    const key = a.split('=')[0]!
    if (!res[key]) throw new Error(`probe ${key} gave no result (exit ${r.code}): ${r.stdout}${r.stderr}`)
  }
  return res
}

/**
 * The control: the same probe in a plain rootless container that runs as the same uid in the same
 * kind of network namespace but WITHOUT podshell's seccomp profile. What succeeds here and fails
 * in the sandbox is what podshell's hardening adds (and shows the probe can detect success).
 */
export async function probeInControl(image: string, attacks: string[], extra: string[] = []): Promise<Record<string, ProbeResult>> {
  const r = await podman(['run', '--rm', '--network', 'none', '--userns', 'keep-id', '--security-opt', 'seccomp=unconfined', ...extra, image, 'podshell-attack', ...attacks])
  return parseProbe(r.stdout)
}

// ───────────────────────────── sandboxes ─────────────────────────────

export interface SandboxOptions {
  policy?: string
  image?: string
  workdir?: string
  mounts?: string[]
  env?: string[]
  extra?: string[]
}

/** Creates a detached sandbox with the CLI and returns its name; throws with podshell's message on failure. */
export async function createSandbox(prefix: string, o: SandboxOptions = {}): Promise<string> {
  const name = uniqueName(prefix)
  const args = ['sandbox', 'create', '--name', name, '--detach']
  if (o.policy) args.push('--policy', o.policy)
  if (o.image) args.push('--from', o.image)
  if (o.workdir) args.push('--workdir', o.workdir)
  for (const m of o.mounts ?? []) args.push('--mount', m)
  for (const e of o.env ?? []) args.push('--env', e)
  args.push(...(o.extra ?? []))
  const r = await cli(args)
  if (r.code !== 0) throw new Error(`sandbox create ${name} failed (${r.code}): ${r.stderr}`)
  return name
}

export async function deleteSandboxes(names: string[]): Promise<void> {
  const live = names.filter(Boolean)
  if (live.length) await cli(['sandbox', 'delete', ...live])
}

/** `sh -c script` inside the sandbox. */
export function sh(name: string, script: string, opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  return cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', script], { timeoutMs: opts.timeoutMs })
}

export function bash(name: string, script: string): Promise<CliResult> {
  return cli(['sandbox', 'exec', '-n', name, '--', 'bash', '-c', script])
}

/** Runs a python3 program inside the sandbox with string arguments (no shell quoting involved). */
export function python(name: string, program: string, args: string[] = []): Promise<CliResult> {
  return cli(['sandbox', 'exec', '-n', name, '--', 'python3', '-c', program, ...args])
}

export function node(name: string, program: string, args: string[] = []): Promise<CliResult> {
  return cli(['sandbox', 'exec', '-n', name, '--', 'node', '-e', program, ...args])
}

export const PROXY = 'http://127.0.0.1:3128'

/**
 * A request through the sandbox's proxy with curl, forced through the proxy (`--noproxy ''`
 * overrides NO_PROXY). tunnel=true sends CONNECT first (curl --proxytunnel).
 * Returns the CONNECT status, the HTTP status and the body.
 */
export async function curlProxy(name: string, url: string, opts: { tunnel?: boolean; method?: string; extra?: string[]; maxTime?: number } = {}): Promise<{ connect: number; status: number; body: string; exit: number; stderr: string }> {
  const args = [
    'curl', '-sS', '--max-time', String(opts.maxTime ?? 10), '-x', PROXY, '--noproxy', '',
    ...(opts.tunnel ? ['--proxytunnel'] : []),
    ...(opts.method ? ['-X', opts.method] : []),
    ...(opts.extra ?? []),
    '-w', '\n@@CURL %{http_connect} %{http_code}', url,
  ]
  const r = await cli(['sandbox', 'exec', '-n', name, '--', ...args])
  const m = /\n?@@CURL (\d+) (\d+)$/.exec(r.stdout)
  return {
    connect: m ? Number(m[1]) : -1,
    status: m ? Number(m[2]) : -1,
    body: m ? r.stdout.slice(0, m.index) : r.stdout,
    exit: r.code,
    stderr: r.stderr,
  }
}

const RAW_PROXY_PY = `
import socket, sys, base64
s = socket.create_connection(('127.0.0.1', 3128), timeout=5)
s.sendall(base64.b64decode(sys.argv[1]))
s.settimeout(float(sys.argv[2]))
out = b''
try:
    while len(out) < 1 << 20:
        d = s.recv(65536)
        if not d:
            break
        out += d
except socket.timeout:
    pass
sys.stdout.write(out.decode('latin-1'))
`

/** Sends raw bytes to the sandbox's proxy from inside and returns everything it answers (until close or `waitSec` idle). */
export async function rawProxy(name: string, bytes: string, waitSec = 2): Promise<string> {
  const r = await python(name, RAW_PROXY_PY, [Buffer.from(bytes, 'latin1').toString('base64'), String(waitSec)])
  if (r.code !== 0) throw new Error(`raw proxy request failed: ${r.stderr}`)
  return r.stdout
}

/** Status codes of every HTTP response in a raw byte stream, in order. */
export function statuses(raw: string): number[] {
  return [...raw.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map(m => Number(m[1]))
}

// ───────────────────────────── audit log ─────────────────────────────

/** `podshell logs <name>` output. */
export async function logs(name: string): Promise<string> {
  const r = await cli(['logs', name, '-n', '5000'])
  if (r.code !== 0) throw new Error(`podshell logs ${name} failed: ${r.stderr}`)
  return r.stdout
}

/** Waits (up to 5 s) until `podshell logs <name>` has a line matching every pattern; returns that line. */
export async function expectLogged(name: string, ...patterns: RegExp[]): Promise<string> {
  const deadline = Date.now() + 5000
  for (;;) {
    const text = await logs(name)
    const line = text.split('\n').find(l => patterns.every(p => p.test(l)))
    if (line) return line
    if (Date.now() > deadline) throw new Error(`no line of \`podshell logs ${name}\` matches ${patterns.map(String).join(' and ')}; log was:\n${text.split('\n').slice(-30).join('\n')}`)
    await sleep(250)
  }
}

// ───────────────────────────── the gateway container ─────────────────────────────

/** Name of the gateway container serving the tests' data dir. */
export async function gatewayName(): Promise<string> {
  const { gatewayContainerName } = (await import('../../dist/gateway/lifecycle.js')) as { gatewayContainerName: (d: string, e?: Record<string, string | undefined>) => string }
  return gatewayContainerName(TEST_HOME, testEnv())
}

/**
 * Makes the gateway resolve `name` to `ip`, by adding a line to the gateway container's /etc/hosts
 * (the file lives in the user's container storage, so the test can play the DNS an attacker
 * controls). getaddrinfo reads /etc/hosts on every lookup, so this applies at once. Idempotent.
 */
export async function gatewayHosts(entries: [ip: string, name: string][]): Promise<void> {
  const gw = await gatewayName()
  const path = (await podman(['inspect', '--format', '{{.HostsPath}}', gw])).stdout.trim()
  if (!path || !existsSync(path)) throw new Error(`cannot find the hosts file of ${gw}`)
  const have = readFileSync(path, 'utf8')
  const add = entries.filter(([ip, n]) => !new RegExp(`^${ip.replace(/[.:]/g, '\\$&')}\\s+${n.replace(/\./g, '\\.')}$`, 'm').test(have))
  // Appended in place (same inode): the container sees the bind-mounted file change.
  if (add.length) appendFileSync(path, add.map(([ip, n]) => `${ip}\t${n}\n`).join(''))
}

export const GATEWAY_LOOPBACK_PORT = 17777
export const GATEWAY_LOOPBACK_BODY = 'GATEWAY-LOOPBACK-SERVICE-REACHED'

/**
 * A service listening on the gateway container's own loopback (127.0.0.1 and ::1), the way a
 * metadata agent or a local admin port would. A gateway that let a request reach loopback would
 * return its body; a correct one refuses before connecting. Idempotent.
 */
export async function gatewayLoopbackService(): Promise<void> {
  const gw = await gatewayName()
  const js = `const h=require('http');for(const a of ['127.0.0.1','::1'])h.createServer((q,s)=>s.end(${JSON.stringify(GATEWAY_LOOPBACK_BODY)})).on('error',()=>{}).listen(${GATEWAY_LOOPBACK_PORT},a)`
  await podman(['exec', '-d', gw, 'node', '-e', js])
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    const r = await podman(['exec', gw, 'node', '-e', `require('http').get('http://127.0.0.1:${GATEWAY_LOOPBACK_PORT}/',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))`])
    if (r.code === 0) return
    await sleep(100)
  }
  throw new Error('the gateway loopback test service did not come up')
}

// ───────────────────────────── upstream servers on this host ─────────────────────────────

/**
 * The test network's address: upstream test servers bind here, and the gateway (slirp4netns NAT)
 * reaches them here. The tests run inside the network namespace that scripts/test-netns.sh makes
 * (.ci/run enters it; developers use scripts/as-test-user.sh), whose only non-loopback address is in
 * 198.18.0.0/15. Any other address — this machine's LAN address above all — is refused: test
 * traffic never leaves this machine's own test namespace.
 */
export function hostAddress(): string {
  const want = process.env.PODSHELL_TEST_ADDR ?? '198.18.0.2'
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && a.address === want) return a.address
  }
  throw new Error(`the test network address ${want} is not on this host: run the e2e tests inside the test network namespace (as root: scripts/as-test-user.sh USER DIR -- npm run test:e2e)`)
}

export interface RecordedRequest {
  method: string
  url: string
  headers: Record<string, string | string[] | undefined>
  body: string
}

/**
 * An HTTP server on this host's address, recording every request it parses (a request the gateway
 * should never have forwarded shows up here) and every raw byte it receives.
 *   /ok            200 "upstream-ok"
 *   /big?mb=N      N MiB of data, streamed
 *   /echo          200 with the request body
 */
export class Upstream {
  readonly requests: RecordedRequest[] = []
  raw = ''
  connections = 0
  /** Body bytes of /big responses written so far (all requests). */
  bigBytes = 0
  /** /big responses that ended before their full length was sent (the client or a hop went away). */
  bigAborted = 0
  private constructor(
    private readonly server: Server,
    readonly host: string,
    readonly port: number,
  ) {}

  static async start(host = hostAddress()): Promise<Upstream> {
    const server = createServer({ keepAliveTimeout: 5000 })
    const up = await new Promise<Upstream>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, host, () => {
        const a = server.address()
        if (!a || typeof a === 'string') return reject(new Error('no address'))
        resolve(new Upstream(server, host, a.port))
      })
    })
    server.on('connection', (s: Socket) => {
      up.connections++
      s.on('data', (d: Buffer) => {
        if (up.raw.length < 1 << 20) up.raw += d.toString('latin1')
      })
    })
    server.on('request', (req: IncomingMessage, res: ServerResponse) => up.handle(req, res))
    return up
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => {
      if (chunks.reduce((n, b) => n + b.length, 0) < 1 << 20) chunks.push(c)
    })
    req.on('end', () => {
      this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('latin1') })
      const u = new URL(req.url ?? '/', 'http://x')
      if (u.pathname === '/big') {
        const mb = Number(u.searchParams.get('mb') ?? '1')
        const chunk = Buffer.alloc(64 * 1024, 'x')
        const total = mb * 16
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(mb * 1024 * 1024) })
        let sent = 0
        const pump = () => {
          while (sent < total) {
            sent++
            this.bigBytes += chunk.length
            if (!res.write(chunk)) {
              res.once('drain', pump)
              return
            }
          }
          res.end()
        }
        res.on('close', () => {
          if (!res.writableFinished) this.bigAborted++
          sent = total
        })
        pump()
        return
      }
      if (u.pathname === '/echo') {
        res.end(Buffer.concat(chunks))
        return
      }
      res.end('upstream-ok')
    })
  }

  url(path = '/ok'): string {
    return `http://${this.host}:${this.port}${path}`
  }

  /** Requests recorded whose URL contains `s`. */
  seen(s: string): RecordedRequest[] {
    return this.requests.filter(r => r.url.includes(s))
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise(resolve => this.server.close(() => resolve()))
  }
}

/** A non-HTTP TCP service (an SSH-style banner), counting the connections that reach it. */
export class BannerServer {
  connections = 0
  private constructor(
    private readonly server: TcpServer,
    readonly host: string,
    readonly port: number,
  ) {}

  static async start(host = hostAddress()): Promise<BannerServer> {
    const server = createTcpServer()
    const b = await new Promise<BannerServer>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, host, () => {
        const a = server.address()
        if (!a || typeof a === 'string') return reject(new Error('no address'))
        resolve(new BannerServer(server, host, a.port))
      })
    })
    server.on('connection', s => {
      b.connections++
      s.on('error', () => undefined)
      s.end('SSH-2.0-OpenSSH_podshell_test\r\n')
    })
    return b
  }

  close(): Promise<void> {
    return new Promise(resolve => this.server.close(() => resolve()))
  }
}

// ───────────────────────────── policies ─────────────────────────────

export interface EndpointSpec {
  host?: string
  port?: number
  ports?: number[]
  allowed_ips?: string[]
  protocol?: string
  enforcement?: string
  access?: string
}

/** An OpenShell v1 policy allowing exactly these endpoints (one network policy each), as a file. */
export function policyFile(endpoints: Record<string, EndpointSpec[]>, extra: Record<string, unknown> = {}): string {
  const doc: Record<string, unknown> = {
    version: 1,
    ...extra,
    network_policies: Object.fromEntries(Object.entries(endpoints).map(([k, eps]) => [k, { name: k, endpoints: eps }])),
  }
  return writePolicyText(stringify(doc))
}

export function writePolicyText(text: string): string {
  const dir = hostDir('policy')
  const p = join(dir, 'policy.yaml')
  writeFileSync(p, text)
  return p
}

// ───────────────────────────── figures for the security report ─────────────────────────────

/** Merges `value` under `key` into test-results/<file>.json (read by scripts/security-report.mjs). */
export function recordFigures(file: 'load' | 'faults', key: string, value: unknown): void {
  const dir = join(ROOT, 'test-results')
  mkdirSync(dir, { recursive: true })
  const p = join(dir, `${file}.json`)
  let cur: Record<string, unknown>
  try {
    cur = JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>
  } catch {
    cur = {}
  }
  cur[key] = value
  cur.updated_at = new Date().toISOString()
  writeFileSync(p, JSON.stringify(cur, null, 2) + '\n')
}

export function sleep(ms: number): Promise<void> {
  return new Promise(r => setTimeout(r, ms))
}
