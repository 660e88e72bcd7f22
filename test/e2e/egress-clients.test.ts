import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer, type Server } from 'node:http'
import { createReadStream, existsSync, statSync, writeFileSync } from 'node:fs'
import { join, normalize } from 'node:path'
import { execa } from 'execa'
import { cli, hostDir, uniqueName } from '../helpers/cli.js'
import { hostAddress, policyFile, logs } from '../helpers/attack.js'

/**
 * The allowed path works for the clients agents actually use, through the real bridge and gateway
 * with nothing but the environment podshell sets: curl, git over HTTP, node's fetch and python's
 * urllib. The server is on this host's own address (the gateway reaches it through its rootless
 * NAT; allowed_ips admits the private address). A host outside the policy is refused and logged.
 */
const H = hostAddress()
let server: Server
let port: number
let name: string
let repoRoot: string

beforeAll(async () => {
  // A bare repository served over git's "dumb" HTTP protocol (static files + info/refs).
  repoRoot = hostDir('gitsrv')
  const work = join(repoRoot, 'work')
  await execa('git', ['init', '-q', '-b', 'main', work])
  writeFileSync(join(work, 'hello.txt'), 'hello from the allowed host\n')
  await execa('git', ['-C', work, 'add', '.'])
  await execa('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'commit', '-q', '-m', 'init'])
  await execa('git', ['clone', '-q', '--bare', work, join(repoRoot, 'repo.git')])
  await execa('git', ['-C', join(repoRoot, 'repo.git'), 'update-server-info'])
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname === '/api') {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ ok: true, via: req.headers.via ?? null }))
      return
    }
    const p = normalize(join(repoRoot, decodeURIComponent(url.pathname)))
    if (!p.startsWith(repoRoot) || !existsSync(p) || !statSync(p).isFile()) {
      res.statusCode = 404
      res.end()
      return
    }
    createReadStream(p).pipe(res)
  })
  await new Promise<void>(r => server.listen(0, H, r))
  port = (server.address() as { port: number }).port
  const policy = policyFile({ api: [{ host: H, port, allowed_ips: [`${H}/32`] }] })
  name = uniqueName('clients')
  // Node >= 22.21 honours NODE_USE_ENV_PROXY; the image's Debian node is older, so the test's own
  // node binary is mounted read-only to exercise fetch as agents on current Node do.
  const r = await cli(['sandbox', 'create', '--name', name, '--policy', policy, '--mount', `${process.execPath}:/opt/node24/node:ro`, '--detach'])
  expect(r.code, r.stderr).toBe(0)
})

afterAll(async () => {
  await cli(['sandbox', 'delete', name])
  server?.close()
})

const inSandbox = (cmd: string[]) => cli(['sandbox', 'exec', '-n', name, '--', ...cmd])

describe('real clients through the gateway', () => {
  it('curl reaches the allowed host', async () => {
    const r = await inSandbox(['curl', '-sS', `http://${H}:${port}/api`])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout).ok).toBe(true)
  })

  it('git clones over HTTP from the allowed host', async () => {
    const r = await inSandbox(['sh', '-c', `cd /tmp && git clone -q http://${H}:${port}/repo.git r && cat r/hello.txt`])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('hello from the allowed host\n')
  })

  it("node's fetch (NODE_USE_ENV_PROXY=1) reaches the allowed host", async () => {
    const r = await inSandbox(['/opt/node24/node', '-e', `fetch('http://${H}:${port}/api').then(r => r.json()).then(j => console.log(j.ok))`])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.trim()).toBe('true')
  })

  it("python's urllib reaches the allowed host", async () => {
    const r = await inSandbox(['python3', '-c', `import urllib.request,json;print(json.load(urllib.request.urlopen('http://${H}:${port}/api'))['ok'])`])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.trim()).toBe('True')
  })

  it('the same clients are refused for a host outside the policy, and the refusals are logged', async () => {
    // 198.51.100.7 (TEST-NET-2): refused by policy before any connection is attempted.
    const curl = await inSandbox(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', 'http://198.51.100.7/'])
    expect(curl.stdout).toBe('403')
    const py = await inSandbox(['python3', '-c', "import urllib.request\ntry:\n  urllib.request.urlopen('http://198.51.100.7/')\nexcept Exception as e: print(getattr(e, 'code', e))"])
    expect(py.stdout.trim()).toBe('403')
    // Node's env-proxy support tunnels with CONNECT even for http:// URLs; the refused CONNECT
    // (403) makes fetch reject (undici reports "Request was cancelled").
    const nodeR = await inSandbox(['/opt/node24/node', '-e', "fetch('http://198.51.100.7/').then(r => console.log('status', r.status), e => console.log('rejected', String(e.cause?.message ?? e)))"])
    expect(nodeR.stdout).toMatch(/^rejected /)
    const git = await inSandbox(['sh', '-c', 'cd /tmp && git clone -q http://198.51.100.7/x.git x 2>&1; echo rc=$?'])
    expect(git.stdout).toMatch(/403/)
    const log = await logs(name)
    expect(log).toMatch(/DENIED.*198\.51\.100\.7/)
    expect(log).toMatch(/ALLOWED.*/)
  })
})
