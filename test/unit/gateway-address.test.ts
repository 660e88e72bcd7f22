import { describe, it, expect } from 'vitest'
import { isIPv4 } from 'node:net'
import {
  canonicalizeHost,
  parseAuthority,
  parseIp,
  parseCidr,
  cidrContains,
  classifyAddress,
  checkAddress,
  checkAllowedIpsEntry,
  HostError,
} from '../../src/gateway/address.js'

const ip = (s: string) => {
  const a = parseIp(s)
  if (!a) throw new Error(`not an ip: ${s}`)
  return a
}

describe('IPv4 literal spellings canonicalise to one address', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['127.0.1', '127.0.0.1'],
    ['0x7f.0.0.1', '127.0.0.1'],
    ['0X7F.0.0.1', '127.0.0.1'],
    ['0x7f000001', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['017700000001', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['0177.0.0.01', '127.0.0.1'],
    ['127.0.0.1.', '127.0.0.1'],
    ['0', '0.0.0.0'],
    ['0x', '0.0.0.0'],
    ['169.254.43518', '169.254.169.254'],
    ['0xa9fea9fe', '169.254.169.254'],
    ['10.0.0.0x1', '10.0.0.1'],
  ])('%s → %s', (raw, want) => {
    const h = canonicalizeHost(raw)
    expect(h.kind).toBe('ip')
    expect(h.host).toBe(want)
  })

  it.each(['1e2.1.1.1', '256.1.1.1', '1.2.3.4.5', '08.0.0.1', '0x1g.0.0.1', '4294967296', '1.2.3.256', '1.16777216', '..1'])(
    'rejects %s (ends in a number but is no valid address)',
    raw => {
      expect(() => canonicalizeHost(raw)).toThrow(HostError)
    },
  )
})

describe('IPv6 literal spellings', () => {
  it.each([
    ['[::1]', '::1'],
    ['::1', '::1'],
    ['[0:0:0:0:0:0:0:1]', '::1'],
    ['[::ffff:127.0.0.1]', '::ffff:127.0.0.1'],
    ['[::FFFF:7F00:1]', '::ffff:127.0.0.1'],
    ['[2001:DB8:0:0:1:0:0:1]', '2001:db8::1:0:0:1'],
    ['[fd00:ec2::254]', 'fd00:ec2::254'],
    ['[64:ff9b::127.0.0.1]', '64:ff9b::7f00:1'],
  ])('%s → %s', (raw, want) => {
    const h = canonicalizeHost(raw)
    expect(h.kind).toBe('ip')
    expect(h.host).toBe(want)
  })

  it.each(['[::1', '[1::2::3]', '[fe80::1%eth0]', '[::ffff:127.1]', '[12345::]', '[1:2:3:4:5:6:7:8:9]'])('rejects %s', raw => {
    expect(() => canonicalizeHost(raw)).toThrow(HostError)
  })
})

describe('host names', () => {
  it('lowercases and removes one trailing dot', () => {
    expect(canonicalizeHost('Api.Example.COM.')).toEqual({ kind: 'name', host: 'api.example.com' })
  })
  it('keeps punycode labels as they are', () => {
    expect(canonicalizeHost('XN--BCHER-KVA.example').host).toBe('xn--bcher-kva.example')
  })
  it.each([
    ['evil.com\r\nHost: x', 'CR/LF'],
    ['evil.com\n', 'LF'],
    ['a b.com', 'space'],
    ['user@evil.com', '@'],
    ['evil.com#.good.com', '#'],
    ['evil.com/x', '/'],
    ['evil.com\\x', 'backslash'],
    ['evil%2ecom', '%'],
    ['bücher.example', 'non-ASCII'],
    ['a..b.com', 'empty label'],
    ['example.com..', 'two trailing dots'],
    ['.', 'only a dot'],
    ['a'.repeat(64) + '.com', 'long label'],
    ['', 'empty'],
  ])('rejects %j (%s)', raw => {
    expect(() => canonicalizeHost(raw)).toThrow(HostError)
  })
})

describe('authority parsing (CONNECT targets)', () => {
  it('splits host and port', () => {
    const a = parseAuthority('API.github.com:443')
    expect(a.host.host).toBe('api.github.com')
    expect(a.port).toBe(443)
  })
  it('handles bracketed IPv6', () => {
    const a = parseAuthority('[::1]:8080')
    expect(a.host.host).toBe('::1')
    expect(a.port).toBe(8080)
  })
  it.each(['example.com', 'example.com:0', 'example.com:65536', 'example.com:+443', 'example.com: 443', '::1:443', '[::1]443', 'example.com:443:1'])(
    'rejects %j',
    raw => {
      expect(() => parseAuthority(raw)).toThrow(HostError)
    },
  )
  it('uses a default port only when the caller has one', () => {
    expect(parseAuthority('example.com', 80).port).toBe(80)
  })
})

