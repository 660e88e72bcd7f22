import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { cli, TEST_HOME } from '../helpers/cli.js'
import { createSandbox, deleteSandboxes, Upstream, hostAddress, policyFile, recordFigures, sleep } from '../helpers/attack.js'

/**
 * Load: N sandboxes at once (default 20), each looping allowed and denied requests through the one
 * gateway for a fixed time (default 60 s), against an upstream on this host only. Every request is
 * checked: an allowed request that fails, or a denied request that is not refused by policy, is
 * counted and must be zero. The gateway's memory is sampled over its control socket throughout.
 *
 * PODSHELL_LOAD_SANDBOXES / PODSHELL_LOAD_SECONDS change the size (the figures in
 * docs/security-report.md come from the defaults).
 */

declare module 'vitest' {
  interface TaskMeta {
    observed?: string
  }
}

const N = Number(process.env.PODSHELL_LOAD_SANDBOXES ?? 20)
const SECONDS = Number(process.env.PODSHELL_LOAD_SECONDS ?? 60)
const H = hostAddress()
let up: Upstream
const names: string[] = []

/**
 * The loop each sandbox runs: four kinds of request in turn, each on a new connection —
 * allowed plain GET, allowed CONNECT tunnel, denied plain GET, denied CONNECT — and a JSON
 * summary at the end. "Refused by policy" means exactly a 403 from the gateway.
 */
const LOOP = `
import http.client, json, sys, time
host, port, dur = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deny_host, deny_port = '198.51.100.77', 80
c = dict(allowed_ok=0, allowed_fail=0, denied_refused=0, denied_not_refused=0, errors=[])
lat = []
def note(e):
    if len(c['errors']) < 5: c['errors'].append(str(e)[:160])
def allowed_get():
    p = http.client.HTTPConnection('127.0.0.1', 3128, timeout=15)
    p.request('GET', 'http://%s:%d/ok' % (host, port), headers={'Host': '%s:%d' % (host, port)})
    r = p.getresponse(); body = r.read(); p.close()
    return r.status == 200 and body == b'upstream-ok'
def allowed_connect():
    p = http.client.HTTPConnection('127.0.0.1', 3128, timeout=15)
    p.set_tunnel(host, port)
    p.request('GET', '/ok')
    r = p.getresponse(); body = r.read(); p.close()
    return r.status == 200 and body == b'upstream-ok'
def denied_get():
    p = http.client.HTTPConnection('127.0.0.1', 3128, timeout=15)
    p.request('GET', 'http://%s:%d/x' % (deny_host, deny_port), headers={'Host': deny_host})
    r = p.getresponse(); r.read(); p.close()
    return r.status == 403
def denied_connect():
    p = http.client.HTTPConnection('127.0.0.1', 3128, timeout=15)
    p.set_tunnel(deny_host, 443)
    try:
        p.connect()
    except OSError as e:
        p.close()
        return '403' in str(e)
    p.close()
    return False
end = time.time() + dur
while time.time() < end:
    for kind, fn in (('allowed', allowed_get), ('allowed', allowed_connect), ('denied', denied_get), ('denied', denied_connect)):
        t = time.time()
        try:
            ok = fn()
        except Exception as e:
            ok = False
            note('%s %s: %s' % (kind, fn.__name__, e))
        lat.append(time.time() - t)
        if kind == 'allowed':
            c['allowed_ok' if ok else 'allowed_fail'] += 1
        else:
            c['denied_refused' if ok else 'denied_not_refused'] += 1
lat.sort()
c['p50_ms'] = round(lat[len(lat) // 2] * 1000, 1) if lat else None
c['p99_ms'] = round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None
print(json.dumps(c))
`

interface Counts {
  allowed_ok: number
  allowed_fail: number
  denied_refused: number
  denied_not_refused: number
  errors: string[]
  p50_ms: number | null
  p99_ms: number | null
}

let lastHeap = 0
let peakHeap = 0
/** The gateway's RSS from its control socket (its heap in use is kept in lastHeap/peakHeap). */
async function gatewayRss(): Promise<number | undefined> {
  const { GatewayClient } = await import('../../dist/gateway/client.js')
  try {
    const m = (await new GatewayClient(TEST_HOME, { timeoutMs: 3000 }).stats()).memory
    lastHeap = m.heapUsed
    peakHeap = Math.max(peakHeap, m.heapUsed)
    return m.rss
  } catch {
    return undefined
  }
}

/** The gateway's own account of allowed requests it could not complete (its audit's 502 records), for failure messages. */
function upstreamFailures(): string[] {
  const out: string[] = []
  for (const n of names) {
    const f = join(TEST_HOME, 'gateway', 'sandboxes', n, 'audit', 'ocsf.jsonl')
    if (!existsSync(f)) continue
    for (const line of readFileSync(f, 'utf8').split('\n')) if (/upstream (unreachable|error)|cannot connect/.test(line) && out.length < 5) out.push(line.slice(0, 600))
  }
  return out
}

