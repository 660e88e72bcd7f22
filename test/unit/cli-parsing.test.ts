import { describe, it, expect } from 'vitest'
import { parseForwardSpec, accessUrl } from '../../src/cli/forward.js'
import { inferProviderType } from '../../src/cli/auto-providers.js'
import { parseUploadSpec } from '../../src/cli/transfer.js'
import { SANDBOX_NAME_RE } from '../../src/util/patterns.js'

describe('forward spec ([bind:]port, as OpenShell ForwardSpec::parse)', () => {
  it('defaults to loopback; takes IPv4/IPv6 binds; OpenShell access URLs', () => {
    expect(parseForwardSpec('8080')).toEqual({ bind: '127.0.0.1', port: 8080 })
    expect(parseForwardSpec('0.0.0.0:8080')).toEqual({ bind: '0.0.0.0', port: 8080 })
    expect(parseForwardSpec('::1:3000')).toEqual({ bind: '::1', port: 3000 })
    expect(parseForwardSpec('[::1]:3000')).toEqual({ bind: '::1', port: 3000 })
    expect(accessUrl({ bind: '0.0.0.0', port: 8080 })).toBe('http://localhost:8080/')
    expect(accessUrl({ bind: '127.0.0.1', port: 8080 })).toBe('http://127.0.0.1:8080/')
  })
  it('refuses port 0, > 65535, words and non-IP binds', () => {
    for (const bad of ['0', '65536', 'http', 'example.com:80', ':', '1.2.3:80']) expect(() => parseForwardSpec(bad), bad).toThrow()
  })
})

describe('provider inference from the command (OpenShell detect_provider_from_command)', () => {
  it('maps the command basename to a provider type', () => {
    expect(inferProviderType(['claude', '--version'])).toBe('claude')
    expect(inferProviderType(['/usr/local/bin/codex'])).toBe('codex')
    expect(inferProviderType(['gh'])).toBe('github')
    expect(inferProviderType(['glab'])).toBe('gitlab')
    expect(inferProviderType(['bash'])).toBeUndefined()
    expect(inferProviderType([])).toBeUndefined()
  })
})

describe('names and --upload', () => {
  it('sandbox names are DNS labels of 1-63 characters', () => {
    expect(SANDBOX_NAME_RE.test('a'.repeat(63))).toBe(true)
    expect(SANDBOX_NAME_RE.test('a'.repeat(64))).toBe(false)
    expect(SANDBOX_NAME_RE.test('-a')).toBe(false)
    expect(SANDBOX_NAME_RE.test('a-')).toBe(false)
    expect(SANDBOX_NAME_RE.test('A')).toBe(false)
  })
  it('--upload LOCAL[:DEST] needs an existing LOCAL', () => {
    expect(parseUploadSpec('/etc/hostname:/tmp/x')).toEqual({ local: '/etc/hostname', dest: '/tmp/x' })
    expect(parseUploadSpec('/etc/hostname')).toEqual({ local: '/etc/hostname' })
    expect(() => parseUploadSpec('/nonexistent-x')).toThrow(/does not exist/)
    expect(() => parseUploadSpec('/etc/hostname:')).toThrow(/invalid --upload/)
  })
})
