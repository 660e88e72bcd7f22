import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtempSync, rmSync, readFileSync, readdirSync, existsSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  AuditLog,
  appendLifecycle,
  appendRetained,
  readLogs,
  formatLogEntry,
  parseShorthandLine,
  redact,
  renderNetwork,
  renderHttp,
  renderConfig,
  followLogs,
  OCSF_FILE,
  SHORTHAND_FILE,
} from '../../src/gateway/audit.js'
import { sandboxAuditDir } from '../../src/config/paths.js'

let data: string
beforeEach(() => {
  data = mkdtempSync(join(tmpdir(), 'podshell-audit-'))
})
afterEach(() => {
  rmSync(data, { recursive: true, force: true })
})

const T = Date.UTC(2026, 0, 2, 3, 4, 5, 678)

describe('OCSF events and OpenShell shorthand', () => {
  it('allowed CONNECT: Network Activity 4001 Open, OpenShell shorthand', () => {
    const r = renderNetwork('demo', { activity: 'open', action: 'allowed', mode: 'allow', host: 'api.github.com', port: 443, ip: '140.82.112.6', policy: 'github_api', rule: 'endpoints[0]', reason: 'allowed by policy github_api' }, T)
    expect(r.shorthand).toBe('NET:OPEN [INFO] ALLOWED -> api.github.com:443 [policy:github_api engine:podshell]')
    expect(r.json).toMatchObject({
      class_uid: 4001, class_name: 'Network Activity', category_uid: 4, activity_id: 1, activity_name: 'Open', type_uid: 400101,
      time: T, severity_id: 1, severity: 'Informational', action_id: 1, action: 'Allowed', disposition_id: 1, disposition: 'Allowed',
      status_id: 1, status: 'Success',
      dst_endpoint: { domain: 'api.github.com', ip: '140.82.112.6', port: 443 },
      firewall_rule: { name: 'github_api', type: 'podshell' },
      metadata: { version: '1.8.0', uid: 'demo', product: { vendor_name: 'podshell' } },
    })
  })
  it('denied CONNECT carries the reason, medium severity, Blocked disposition', () => {
    const r = renderNetwork('demo', { activity: 'open', action: 'denied', host: 'evil.com', port: 443, policy: null, reason: 'endpoint evil.com:443 is not allowed by any policy' }, T)
    expect(r.shorthand).toBe('NET:OPEN [MED] DENIED -> evil.com:443 [policy:- engine:podshell] [reason:endpoint evil.com:443 is not allowed by any policy]')
    expect(r.json).toMatchObject({ severity_id: 3, action: 'Denied', disposition: 'Blocked', status: 'Failure', status_detail: 'endpoint evil.com:443 is not allowed by any policy' })
  })
  it('audit-mode allows are visible as such', () => {
    const r = renderNetwork('demo', { activity: 'open', action: 'allowed', mode: 'audit', host: 'a.com', port: 443, policy: 'p', reason: 'would bypass L7; allowed because enforcement is audit' }, T)
    expect(r.shorthand).toMatch(/^NET:OPEN \[LOW\] ALLOWED -> a.com:443 \[policy:p engine:podshell\] \[reason:.*audit\]$/)
    expect((r.json.unmapped as Record<string, unknown>).mode).toBe('audit')
  })
  it('HTTP Activity 4002 with the method as activity', () => {
    const r = renderHttp('demo', { method: 'POST', host: 'api.x.com', port: 80, path: '/v1/items', action: 'denied', policy: 'api', reason: 'POST /v1/items not permitted by policy', status: 403 }, T)
    expect(r.json).toMatchObject({ class_uid: 4002, activity_id: 6, activity_name: 'Post', type_uid: 400206, http_request: { http_method: 'POST', url: { scheme: 'http', hostname: 'api.x.com', path: '/v1/items', port: 80 } }, http_response: { code: 403 } })
    expect(r.shorthand).toBe('HTTP:POST [MED] DENIED POST http://api.x.com/v1/items [policy:api engine:podshell] [reason:POST /v1/items not permitted by policy]')
  })
  it('config state change 5019 for loads and failures', () => {
    expect(renderConfig('demo', { state: 'loaded', version: 3, hash: 'abc' }, T).shorthand).toBe('CONFIG:LOADED [INFO] policy revision 3 loaded [version:3 hash:abc]')
    const f = renderConfig('demo', { state: 'failed', version: 4, error: 'network_policies.x.endpoints[0].port: must be between 1 and 65535' }, T)
    expect(f.json).toMatchObject({ class_uid: 5019, state: 'Failed', status: 'Failure', unmapped: { policy_version: '4' } })
    expect(f.shorthand).toMatch(/^CONFIG:FAILED \[MED\] policy revision 4 failed to load \[version:4\] \[reason:network_policies/)
  })
})

describe('redaction: query strings, Authorization, Proxy-Authorization and Cookie never reach a log', () => {
  const secrets = ['s3cr3t-query-token', 'Zm9vOmJhcg==', 'ghp_abcdefghijklmnopqrstuvwx', 'session=deadbeefcafe']
  it('paths lose their query and fragment', () => {
    const log = AuditLog.forSandbox(data, 'demo', { now: () => T })
    log.http({ method: 'GET', host: 'a.com', port: 80, path: '/x?token=s3cr3t-query-token#frag', action: 'allowed', policy: 'p', rule: 'GET /x?token=s3cr3t-query-token' })
    log.http({ method: 'GET', host: 'a.com', port: 80, path: '/y', action: 'denied', policy: 'p', reason: 'GET http://a.com/y?token=s3cr3t-query-token denied; Authorization: Basic Zm9vOmJhcg== Proxy-Authorization: Bearer ghp_abcdefghijklmnopqrstuvwx Cookie: session=deadbeefcafe' })
    log.network({ activity: 'open', action: 'denied', host: 'a.com', port: 443, policy: null, reason: 'Authorization: token ghp_abcdefghijklmnopqrstuvwx' })
    const dir = sandboxAuditDir(data, 'demo')
    const all = readFileSync(join(dir, OCSF_FILE), 'utf8') + readFileSync(join(dir, SHORTHAND_FILE), 'utf8')
    for (const s of secrets) expect(all).not.toContain(s)
    expect(all).toContain('/x')
    expect(all).toContain('[REDACTED]')
  })
  it('lifecycle details drop values under secret-looking keys', () => {
    appendLifecycle(data, 'demo', { event: 'created', image: 'img', token: 's3cr3t-query-token', nested: { authorization: 'Basic Zm9vOmJhcg==' } })
    const all = readFileSync(join(sandboxAuditDir(data, 'demo'), OCSF_FILE), 'utf8')
    for (const s of secrets) expect(all).not.toContain(s)
    expect(all).toContain('"image":"img"')
  })
  it('redact() on its own', () => {
    expect(redact('GET /a?b=c')).toBe('GET /a')
    expect(redact('see https://x.com/p?q=1#f now')).toBe('see https://x.com/p now')
    expect(redact('Cookie: a=b; c=d')).not.toContain('a=b')
    expect(redact('line1\r\nline2')).toBe('line1 line2')
  })
})

describe('files: location, permissions, rotation', () => {
  it('writes both files under gateway/sandboxes/<name>/audit (the gateway view) with mode 0600', () => {
    appendLifecycle(data, 'demo', { event: 'started' })
    const dir = sandboxAuditDir(data, 'demo')
    expect(readdirSync(dir).sort()).toEqual([OCSF_FILE, SHORTHAND_FILE].sort())
    expect(statSync(join(dir, OCSF_FILE)).mode & 0o777).toBe(0o600)
    const line = readFileSync(join(dir, SHORTHAND_FILE), 'utf8')
    expect(line).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z OCSF LIFECYCLE:START \[INFO\] sandbox demo success \[event:started\]\n$/)
  })
  it('rotates at maxBytes and keeps 3 generations', () => {
    const log = AuditLog.forSandbox(data, 'demo', { maxBytes: 2000, keep: 3 })
    for (let i = 0; i < 200; i++) log.network({ activity: 'open', action: 'allowed', host: `h${i}.example.com`, port: 443, policy: 'p' })
    const dir = sandboxAuditDir(data, 'demo')
    const files = readdirSync(dir).sort()
    expect(files).toEqual([OCSF_FILE, `${OCSF_FILE}.1`, `${OCSF_FILE}.2`, `${OCSF_FILE}.3`, SHORTHAND_FILE, `${SHORTHAND_FILE}.1`, `${SHORTHAND_FILE}.2`, `${SHORTHAND_FILE}.3`].sort())
    for (const f of files) expect(statSync(join(dir, f)).size).toBeLessThanOrEqual(2000)
    // the newest line is in the live file
    expect(readFileSync(join(dir, SHORTHAND_FILE), 'utf8')).toContain('h199.example.com')
  })
  it('a write that cannot happen (dir replaced by a file) is counted, not thrown', () => {
    writeFileSync(join(data, 'blocker'), '')
    const bad = new AuditLog(join(data, 'blocker', 'audit'), 'x')
    expect(() => bad.network({ activity: 'open', action: 'allowed', host: 'a', port: 1, policy: null })).not.toThrow()
    expect(bad.dropped).toBe(1)
  })
})

