/**
 * Gateway fairness (src/gateway/fairness.ts), in-process: a real Gateway with its worker mode on,
 * real clients on the sandboxes' unix sockets, a real upstream on 127.0.0.1. No podman.
 *
 * The worker thread runs the COMPILED worker (dist/bundle/sandbox-worker.js): run `npm run build`
 * first. A moved sandbox runs at nice 19: on a busy machine its requests are slow by design (waits
 * here are generous). Test hooks are data (a hosts map and permitted CIDRs) so they reach the worker.
 */
import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest'
import { createServer, request, Agent, type Server } from 'node:http'
import { type AddressInfo } from 'node:net'
import { mkdtempSync, rmSync, mkdirSync, existsSync, lstatSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Gateway } from '../../src/gateway/server.js'
import { PolicyStore } from '../../src/policy/store.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { sandboxSocket, sandboxPolicyDir, sandboxEgressDir, sandboxAuditDir, sandboxDir } from '../../src/config/paths.js'
import { readLogs } from '../../src/gateway/audit.js'

const WORKER = resolve(__dirname, '../../dist/bundle/sandbox-worker.js')

let data: string
let upstream: Server
let PORT: number
let gw: Gateway | undefined
const logs: string[] = []

function policy(port: number, extra = ''): string {
  return `version: 1
network_policies:
  api:
    endpoints:
      - host: api.test
        port: ${port}
        protocol: rest
        enforcement: enforce
        rules:
          - allow: { method: GET, path: "/ok/**" }
${extra}`
}

function setPolicy(name: string, yaml: string) {
  const { policy: p } = parsePolicyText(yaml, 'test')
  return new PolicyStore(sandboxPolicyDir(data, name)).add(p, 'test')
}

function makeSandbox(name: string) {
  for (const d of [sandboxDir(data, name), sandboxPolicyDir(data, name), sandboxEgressDir(data, name), sandboxAuditDir(data, name)]) mkdirSync(d, { recursive: true, mode: 0o700 })
  setPolicy(name, policy(PORT))
}

function get(name: string, path: string, agent: Agent | false = false): Promise<number> {
  return new Promise(res => {
    const r = request({ socketPath: sandboxSocket(data, name), path: `http://api.test:${PORT}${path}`, headers: { Host: `api.test:${PORT}` }, agent }, m => {
      m.resume()
      m.on('end', () => res(m.statusCode!))
    })
    r.on('error', () => res(0))
    r.end()
  })
}

async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const t = Date.now()
  while (!cond()) {
    if (Date.now() - t > ms) throw new Error('timed out waiting')
    await new Promise(r => setTimeout(r, 20))
  }
}

/** The audit lines of a sandbox that mention `needle` (the main thread's AuditLog writes them). */
function audited(name: string, needle: string): number {
  return readLogs(data, name, { lines: 100000 }).filter(e => e.message.includes(needle)).length
}

async function start(fairness: { strikes?: number; calmMs?: number } = {}): Promise<Gateway> {
  const g = new Gateway({
    dataDir: data,
    rescanIntervalMs: 0,
    testHooks: { hosts: { 'api.test': ['127.0.0.1'] }, permitCidrs: ['127.0.0.1/32'] },
    fairness: { workers: true, checkMs: 30, strikes: fairness.strikes ?? 3, calmMs: fairness.calmMs ?? 600_000, workerScript: WORKER },
    log: l => logs.push(l),
  })
  await g.start()
  return g
}

beforeAll(async () => {
  if (!existsSync(WORKER)) throw new Error(`${WORKER} is missing: run npm run build first`)
  upstream = createServer((req, res) => {
    // /ok/slow/…: the upstream takes 30 ms (a flood's requests then wait in A's admission queue).
    const slow = req.url?.includes('/slow/')
    req.resume()
    setTimeout(() => res.end('ok'), slow ? 30 : 0)
  })
  await new Promise<void>(r => upstream.listen(0, '127.0.0.1', r))
  PORT = (upstream.address() as AddressInfo).port
})

afterAll(async () => {
  await new Promise<void>(r => upstream.close(() => r()))
})

beforeEach(() => {
  data = mkdtempSync(join(tmpdir(), 'podshell-fair-'))
  logs.length = 0
  makeSandbox('a')
  makeSandbox('b')
})

afterEach(async ctx => {
  if (ctx.task.result?.state === "fail") console.log(logs.join("\n"))
  await gw?.stop()
  gw = undefined
  rmSync(data, { recursive: true, force: true })
})

