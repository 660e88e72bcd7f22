import { describe, it, expect, afterEach } from 'vitest'
import { mkdtempSync, writeFileSync, rmSync, utimesSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSandboxResolver, parseHostsFile, type NameResolver } from '../../src/rules/dns.js'
import { parseIp } from '../../src/rules/ip.js'

let dir: string | undefined
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
  dir = undefined
})
const hosts = (text: string) => {
  dir = mkdtempSync(join(tmpdir(), 'podshell-dns-'))
  const f = join(dir, 'hosts')
  writeFileSync(f, text)
  return f
}

/** A backend whose lookups hang until released, recording every name asked. */
function stalling() {
  const asked: string[] = []
  const pending: (() => void)[] = []
  const backend: NameResolver = host => {
    asked.push(host)
    return new Promise(res => pending.push(() => res([parseIp('192.0.2.1')!])))
  }
  return { asked, backend, releaseAll: () => pending.splice(0).forEach(f => f()) }
}

describe('sandbox resolver (src/rules/dns.ts)', () => {
  it('answers /etc/hosts names without asking DNS, and re-reads the file when it changes', async () => {
    const f = hosts('# comment\n198.18.0.2  upstream.test  Alias.Test\n::1 six.test\n')
    const s = stalling()
    const r = createSandboxResolver({ hostsFile: f, backend: s.backend })
    expect((await r('upstream.test')).map(a => a.text)).toEqual(['198.18.0.2'])
    expect((await r('alias.test')).map(a => a.text)).toEqual(['198.18.0.2'])
    writeFileSync(f, '198.18.0.3 upstream.test\n')
    utimesSync(f, new Date(), new Date(Date.now() + 5000))
    expect((await r('upstream.test')).map(a => a.text)).toEqual(['198.18.0.3'])
    expect(s.asked).toEqual([])
  })

  it('parses hosts files strictly (bad addresses skipped)', () => {
    const m = parseHostsFile('not-an-ip a.test\n10.0.0.1 b.test # c.test\n')
    expect([...m.keys()]).toEqual(['b.test'])
  })

  it("one sandbox's stalled lookups cannot delay another sandbox's (per-sandbox bound, no shared pool)", async () => {
    const f = hosts('')
    const attacker = stalling()
    const a = createSandboxResolver({ hostsFile: f, backend: attacker.backend, maxInFlight: 4, maxQueued: 2, timeoutMs: 60_000 })
    const flood = Array.from({ length: 6 }, (_, i) => a(`slow${i}.attacker.example`).catch(() => undefined))
    expect(a.inFlight()).toBe(4)
    expect(a.queued()).toBe(2)
    await expect(a('one-too-many.attacker.example')).rejects.toMatchObject({ code: 'EBUSY' })
    // Sandbox B has its own resolver: answered at once although A's lookups all hang.
    const b = createSandboxResolver({ hostsFile: f, backend: async () => [parseIp('192.0.2.7')!] })
    expect((await b('api.example.com')).map(x => x.text)).toEqual(['192.0.2.7'])
    attacker.releaseAll()
    await new Promise(r => setTimeout(r, 0))
    attacker.releaseAll()
    await Promise.all(flood)
    expect(a.inFlight()).toBe(0)
    expect(attacker.asked.length).toBe(6)
  })

  it('a lookup past its deadline fails with ETIMEOUT and frees its slot', async () => {
    const s = stalling()
    const r = createSandboxResolver({ hostsFile: hosts(''), backend: s.backend, maxInFlight: 1, timeoutMs: 20 })
    await expect(r('slow.example')).rejects.toMatchObject({ code: 'ETIMEOUT' })
    expect(r.inFlight()).toBe(0)
  })
})