describe('reading logs for the CLI', () => {
  it('returns the last N entries oldest first, with sources and levels', () => {
    let t = T
    const log = AuditLog.forSandbox(data, 'demo', { now: () => (t += 1000) })
    appendLifecycle(data, 'demo', { event: 'created' }, { now: () => T })
    log.network({ activity: 'open', action: 'allowed', host: 'a.com', port: 443, policy: 'p' })
    log.network({ activity: 'open', action: 'denied', host: 'b.com', port: 443, policy: null, reason: 'nope' })
    const all = readLogs(data, 'demo', { lines: 10 })
    expect(all.map(e => [e.source, e.level])).toEqual([['sandbox', 'INFO'], ['gateway', 'INFO'], ['gateway', 'WARN']])
    expect(readLogs(data, 'demo', { lines: 1 })[0]!.message).toMatch(/DENIED -> b.com:443/)
    expect(readLogs(data, 'demo', { source: 'sandbox' })).toHaveLength(1)
    expect(readLogs(data, 'demo', { source: ['gateway'] })).toHaveLength(2)
    expect(readLogs(data, 'demo', { level: 'WARN' })).toHaveLength(1)
    expect(readLogs(data, 'demo', { since: T + 1500 })).toHaveLength(1)
  })
  it('reads across rotated files', () => {
    const log = AuditLog.forSandbox(data, 'demo', { maxBytes: 1500 })
    for (let i = 0; i < 30; i++) log.network({ activity: 'open', action: 'allowed', host: `h${i}.com`, port: 443, policy: 'p' })
    const got = readLogs(data, 'demo', { lines: 25 })
    expect(got).toHaveLength(25)
    expect(got[24]!.message).toContain('h29.com')
    expect(got[0]!.message).toContain('h5.com')
  })
  it('a sandbox without logs gives an empty list', () => {
    expect(readLogs(data, 'nothing')).toEqual([])
  })
  it('formats lines like openshell logs', () => {
    const e = parseShorthandLine('2026-01-02T03:04:05.678Z OCSF NET:OPEN [MED] DENIED -> b.com:443 [policy:- engine:podshell]')!
    expect(formatLogEntry(e)).toBe(`[${Math.floor(T / 1000)}.678] [gateway] [WARN ] [ocsf] NET:OPEN [MED] DENIED -> b.com:443 [policy:- engine:podshell]`)
  })
  it('follows new lines (tail)', async () => {
    const got: string[] = []
    const ac = new AbortController()
    const p = followLogs(data, 'demo', {}, e => got.push(e.message), ac.signal, 20)
    await new Promise(r => setTimeout(r, 50))
    appendLifecycle(data, 'demo', { event: 'started' })
    for (let i = 0; i < 50 && got.length === 0; i++) await new Promise(r => setTimeout(r, 20))
    ac.abort()
    await p
    expect(got).toHaveLength(1)
    expect(got[0]).toMatch(/LIFECYCLE:START/)
    expect(existsSync(join(sandboxAuditDir(data, 'demo'), SHORTHAND_FILE))).toBe(true)
  })
})