describe('gateway fairness: a flooding sandbox moves to a low-priority worker', () => {
  it('moves A when it keeps a queue while B is active; A still gets policy decisions and audit records; B unaffected', async () => {
    gw = await start()
    const ino = lstatSync(sandboxSocket(data, 'a')).ino
    let stop = false
    const agents = Array.from({ length: 48 }, () => new Agent({ keepAlive: true, maxSockets: 1 }))
    const flood = agents.map(async ag => {
      while (!stop) await get('a', '/ok/slow/x', ag)
    })
    // B is active (a request at least every 100 ms) while A floods.
    const bStatuses: number[] = []
    await until(() => {
      void get('b', '/ok/b').then(s => bStatuses.push(s))
      return gw!.workerOf('a') !== undefined
    }, 15_000)
    expect(gw.workerOf('b')).toBeUndefined()
    expect(logs.join('\n')).toMatch(/sandbox a: over its share while another sandbox is active \(\d+ queued\): moved to worker thread \d+ at nice 19/)
    // The socket file is the worker's now (renamed over), at the same path.
    expect(lstatSync(sandboxSocket(data, 'a')).ino).not.toBe(ino)
    expect(lstatSync(sandboxSocket(data, 'a')).mode & 0o777).toBe(0o600)
    stop = true
    await Promise.all(flood)
    for (const ag of agents) ag.destroy()
    // A, served by the worker: allowed and denied as its policy says, and both audited (forwarded
    // to A's one AuditLog on the main thread).
    expect(await get('a', '/ok/after-move')).toBe(200)
    expect(await get('a', '/denied/after-move')).toBe(403)
    await until(() => audited('a', '/denied/after-move') > 0 && audited('a', '/ok/after-move') > 0, 20_000)
    expect(readLogs(data, 'a', { lines: 100000 }).find(e => e.message.includes('/denied/after-move'))!.message).toMatch(/DENIED/)
    // B: every request answered and allowed.
    expect(bStatuses.length).toBeGreaterThan(0)
    expect(bStatuses.every(s => s === 200)).toBe(true)
    expect(await get('b', '/ok/b-after')).toBe(200)
    // stats count A's worker's requests too
    await until(() => (gw!.stats().sandboxes.find(s => s.name === 'a')?.denied ?? 0) >= 1, 20_000)
  })

  it('a moved sandbox follows policy reloads and credential messages; its audit has one writer', async () => {
    gw = await start()
    expect(await get('a', '/ok/1')).toBe(200)
    expect(await gw.moveToWorker('a')).toBe(true)
    expect(await get('a', '/ok/2')).toBe(200)
    // A new revision that denies /ok/3/**: the worker decides with it as soon as reload returns.
    setPolicy('a', policy(PORT).replace('path: "/ok/**"', 'path: "/ok/2/**"'))
    const r = await gw.handleControl(JSON.stringify({ op: 'reload', sandbox: 'a' }))
    expect(r).toMatchObject({ ok: true, status: 'LOADED', version: 2 })
    expect(await get('a', '/ok/3')).toBe(403)
    expect(await get('a', '/ok/2/x')).toBe(200)
    // The policy load is recorded once (by the main thread), not once per thread.
    await until(() => audited('a', '/ok/3') > 0, 20_000)
    const loads = readLogs(data, 'a', { lines: 100000 }).filter(e => /CONFIG:LOADED .*\[version:2 /.test(e.message))
    expect(loads.length).toBe(1)
    const c = await gw.handleControl(JSON.stringify({ op: 'credentials', sandbox: 'a', credentials: [] }))
    expect(c).toMatchObject({ ok: true, held: 0 })
  })

  it('a worker that crashes is taken back by the main loop with the policy in force', async () => {
    gw = await start()
    expect(await gw.moveToWorker('a')).toBe(true)
    const w = gw.workerOf('a')!
    await w.terminate()
    await until(() => gw!.workerOf('a') === undefined, 20_000)
    await until(() => logs.some(l => /sandbox a: worker thread \d+ exited \(code \d+\); served on the main loop again with policy revision 1/.test(l)), 20_000)
    // Served again, and with the policy (not open, not deny-all).
    await until(() => existsSync(sandboxSocket(data, 'a')), 20_000)
    expect(await get('a', '/ok/after-crash')).toBe(200)
    expect(await get('a', '/denied/after-crash')).toBe(403)
    expect(await get('b', '/ok/b')).toBe(200)
  })

  it('remove while moved: the worker ends and the socket is gone', async () => {
    gw = await start()
    expect(await gw.moveToWorker('a')).toBe(true)
    const w = gw.workerOf('a')!
    const r = await gw.handleControl(JSON.stringify({ op: 'remove', sandbox: 'a' }))
    expect(r).toMatchObject({ ok: true, removed: true })
    expect(await w.exited).toBeTypeOf('number')
    expect(existsSync(sandboxSocket(data, 'a'))).toBe(false)
    expect(await get('a', '/ok/x')).toBe(0)
    expect(logs.some(l => /exited .*served on the main loop again/.test(l))).toBe(false)
    expect(await get('b', '/ok/b')).toBe(200)
  })

  it('a calm sandbox moves back to the main loop and its worker ends', async () => {
    gw = await start({ calmMs: 300 })
    expect(await gw.moveToWorker('a')).toBe(true)
    const w = gw.workerOf('a')!
    await until(() => gw!.workerOf('a') === undefined, 20_000)
    expect(await w.exited).toBe(0)
    expect(logs.some(l => /sandbox a: calm again: served on the main loop again/.test(l))).toBe(true)
    expect(await get('a', '/ok/back')).toBe(200)
    expect(await get('a', '/denied/back')).toBe(403)
    await until(() => audited('a', '/denied/back') > 0, 20_000)
  })
})
