import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, lstatSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MountSentinel, loadProtections, protectedMounts, recordProtections, remountScript, renderSentinelEvent } from '../../src/watch/mount-sentinel.js'
import { protectedFile, sentinelHeld, sentinelHeldFile } from '../../src/watch/paths.js'
import { pinMounts } from '../../src/sandbox/mount-guard.js'
import type { MountSpec } from '../../src/sandbox/types.js'

let root: string
let data: string
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'podshell-sentinel-'))
  data = join(root, 'data')
  mkdirSync(join(data, 'sandboxes', 'sb'), { recursive: true })
})
afterEach(() => rmSync(root, { recursive: true, force: true }))

describe('protectedMounts: what the host can detach', () => {
  it('read-only self-binds and pins in a read-write bind, socket masks and directory masks; not plain nested binds', () => {
    const repo = join(root, 'repo')
    mkdirSync(join(repo, 'packages', 'web', '.claude'), { recursive: true })
    mkdirSync(join(repo, 'secrets'))
    writeFileSync(join(repo, '.mcp.json'), '{}')
    const other = join(root, 'other')
    mkdirSync(other)
    const empty = join(data, 'empty-mask')
    const mounts: MountSpec[] = [
      { source: repo, target: repo, mode: 'rw' },
      { source: join(repo, '.mcp.json'), target: join(repo, '.mcp.json'), mode: 'ro' },
      { source: join(repo, 'packages', 'web', '.claude'), target: join(repo, 'packages', 'web', '.claude'), mode: 'ro' },
      { source: other, target: join(repo, 'vendor'), mode: 'ro' },
      { source: empty, target: join(repo, 'db.sock'), mode: 'ro' },
    ]
    mounts.push(...pinMounts(mounts, [join(repo, 'secrets')]))
    const list = protectedMounts(mounts, [join(repo, 'secrets')], m => m.source === empty)
    expect(list.map(p => [p.inside.slice(repo.length), p.kind])).toEqual([
      ['/.mcp.json', 'ro'],
      ['/db.sock', 'mask-file'],
      ['/packages', 'pin'],
      ['/packages/web', 'pin'],
      ['/packages/web/.claude', 'ro'],
      ['/secrets', 'mask-dir'],
    ])
    expect(list.every(p => p.host === p.inside)).toBe(true)
  })

  it('a read-only bind in a read-only parent is left out (rename there is EROFS); a mask in it is kept', () => {
    const ro = join(root, 'ro')
    const mounts: MountSpec[] = [
      { source: ro, target: '/work', mode: 'ro' },
      { source: join(ro, '.git'), target: '/work/.git', mode: 'ro' },
    ]
    const list = protectedMounts(mounts, ['/work/secrets'], () => false)
    expect(list).toEqual([{ inside: '/work/secrets', host: join(ro, 'secrets'), kind: 'mask-dir' }])
  })

  it('parents come before what is inside them (a pin is made again before the binds on top of it)', () => {
    const mounts: MountSpec[] = [
      { source: '/r', target: '/r', mode: 'rw' },
      { source: '/r/a-b', target: '/r/a-b', mode: 'ro' },
      { source: '/r/a/x', target: '/r/a/x', mode: 'ro' },
      { source: '/r/a', target: '/r/a', mode: 'rw' },
    ]
    const order = protectedMounts(mounts, [], () => false).map(p => p.inside)
    expect(order.indexOf('/r/a')).toBeLessThan(order.indexOf('/r/a/x'))
  })
})

describe('remountScript', () => {
  it('uses the host mount without canonicalizing or writing mtab, and keeps each kind what it was', () => {
    for (const k of ['ro', 'pin', 'mask-dir', 'mask-file'] as const) expect(remountScript(k)).toContain('mount -n --no-canonicalize')
    expect(remountScript('ro')).toMatch(/--bind "\$1" "\$1" && .*remount,bind,ro "\$1"/)
    expect(remountScript('pin')).not.toMatch(/ro/)
    expect(remountScript('mask-dir')).toMatch(/-t tmpfs -o ro,nosuid,nodev,noexec,mode=000/)
    expect(remountScript('mask-file')).toMatch(/--bind "\$2\/dev\/null" "\$1" && .*remount,bind,ro,nosuid,nodev,noexec/)
  })
})

