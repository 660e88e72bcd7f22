import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtempSync, rmSync, readFileSync, readdirSync, existsSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  AuditLog,
  appendLifecycle,
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
  it('writes both files under sandboxes/<name>/audit with mode 0600', () => {
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
