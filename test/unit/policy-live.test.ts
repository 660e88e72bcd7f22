import { describe, it, expect } from 'vitest'
import { checkLiveChange } from '../../src/policy/live.js'
import { type Policy } from '../../src/policy/schema.js'
import { parsePolicyText } from '../../src/policy/parse.js'

const p = (yaml: string): Policy => parsePolicyText(yaml, 'test').policy

const base = p(`version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib]
  read_write: [/sandbox, /tmp]
landlock: { compatibility: best_effort }
process: { run_as_user: sandbox, run_as_group: sandbox }
network_policies:
  gh: { endpoints: [{ host: api.github.com, port: 443 }] }
`)

const edit = (f: (q: Policy) => void): Policy => {
  const q = structuredClone(base)
  f(q)
  return q
}

describe('checkLiveChange: static sections of a running sandbox (OpenShell validate_static_fields_unchanged)', () => {
  it('allows an identical policy', () => {
    expect(checkLiveChange(base, structuredClone(base))).toBeUndefined()
  })

  it('allows network_policies and network_middlewares to change freely', () => {
    const next = edit(q => {
      q.network_policies = { npm: { endpoints: [{ host: 'registry.npmjs.org', port: 443 }] } }
      q.network_middlewares = { g: { middleware: 'x', endpoints: { include: ['a.example.com'] } } }
    })
    expect(checkLiveChange(base, next)).toBeUndefined()
    expect(checkLiveChange(base, edit(q => delete q.network_policies))).toBeUndefined()
  })

  it('allows the filesystem to grow', () => {
    const next = edit(q => {
      q.filesystem_policy!.read_only!.push('/opt')
      q.filesystem_policy!.read_write!.push('/var/tmp')
    })
    expect(checkLiveChange(base, next)).toBeUndefined()
  })

  it('refuses removing a read_only path, with OpenShell\'s message', () => {
    expect(checkLiveChange(base, edit(q => (q.filesystem_policy!.read_only = ['/usr'])))).toBe(
      "filesystem read_only path '/lib' cannot be removed on a live sandbox",
    )
  })

  it('refuses removing a read_write path', () => {
    expect(checkLiveChange(base, edit(q => (q.filesystem_policy!.read_write = ['/sandbox'])))).toBe(
      "filesystem read_write path '/tmp' cannot be removed on a live sandbox",
    )
  })

  it('refuses moving a path from read_write to read_only (a removal from read_write)', () => {
    const next = edit(q => {
      q.filesystem_policy!.read_write = ['/sandbox']
      q.filesystem_policy!.read_only!.push('/tmp')
    })
    expect(checkLiveChange(base, next)).toMatch(/read_write path '\/tmp' cannot be removed/)
  })

  it('refuses flipping include_workdir, either way', () => {
    expect(checkLiveChange(base, edit(q => (q.filesystem_policy!.include_workdir = false)))).toBe(
      'filesystem include_workdir cannot be changed on a live sandbox',
    )
    const noWorkdir = edit(q => delete q.filesystem_policy!.include_workdir)
    expect(checkLiveChange(noWorkdir, base)).toBe('filesystem include_workdir cannot be changed on a live sandbox')
  })

  it('refuses removing the filesystem section', () => {
    expect(checkLiveChange(base, edit(q => delete q.filesystem_policy))).toBe('filesystem policy cannot be removed on a live sandbox')
  })

  it('allows adding a filesystem section when the sandbox started without one', () => {
    const bare = edit(q => delete q.filesystem_policy)
    expect(checkLiveChange(bare, base)).toBeUndefined()
  })

  it('refuses any landlock change, including removing the section', () => {
    const msg = 'landlock policy cannot be changed on a live sandbox (applied at startup)'
    expect(checkLiveChange(base, edit(q => (q.landlock = { compatibility: 'hard_requirement' })))).toBe(msg)
    expect(checkLiveChange(base, edit(q => delete q.landlock))).toBe(msg)
    expect(checkLiveChange(edit(q => delete q.landlock), base)).toBe(msg)
  })

  it('refuses any process change', () => {
    const msg = 'process policy cannot be changed on a live sandbox (applied at startup)'
    expect(checkLiveChange(base, edit(q => (q.process = { run_as_user: '1500', run_as_group: 'sandbox' })))).toBe(msg)
    expect(checkLiveChange(base, edit(q => (q.process = { run_as_user: 'sandbox' })))).toBe(msg)
  })

  it('refuses omitting process when the running sandbox has one (OpenShell #3138)', () => {
    expect(checkLiveChange(base, edit(q => delete q.process))).toBe('process policy cannot be changed on a live sandbox (applied at startup)')
  })

  it('treats an empty identity string as the omitted field, as OpenShell does', () => {
    const a = edit(q => (q.process = { run_as_user: 'sandbox' }))
    const b = edit(q => (q.process = { run_as_user: 'sandbox', run_as_group: '' }))
    expect(checkLiveChange(a, b)).toBeUndefined()
  })

  it('reports the filesystem problem first, like OpenShell', () => {
    const next = edit(q => {
      q.filesystem_policy!.read_only = []
      delete q.process
    })
    expect(checkLiveChange(base, next)).toMatch(/^filesystem read_only path/)
  })
})