describe('MountSentinel bookkeeping', () => {
  const setup = () => {
    const f = join(root, 'settings.json')
    writeFileSync(f, '{}')
    recordProtections(data, 'sb', [{ inside: f, host: f, kind: 'ro' }])
    return f
  }
  const replace = (f: string) => {
    writeFileSync(`${f}.tmp`, '{"x":1}')
    renameSync(`${f}.tmp`, f)
  }

  it('records the identity of each host path; a start clears a "held" mark', () => {
    mkdirSync(join(data, 'sandboxes', 'sb', 'watch'), { recursive: true })
    writeFileSync(sentinelHeldFile(data, 'sb'), 'held\n')
    const f = setup()
    const [p] = loadProtections(data, 'sb')
    expect(p).toMatchObject({ host: f, kind: 'ro', ino: lstatSync(f).ino, dev: lstatSync(f).dev })
    expect(sentinelHeld(data, 'sb')).toBeUndefined()
  })

  it('agent not running: a replaced path is taken as it is now (the next start mounts it), nothing is mounted', async () => {
    const f = setup()
    let mounted = 0
    const s = new MountSentinel({ dataDir: data, name: 'sb', agentPid: async () => 0, remount: () => (mounted++, undefined) })
    replace(f)
    await s.check()
    expect(mounted).toBe(0)
    expect(loadProtections(data, 'sb')[0]!.ino).toBe(lstatSync(f).ino)
  })

  it('podman cannot tell: the change stays pending (asked again), never taken as the new identity', async () => {
    const f = setup()
    const before = lstatSync(f).ino
    const said: string[] = []
    const s = new MountSentinel({ dataDir: data, name: 'sb', agentPid: async () => undefined, say: l => said.push(l) })
    replace(f)
    await s.check()
    expect(loadProtections(data, 'sb')[0]!.ino).toBe(before)
    expect(said.join('\n')).toMatch(/could not say whether the agent runs/)
  })

  it('an unchanged list does nothing and asks podman nothing', async () => {
    setup()
    let asked = 0
    const s = new MountSentinel({ dataDir: data, name: 'sb', agentPid: async () => (asked++, 0) })
    await s.check()
    expect(asked).toBe(0)
    expect(readFileSync(protectedFile(data, 'sb'), 'utf8')).toContain('"kind":"ro"')
  })
})

describe('the sentinel finding', () => {
  it('is the watcher OCSF Detection Finding: Critical when it failed, the host path as the resource', () => {
    const p = { inside: '/w/.mcp.json', host: '/w/.mcp.json', kind: 'ro' as const, dev: 1, ino: 2, birth: 3 }
    const f = renderSentinelEvent('sb', 'failed', 'could not be made again', p as Parameters<typeof renderSentinelEvent>[3], 5)
    expect(f.json).toMatchObject({ class_uid: 2004, severity_id: 5, severity: 'Critical', action: 'Denied', resources: [{ name: '/w/.mcp.json', type: 'file' }], finding_info: { types: ['mount_detached'], analytic: { name: 'mount_sentinel' } }, unmapped: { sandbox: 'sb', action: 'failed', kind: 'ro' } })
    expect(f.shorthand).toMatch(/^FINDING:CREATE \[CRIT\] PAUSED \/w\/\.mcp\.json \[rule:mount_sentinel\]/)
    expect(renderSentinelEvent('sb', 'restored', 'x', p as Parameters<typeof renderSentinelEvent>[3], 5).json).toMatchObject({ severity: 'High', status: 'New' })
  })
})