beforeAll(async () => {
  up = await Upstream.start()
  const policy = policyFile({ up: [{ host: H, port: up.port }] })
  // Created four at a time (2 cores).
  for (let i = 0; i < N; i += 4) {
    const batch = await Promise.all(Array.from({ length: Math.min(4, N - i) }, () => createSandbox('load', { policy })))
    names.push(...batch)
  }
}, 600_000)

afterAll(async () => {
  await deleteSandboxes(names)
  await up?.close()
}, 300_000)

describe('load', () => {
  it(`${N} sandboxes loop allowed and denied requests (plain and CONNECT) through one gateway for ${SECONDS} s → zero allowed requests fail, zero denied requests get through, gateway memory stays bounded`, async ({ task }) => {
    const baseline = await gatewayRss()
    expect(baseline, 'gateway stats over the control socket').toBeDefined()
    const baselineHeap = lastHeap
    let peak = baseline!
    const samples: number[] = [baseline!]
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        const rss = await gatewayRss()
        if (rss !== undefined) {
          samples.push(rss)
          peak = Math.max(peak, rss)
        }
        await sleep(2000)
      }
    })()
    const t0 = Date.now()
    const runs = await Promise.all(
      names.map(n => cli(['sandbox', 'exec', '-n', n, '--', 'python3', '-c', LOOP, H, String(up.port), String(SECONDS)], { timeoutMs: (SECONDS + 120) * 1000 })),
    )
    const wallS = (Date.now() - t0) / 1000
    sampling = false
    await sampler
    // Idle for a while so the gateway's V8 can collect what the load left behind.
    await sleep(10_000)
    const after = await gatewayRss()
    const afterHeap = lastHeap

    const per: Counts[] = runs.map((r, i) => {
      try {
        return JSON.parse(r.stdout.trim().split('\n').pop()!) as Counts
      } catch {
        throw new Error(`load loop in ${names[i]} printed no summary (exit ${r.code}): ${r.stderr}`)
      }
    })
    const sum = (k: keyof Counts) => per.reduce((n, c) => n + (c[k] as number), 0)
    const total = { allowed_ok: sum('allowed_ok'), allowed_fail: sum('allowed_fail'), denied_refused: sum('denied_refused'), denied_not_refused: sum('denied_not_refused') }
    const requests = total.allowed_ok + total.allowed_fail + total.denied_refused + total.denied_not_refused
    const mib = (b: number) => Math.round((b / 1048576) * 10) / 10
    const figures = {
      sandboxes: N,
      seconds: SECONDS,
      wall_seconds: Math.round(wallS),
      requests,
      requests_per_second: Math.round(requests / SECONDS),
      ...total,
      p50_ms_median_of_sandboxes: per.map(c => c.p50_ms ?? 0).sort((a, b) => a - b)[Math.floor(per.length / 2)],
      p99_ms_worst_sandbox: Math.max(...per.map(c => c.p99_ms ?? 0)),
      gateway_rss_mib: { baseline: mib(baseline!), peak: mib(peak), after: after !== undefined ? mib(after) : null, samples: samples.length },
      gateway_heap_used_mib: { baseline: mib(baselineHeap), peak: mib(peakHeap), after_10s_idle: mib(afterHeap) },
      errors: per.flatMap(c => c.errors).slice(0, 10),
    }
    recordFigures('load', 'gateway', figures)
    task.meta.observed = `${requests} requests (${figures.requests_per_second}/s) from ${N} sandboxes: ${total.allowed_ok} allowed ok, ${total.allowed_fail} allowed failed, ${total.denied_refused} denied refused, ${total.denied_not_refused} denied not refused; gateway RSS ${figures.gateway_rss_mib.baseline} → peak ${figures.gateway_rss_mib.peak} → ${figures.gateway_rss_mib.after} MiB, heap ${figures.gateway_heap_used_mib.baseline} → peak ${figures.gateway_heap_used_mib.peak} → ${figures.gateway_heap_used_mib.after_10s_idle} MiB`

    expect(total.allowed_fail, `${JSON.stringify(figures.errors)}; the gateway's reasons: ${JSON.stringify(upstreamFailures())}`).toBe(0)
    expect(total.denied_not_refused, JSON.stringify(figures.errors)).toBe(0)
    expect(total.allowed_ok).toBeGreaterThan(N * 10)
    expect(total.denied_refused).toBeGreaterThan(N * 10)
    // Bounded: the gateway's memory does not grow with the number of requests served.
    expect(peak).toBeLessThan(baseline! + 256 * 1048576)
  }, (SECONDS + 240) * 1000)
})
