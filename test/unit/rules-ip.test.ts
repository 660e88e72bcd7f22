import { describe, it, expect } from 'vitest'
import { stringify } from 'yaml'
import { ALWAYS_BLOCKED, checkAllowedIpsEntry, classifyAddress, parseIp, parseCidr } from '../../src/rules/ip.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { PolicyEngine, checkResolved } from '../../src/gateway/policy-engine.js'
import { canonicalizeHost } from '../../src/gateway/address.js'

const policy = (allowed_ips: string[]) =>
  stringify({ version: 1, network_policies: { x: { endpoints: [{ host: 'svc.example.com', port: 443, allowed_ips }] } } })

describe('one always-blocked list for validation and the gateway (issue 10)', () => {
  it.each(['224.0.0.0/4', '240.0.0.0/4', '100.100.100.200/32', '255.255.255.255', 'ff02::/16', '::ffff:224.0.0.1'])(
    'allowed_ips %s is refused at validation with one line, because the gateway always refuses it',
    entry => {
      let msg = ''
      try {
        parsePolicyText(policy([entry]), 'p.yaml')
      } catch (e) {
        msg = (e as Error).message
      }
      expect(msg).toMatch(/network_policies\.x\.endpoints\[0\]\.allowed_ips\[0\]: allowed_ips entry .* always-blocked range/)
      // …and the gateway indeed refuses every address inside it, whatever allowed_ips says.
      const c = parseCidr(entry)!
      const sample = parseIp(c.family === 4 ? c.text.split('/')[0]!.replace(/\.0$/, '.1') : c.text.split('/')[0]!)!
      expect(classifyAddress(sample).verdict).toBe('always')
    },
  )

  it('a range that merely includes a blocked address loads with a warning naming it', () => {
    const { warnings } = parsePolicyText(policy(['100.64.0.0/10']), 'p.yaml')
    expect(warnings.join('\n')).toMatch(/allowed_ips\[0\]: allowed_ips entry 100\.64\.0\.0\/10 includes always-blocked cloud metadata 100\.100\.100\.200\/32; the gateway still refuses those addresses/)
    // the gateway: the metadata address is refused, the rest of the range is allowed
    const d = PolicyEngine.compile({ network_policies: { x: { endpoints: [{ host: 'svc.example.com', port: 443, allowed_ips: ['100.64.0.0/10'] }] } } })
      .decideConnect(canonicalizeHost('svc.example.com'), 443)
    expect(checkResolved(d, 'svc.example.com', 443, [parseIp('100.100.100.200')!]).ok).toBe(false)
    expect(checkResolved(d, 'svc.example.com', 443, [parseIp('100.64.1.1')!]).ok).toBe(true)
  })

  it('ordinary private ranges load without a word', () => {
    const { warnings } = parsePolicyText(policy(['10.0.0.0/8', '192.168.1.0/24', 'fd12::/16']), 'p.yaml')
    expect(warnings.filter(w => w.includes('allowed_ips'))).toEqual([])
  })

  it('checkAllowedIpsEntry: OpenShell refusals kept (loopback/link-local/unspecified touched)', () => {
    for (const e of ['0.0.0.0/0', '127.0.0.1', '64.0.0.0/2', '169.254.0.0/16', '::1', '::ffff:127.0.0.1', 'fe80::/10']) {
      expect(checkAllowedIpsEntry(e).ok, e).toBe(false)
    }
    expect(checkAllowedIpsEntry('010.0.0.1').ok).toBe(false) // no leading zeros in policy CIDRs
    expect(checkAllowedIpsEntry('10.0.0.0/33').ok).toBe(false)
  })

  it('every always-blocked range is classified always by the gateway', () => {
    for (const r of ALWAYS_BLOCKED) {
      const addr = parseIp(r.cidr.text.split('/')[0]!)!
      expect(classifyAddress(addr).verdict, r.cidr.text).toBe('always')
    }
  })

  it('IPv6 text is parsed by ipaddr.js without its v4-mapped reading of dotted tails', () => {
    expect(parseIp('::1.2.3.4')!.text).toBe('::102:304') // IPv4-compatible, not ::ffff:1.2.3.4
    expect(parseIp('::ffff:1.2.3.4')!.text).toBe('::ffff:1.2.3.4')
    expect(parseIp('fe80::1%eth0')).toBeUndefined()
    expect(parseIp('::ffff:01.2.3.4')).toBeUndefined()
  })
})