describe('address classification', () => {
  it.each([
    '127.0.0.1', '127.255.255.254', '0.0.0.0', '0.1.2.3', '169.254.169.254', '169.254.170.2', '224.0.0.1', '255.255.255.255', '240.0.0.1',
    '100.100.100.200', '168.63.129.16',
    '::1', '::', 'fe80::1', 'ff02::1', 'fd00:ec2::254',
    '::ffff:127.0.0.1', '::ffff:169.254.169.254', '::127.0.0.1', '::ffff:0:127.0.0.1',
    '64:ff9b::127.0.0.1', '64:ff9b:1::a9fe:a9fe', '2002:7f00:1::', '2002:a9fe:a9fe::1',
    // Teredo with client 127.0.0.1 (stored inverted: 80ff:fffe)
    '2001:0:4136:e378:8000:63bf:80ff:fffe',
  ])('%s is always blocked', s => {
    expect(classifyAddress(ip(s)).verdict).toBe('always')
  })

  it.each([
    '10.0.0.1', '172.16.5.4', '172.31.255.255', '192.168.1.1', '100.64.0.1', '198.18.0.1', '198.19.255.255', '192.0.2.1',
    'fc00::1', 'fd12:3456::1', '::ffff:10.0.0.1', '64:ff9b::192.168.0.1', '2002:c0a8:101::1', 'fec0::1',
  ])('%s is private', s => {
    expect(classifyAddress(ip(s)).verdict).toBe('private')
  })

  it.each(['8.8.8.8', '1.1.1.1', '140.82.112.3', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::8.8.8.8', '2002:808:808::1'])(
    '%s is public',
    s => {
      expect(classifyAddress(ip(s)).verdict).toBe('public')
    },
  )

  it('judges mapped forms by the embedded IPv4 address and names it', () => {
    const c = classifyAddress(ip('::ffff:169.254.169.254'))
    expect(c.embedded?.text).toBe('169.254.169.254')
    expect(c.category).toMatch(/metadata/)
  })
})

describe('CIDR matching', () => {
  it('matches inside the prefix only', () => {
    const c = parseCidr('10.1.0.0/16')!
    expect(cidrContains(c, ip('10.1.200.3'))).toBe(true)
    expect(cidrContains(c, ip('10.2.0.1'))).toBe(false)
  })
  it('normalises host bits', () => {
    expect(parseCidr('10.1.2.3/8')!.text).toBe('10.0.0.0/8')
  })
  it('a bare address is a /32 or /128', () => {
    expect(parseCidr('192.168.1.5')!.prefix).toBe(32)
    expect(parseCidr('fd00::5')!.prefix).toBe(128)
  })
  it('a v4 CIDR covers the v4-mapped form', () => {
    expect(cidrContains(parseCidr('10.0.0.0/8')!, ip('::ffff:10.9.9.9'))).toBe(true)
  })
  it('v6 prefixes', () => {
    expect(cidrContains(parseCidr('fd00:1::/32')!, ip('fd00:1:ffff::1'))).toBe(true)
    expect(cidrContains(parseCidr('fd00:1::/32')!, ip('fd00:2::1'))).toBe(false)
  })
  it.each(['10.0.0.0/33', '10.0.0/8', '127.1/32', 'fd00::/129', 'x/8', '10.0.0.0/-1'])('rejects %s', s => {
    expect(parseCidr(s)).toBeUndefined()
  })
  it('detects allowed_ips entries that overlap always-blocked ranges', () => {
    // The one allowed_ips rule (src/rules/ip.ts), which policy validation calls.
    expect(checkAllowedIpsEntry('0.0.0.0/0').ok).toBe(false)
    expect(checkAllowedIpsEntry('127.0.0.0/16').ok).toBe(false)
    expect(checkAllowedIpsEntry('10.0.0.0/8').ok).toBe(true)
  })
})

describe('resolved-address check (SSRF guard)', () => {
  it('loopback stays blocked even when allowed_ips covers it', () => {
    const r = checkAddress(ip('127.0.0.1'), [parseCidr('127.0.0.0/8')!])
    expect(r.ok).toBe(false)
  })
  it('metadata stays blocked even when allowed_ips covers it', () => {
    expect(checkAddress(ip('169.254.169.254'), [parseCidr('169.254.0.0/16')!]).ok).toBe(false)
  })
  it('private needs allowed_ips', () => {
    expect(checkAddress(ip('10.0.0.5'), undefined).ok).toBe(false)
    expect(checkAddress(ip('10.0.0.5'), [parseCidr('10.0.0.0/24')!]).ok).toBe(true)
    expect(checkAddress(ip('10.0.1.5'), [parseCidr('10.0.0.0/24')!]).ok).toBe(false)
  })
  it('allowed_ips pins the endpoint: a public address outside it is refused', () => {
    expect(checkAddress(ip('8.8.8.8'), [parseCidr('10.0.0.0/8')!]).ok).toBe(false)
  })
  it('public passes without allowed_ips', () => {
    expect(checkAddress(ip('8.8.8.8'), undefined).ok).toBe(true)
  })
})

describe('agrees with the WHATWG URL parser on numeric hosts', () => {
  // The URL parser is what Node/undici (and browsers) use to turn a URL into a destination; any
  // disagreement on a numeric host would be a way to name one address and reach another.
  const parts = ['0', '1', '127', '255', '256', '0x7f', '0x', '0177', '08', '4294967295', '4294967296', '0xffffffff', '1e2', '']
  const rnd = (n: number) => Math.floor(Math.random() * n)
  const samples: string[] = []
  for (let i = 0; i < 400; i++) {
    const k = 1 + rnd(4)
    samples.push(Array.from({ length: k }, () => parts[rnd(parts.length)]!).join('.') + (rnd(5) === 0 ? '.' : ''))
  }
  it('for random inet_aton-style inputs', () => {
    for (const s of samples) {
      let ours: string | undefined
      try {
        ours = canonicalizeHost(s).host
      } catch {
        ours = undefined
      }
      let theirs: string | undefined
      try {
        theirs = new URL(`http://${s}/`).hostname
      } catch {
        theirs = undefined
      }
      // The URL parser treats names like "1e2.1" as DNS names only when the last label is not
      // numeric; we reject the same inputs it rejects and produce the same address otherwise.
      if (theirs !== undefined && isIPv4(theirs)) expect({ s, ours }).toEqual({ s, ours: theirs })
      if (theirs === undefined) expect({ s, ours }).toEqual({ s, ours: undefined })
      if (ours !== undefined && isIPv4(ours)) expect({ s, theirs }).toEqual({ s, theirs: ours })
    }
  })
})