describe('audit an agent cannot erase (issue 9 finding 5)', () => {
  const dir = () => sandboxAuditDir(data, 'demo')
  const read = (f: string) => (existsSync(join(dir(), f)) ? readFileSync(join(dir(), f), 'utf8') : '')
  const allText = () => readdirSync(dir()).filter(f => f.startsWith(SHORTHAND_FILE)).map(read).join('')

  it('a flood of denials is aggregated per destination and second, not logged line by line', () => {
    let now = T
    const log = AuditLog.forSandbox(data, 'demo', { now: () => now })
    for (let i = 0; i < 1500; i++) {
      now = T + Math.floor(i / 750) * 1000 // two seconds of 750 denials each
      log.http({ method: 'GET', host: 'flood.example', port: 80, path: `/x${i % 3}?secret=1`, action: 'denied', policy: null, reason: 'not permitted', status: 403 })
    }
    log.flush()
    const text = read(SHORTHAND_FILE)
    const lines = text.trim().split('\n')
    // 5 lines per second written as they are (the first retained too), the rest summarised
    expect(lines.filter(l => /HTTP:GET .*DENIED GET http:\/\/flood\.example\/x/.test(l)).length).toBe(10)
    const aggr = lines.filter(l => l.includes('NET:AGGREGATE'))
    expect(aggr).toHaveLength(2)
    expect(aggr[0]).toMatch(/NET:AGGREGATE \[MED\] DENIED x745 -> flood\.example:80 /)
    expect(aggr[1]).toMatch(/DENIED x745 /)
    const json = read(OCSF_FILE).trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
    const summary = json.find(j => j.count === 745)!
    expect(summary).toMatchObject({ class_uid: 4001, activity_name: 'Other', action: 'Denied', dst_endpoint: { domain: 'flood.example', port: 80 } })
    const samples = (summary.unmapped as { l7_samples: { method: string; path: string; count: number }[] }).l7_samples
    expect(samples.map(s => s.path).sort()).toEqual(['/x0', '/x1', '/x2']) // no query string
    expect(samples.reduce((n, s) => n + s.count, 0)).toBe(745)
    expect(text).not.toContain('secret=1')
    expect(parseShorthandLine(`2026-01-01T00:00:00.000Z OCSF ${aggr[0]!.split(' OCSF ')[1]}`)?.level).toBe('WARN')
  })

  it("the first denial per destination (the probe) is retained: no flood of later records rotates it away", () => {
    let now = T
    const log = AuditLog.forSandbox(data, 'demo', { now: () => now, maxBytes: 4000, keep: 1 })
    log.network({ activity: 'open', action: 'denied', host: 'probe.attacker.example', port: 443, policy: null, reason: 'not allowed' })
    log.config({ state: 'loaded', version: 2, hash: 'abc' })
    for (let i = 0; i < 3000; i++) {
      now = T + i * 10 // 100 per second, many distinct destinations
      log.network({ activity: 'open', action: 'denied', host: `n${i % 40}.flood.example`, port: 443, policy: null })
      log.network({ activity: 'open', action: 'allowed', host: 'ok.example', port: 443, policy: 'p' })
    }
    log.flush()
    expect(allText()).not.toContain('probe.attacker.example') // rotated away from the rolling log…
    const retained = read('retained.log')
    expect(retained).toMatch(/NET:OPEN \[MED\] DENIED -> probe\.attacker\.example:443/) // …kept here
    expect(retained).toMatch(/CONFIG:LOADED .*version:2/)
    expect(read('retained.jsonl')).toContain('"retained":"first denial for this destination"')
    // and the rolling files stay within their bound
    for (const f of readdirSync(dir())) if (f.startsWith(SHORTHAND_FILE) || f.startsWith(OCSF_FILE)) expect(statSync(join(dir(), f)).size).toBeLessThanOrEqual(4000)
  })

  it('total size is bounded: the retained files stop at their cap with one marker, and drops are counted', () => {
    let now = T
    const log = AuditLog.forSandbox(data, 'demo', { now: () => now, maxBytes: 20_000, keep: 1, retainedMaxBytes: 8_000, maxAggregationKeys: 10 })
    for (let i = 0; i < 2000; i++) {
      now = T + i // 1000 distinct destinations per second
      log.network({ activity: 'open', action: 'denied', host: `x${i}.exfil.example`, port: 443, policy: null })
    }
    log.flush()
    expect(statSync(join(dir(), 'retained.log')).size).toBeLessThanOrEqual(8_000)
    expect(statSync(join(dir(), 'retained.jsonl')).size).toBeLessThanOrEqual(8_000)
    expect(read('retained.log')).toMatch(/AUDIT:DROPPED \[HIGH\] 0 records dropped \[reason:retained_audit_log_full/)
    // the oldest evidence is what stays
    expect(read('retained.log')).toContain('x0.exfil.example')
    expect(allText()).toMatch(/AUDIT:DROPPED \[HIGH\] \d+ records dropped \[reason:retained_audit_log_full/)
    const total = readdirSync(dir()).reduce((n, f) => n + statSync(join(dir(), f)).size, 0)
    expect(total).toBeLessThanOrEqual(2 * 2 * 20_000 + 2 * 8_000)
    expect(log.dropped).toBeGreaterThan(0)
  })

  it('denials to more destinations per second than the aggregation keeps are reported as dropped', () => {
    let now = T
    const log = AuditLog.forSandbox(data, 'demo', { now: () => now, maxAggregationKeys: 2, denialLinesPerSecond: 1, denialLinesPerDestination: 1 })
    for (const h of ['a', 'b']) log.network({ activity: 'open', action: 'denied', host: `${h}.example`, port: 1, policy: null }) // first denials
    for (const h of ['a', 'b', 'c', 'd']) for (let i = 0; i < 3; i++) log.network({ activity: 'open', action: 'denied', host: `${h}.example`, port: 1, policy: null })
    now += 1000
    log.flush()
    const text = read(SHORTHAND_FILE)
    // a: one line; b: retained only (budget spent), then summarised with a; c and d (3 each) find
    // no aggregation slot: 6 dropped from the rolling log — their first denials are still retained.
    expect(text).toMatch(/AUDIT:DROPPED \[HIGH\] 6 records dropped \[reason:denials_to_more_than_2_destinations_in_one_second\]/)
    expect(text).toMatch(/NET:AGGREGATE \[MED\] DENIED x4 -> b\.example:1/)
    const retained = read('retained.log')
    for (const h of ['a', 'b', 'c', 'd']) expect(retained).toContain(`DENIED -> ${h}.example:1`)
  })

  it('appendRetained (for other modules: quarantines, credential mismatches) writes to the retained files', () => {
    appendRetained(data, 'demo', { event: 'quarantined', path: '/work/.git/hooks/pre-commit' })
    expect(read('retained.log')).toMatch(/LIFECYCLE:OTHER .*event:quarantined/)
    expect(read(SHORTHAND_FILE)).toMatch(/event:quarantined/)
  })
})
