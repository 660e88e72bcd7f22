import { describe, it, expect } from 'vitest'
import { mkdtempSync, statfsSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { DEFAULT_DISK_RESERVE, filesystems, inodeReserve, isClear, isLow, parseDiskReserve, renderDiskEvent, reserveBytes, RESUME_SLACK } from '../../src/watch/disk-guard.js'

const GiB = 1024 ** 3
const MiB = 1024 ** 2

describe('resources.disk_reserve', () => {
  it('parses a share, a size, and 0 (off); refuses the rest in one line', () => {
    expect(parseDiskReserve(undefined)).toBe(DEFAULT_DISK_RESERVE)
    expect(parseDiskReserve('10%')).toEqual({ percent: 10 })
    expect(parseDiskReserve('2Gi')).toEqual({ bytes: 2 * GiB })
    expect(parseDiskReserve('0')).toEqual({ bytes: 0 })
    for (const bad of ['60%', '0%', '-1Gi', 'lots', '1%%', '10k']) expect(() => parseDiskReserve(bad), bad).toThrow(/invalid resources\.disk_reserve/)
  })

  it('the default is 5% of the filesystem, at least 512 MiB and at most 4 GiB; an explicit share is not clamped', () => {
    expect(reserveBytes(DEFAULT_DISK_RESERVE, 100 * GiB)).toBe(4 * GiB)
    expect(reserveBytes(DEFAULT_DISK_RESERVE, 40 * GiB)).toBe(2 * GiB)
    expect(reserveBytes(DEFAULT_DISK_RESERVE, 4 * GiB)).toBe(512 * MiB)
    expect(reserveBytes({ percent: 5 }, 1000 * GiB)).toBe(50 * GiB)
    // The default as the watcher daemon gets it (through its want file, JSON): still bounded.
    expect(reserveBytes(JSON.parse(JSON.stringify(DEFAULT_DISK_RESERVE)) as typeof DEFAULT_DISK_RESERVE, 100 * GiB)).toBe(4 * GiB)
    expect(reserveBytes({ bytes: 3 * GiB }, 10 * GiB)).toBe(3 * GiB)
  })

  it('reads each filesystem once (paths on the same one are one entry); missing paths are skipped', () => {
    const a = mkdtempSync(join(tmpdir(), 'dg-'))
    const b = mkdtempSync(join(tmpdir(), 'dg-'))
    const fss = filesystems([a, b, join(a, 'missing')], { bytes: GiB })
    expect(fss).toHaveLength(1)
    const s = statfsSync(a)
    expect(fss[0]!.total).toBe(Number(s.blocks) * Number(s.bsize))
    expect(fss[0]!.reserve).toBe(GiB)
    expect(fss[0]!.avail).toBeGreaterThan(0)
  })

  it('inodes: a flood of empty files is low too; the inode reserve follows the share (1% for a size); none where the filesystem reports no inodes', () => {
    expect(inodeReserve(DEFAULT_DISK_RESERVE, 1_000_000)).toBe(50_000)
    expect(inodeReserve({ bytes: GiB }, 1_000_000)).toBe(10_000)
    expect(inodeReserve({ bytes: 0 }, 1_000_000)).toBe(0)
    expect(inodeReserve({ percent: 5 }, 0)).toBe(0)
    const f = { path: '/x', total: 100 * GiB, avail: 50 * GiB, reserve: GiB, availInodes: 100_000, inodeReserve: 50_000 }
    expect(isLow(f)).toBe(false)
    expect(isLow({ ...f, availInodes: 49_999 })).toBe(true)
    expect(isLow({ ...f, avail: GiB - 1 })).toBe(true)
    // Resume only with slack on both: no flapping at the boundary.
    expect(isClear({ ...f, avail: GiB + RESUME_SLACK - 1 })).toBe(false)
    expect(isClear({ ...f, availInodes: 50_500 })).toBe(false)
    expect(isClear(f)).toBe(true)
  })

  it('records a pause as a High OCSF Detection Finding and a resume as its Informational close', () => {
    const p = renderDiskEvent('sb', 'paused', 'agent paused (3 processes stopped): 10 MiB free', '/home/u/x', 1)
    expect(p.json).toMatchObject({ class_uid: 2004, severity: 'High', action: 'Denied', finding_info: { types: ['disk_reserve'] } })
    expect(p.shorthand).toMatch(/^FINDING:CREATE \[HIGH\] PAUSED \/home\/u\/x \[rule:disk_reserve\]/)
    const r = renderDiskEvent('sb', 'resumed', 'agent resumed', '/home/u/x', 2)
    expect(r.json).toMatchObject({ severity: 'Informational', status: 'Resolved' })
    expect(r.shorthand).toMatch(/^FINDING:CLOSE \[INFO\] RESUMED/)
  })
})
