import { describe, it, expect } from 'vitest'
import { mkdtempSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { mapFilesystemPolicy } from '../../src/sandbox/fs-policy.js'

const home = '/home/u'
const writable = ['/tmp', '/var/tmp', '/run']

describe('filesystem_policy → mounts', () => {
  const repo = mkdtempSync(join(tmpdir(), 'fsp-'))
  mkdirSync(join(repo, 'docs'))
  mkdirSync(join(repo, 'build'))
  const wd = { source: repo, target: repo, mode: 'rw' as const }

  it('no filesystem_policy changes nothing', () => {
    expect(mapFilesystemPolicy(undefined, { workdir: repo, workdirMode: undefined, mounts: [wd], home, writable })).toEqual({ workdirMode: undefined, mounts: [], tmpfsDirs: [] })
  })

  it('include_workdir: false makes the workdir read-only, even over a session that wanted rw', () => {
    expect(mapFilesystemPolicy({ include_workdir: false }, { workdir: repo, workdirMode: 'rw', mounts: [], home, writable }).workdirMode).toBe('ro')
  })

  it('include_workdir: true gives rw unless a session type already said ro', () => {
    expect(mapFilesystemPolicy({ include_workdir: true }, { workdir: repo, workdirMode: undefined, mounts: [], home, writable }).workdirMode).toBe('rw')
    expect(mapFilesystemPolicy({ include_workdir: true }, { workdir: repo, workdirMode: 'ro', mounts: [], home, writable }).workdirMode).toBe('ro')
  })

  it('read_only inside a read-write mount binds that sub-path read-only (existing paths only)', () => {
    const m = mapFilesystemPolicy({ read_only: [join(repo, 'docs'), join(repo, 'missing')] }, { workdir: repo, workdirMode: undefined, mounts: [wd], home, writable })
    expect(m.mounts).toEqual([{ source: join(repo, 'docs'), target: join(repo, 'docs'), mode: 'ro' }])
  })

  it('read_write inside a read-only mount binds that sub-path read-write', () => {
    const m = mapFilesystemPolicy({ include_workdir: false, read_write: [join(repo, 'build')] }, { workdir: repo, workdirMode: undefined, mounts: [{ ...wd, mode: 'ro' }], home, writable })
    expect(m.workdirMode).toBe('ro')
    expect(m.mounts).toEqual([{ source: join(repo, 'build'), target: join(repo, 'build'), mode: 'rw' }])
  })

  it('read_write outside every mount becomes a writable tmpfs, except where the image is writable already', () => {
    const m = mapFilesystemPolicy({ read_write: ['/sandbox', '/tmp', '/dev/null', `${home}/cache`, '/var/tmp/x'] }, { workdir: null, workdirMode: undefined, mounts: [], home, writable })
    expect(m.tmpfsDirs).toEqual(['/sandbox'])
  })

  it("OpenShell's restrictive default needs no extra mounts", () => {
    const m = mapFilesystemPolicy(
      { include_workdir: true, read_only: ['/usr', '/lib', '/proc', '/dev/urandom', '/app', '/etc', '/var/log'], read_write: ['/tmp', '/dev/null'] },
      { workdir: repo, workdirMode: undefined, mounts: [wd], home, writable },
    )
    expect(m).toEqual({ workdirMode: 'rw', mounts: [], tmpfsDirs: [] })
  })
})
