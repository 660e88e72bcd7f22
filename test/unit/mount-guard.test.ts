import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pinMounts } from '../../src/sandbox/mount-guard.js'
import { allowedSockets, isHostSocketRisk, socketMasks, EMPTY_MASK_FILE } from '../../src/sandbox/sockets.js'
import { claudeDataBinds, claudeProjectName, dafProjectName } from '../../src/sandbox/claude-data.js'
import { checkWritable } from '../../src/sandbox/sensitive.js'
import type { MountSpec } from '../../src/sandbox/types.js'

let root: string
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'podshell-guard-'))
})
afterEach(() => rmSync(root, { recursive: true, force: true }))

describe('pinMounts: ancestors of protected mounts cannot be renamed away', () => {
  it('pins every directory between a read-only bind and its read-write parent mount, once', () => {
    const repo = join(root, 'repo')
    mkdirSync(join(repo, 'libs', 'sub'), { recursive: true })
    mkdirSync(join(repo, 'packages', 'web', '.claude'), { recursive: true })
    writeFileSync(join(repo, 'libs', 'sub', '.git'), 'gitdir: ../../.git/modules/libs/sub\n')
    const mounts: MountSpec[] = [
      { source: repo, target: repo, mode: 'rw' },
      { source: join(repo, '.git'), target: join(repo, '.git'), mode: 'ro' },
      { source: join(repo, 'libs', 'sub', '.git'), target: join(repo, 'libs', 'sub', '.git'), mode: 'ro' },
      { source: join(repo, 'packages', 'web', '.claude'), target: join(repo, 'packages', 'web', '.claude'), mode: 'ro' },
    ]
    const pins = pinMounts(mounts, [])
    expect(pins.map(p => p.target).sort()).toEqual([join(repo, 'libs'), join(repo, 'libs', 'sub'), join(repo, 'packages'), join(repo, 'packages', 'web')])
    for (const p of pins) expect(p).toEqual({ source: p.target, target: p.target, mode: 'rw' })
  })

  it('pins the ancestors of masks, maps sources through the enclosing mount, and skips read-only parents, symlinks and mounts outside any bind', () => {
    const src = join(root, 'host-src')
    mkdirSync(join(src, 'a', 'secret'), { recursive: true })
    mkdirSync(join(src, 'real', 'x'), { recursive: true })
    symlinkSync(join(src, 'real'), join(src, 'link'))
    const ro = join(root, 'ro')
    mkdirSync(join(ro, 'b', 'c'), { recursive: true })
    const mounts: MountSpec[] = [
      { source: src, target: '/work/p', mode: 'rw' },
      { source: ro, target: '/ro', mode: 'ro' },
      { source: join(ro, 'b', 'c'), target: '/ro/b/c', mode: 'ro' },
      { source: join(src, 'link', 'x'), target: '/work/p/link/x', mode: 'ro' },
      { source: '/etc/hostname', target: '/home/u/.claude/settings.json', mode: 'ro' },
    ]
    const pins = pinMounts(mounts, ['/work/p/a/secret'])
    expect(pins).toEqual([{ source: join(src, 'a'), target: '/work/p/a', mode: 'rw' }])
  })
})

describe('sockets', () => {
  let servers: Server[] = []
  afterEach(() => {
    for (const s of servers) s.close()
    servers = []
  })
  const listen = (p: string) => new Promise<void>(res => {
    const s = createServer()
    servers.push(s)
    s.listen(p, () => res())
  })

  it('splits masks into directory masks and socket binds of an empty file, leaving allowed sockets reachable', async () => {
    const d = join(root, 'p')
    mkdirSync(join(d, 'secret'), { recursive: true })
    await listen(join(d, 'pg.sock'))
    await listen(join(d, 'wanted.sock'))
    const data = join(root, 'data')
    const r = socketMasks([join(d, 'secret'), join(d, 'pg.sock'), join(d, 'wanted.sock')], allowedSockets([join(d, 'wanted.sock')]), data)
    expect(r.dirMasks).toEqual([join(d, 'secret')])
    expect(r.masked).toEqual([join(d, 'pg.sock')])
    expect(r.socketMounts).toEqual([{ source: join(data, EMPTY_MASK_FILE), target: join(d, 'pg.sock'), mode: 'ro' }])
    // The second sandbox reuses the (read-only) empty file.
    expect(socketMasks([join(d, 'pg.sock')], new Set(), data).socketMounts).toHaveLength(1)
    expect(isHostSocketRisk(join(d, 'pg.sock'))).toBe(true)
    expect(isHostSocketRisk(join(d, 'wanted.sock'), allowedSockets([join(d, 'wanted.sock')]))).toBe(false)
    expect(isHostSocketRisk(join(d, 'secret'))).toBe(false)
    expect(isHostSocketRisk(join(d, 'gone.sock'))).toBe(false)
  })
})

describe('Claude data: only the session\'s own projects', () => {
  it('encodes paths as Claude Code does (every non-alphanumeric character → "-") and as daf does ("/" and "_")', () => {
    expect(claudeProjectName('/home/u/src/my_app.v2')).toBe('-home-u-src-my-app-v2')
    expect(dafProjectName('/home/u/src/my_app.v2')).toBe('-home-u-src-my-app.v2')
    expect(claudeProjectName('/home/u/src/app/')).toBe('-home-u-src-app')
  })

  it('development: each project dir rw (created), memory writable; investigation: memory read-only; daf\'s variant only when it exists', () => {
    const c = join(root, 'claude')
    mkdirSync(join(c, 'projects', '-w-my-app.v2'), { recursive: true })
    const dev = claudeDataBinds(c, ['/w/my_app.v2', '/w/other'], 'development')
    expect(dev.map(b => [b.path.slice(c.length), b.mode])).toEqual([
      ['/projects/-w-my-app-v2', 'rw'],
      ['/projects/-w-my-app.v2', 'rw'],
      ['/projects/-w-other', 'rw'],
    ])
    const inv = claudeDataBinds(c, ['/w/other'], 'investigation')
    expect(inv.map(b => [b.path.slice(c.length), b.mode])).toEqual([
      ['/projects/-w-other', 'rw'],
      ['/projects/-w-other/memory', 'ro'],
    ])
  })
})

describe('checkWritable: package caches the host executes from', () => {
  const home = '/home/u'
  it('refuses the cache, a dir inside it and a dir containing it; allows project dirs', () => {
    expect(checkWritable('/home/u/.m2/repository', home)).toMatch(/~\/\.m2\/repository is inside ~\/\.m2, the Maven repository/)
    expect(checkWritable('/home/u/.cargo', home)).toMatch(/is ~\/\.cargo/)
    expect(checkWritable('/home/u/.cache', home)).toMatch(/~\/\.cache contains ~\/\.cache\/(yarn|pip|uv)/)
    expect(checkWritable('/home/u/go/pkg/mod/x', home)).toMatch(/Go module cache/)
    expect(checkWritable('/home/u/src/app', home)).toBeUndefined()
    expect(checkWritable('/home/u/.cache/devaiflow/clones/x', home)).toBeUndefined()
  })
})
