import { describe, expect, it, beforeEach, afterEach } from 'vitest'
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lockStale, tryLock, withLock, withLockSync } from '../../src/util/lockfile.js'
import { selfCreatorId } from '../../src/util/process.js'
import { PodshellError } from '../../src/errors.js'

let dir: string
let lock: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'podshell-lock-'))
  lock = join(dir, 'x.lock')
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const busy = (pid: string) => new PodshellError(`held by ${pid}`, { code: 'LOCKED' })
const age = (p: string, ms: number) => {
  const t = new Date(Date.now() - ms)
  utimesSync(p, t, t)
}

describe('lock files', () => {
  it('a free lock is taken with this process identity and released after the work', () => {
    const seen = withLockSync(lock, { waitMs: 100, pollMs: 5, busy }, () => readFileSync(lock, 'utf8').trim())
    expect(seen).toBe(selfCreatorId())
    expect(existsSync(lock)).toBe(false)
  })

  it('a live holder keeps it: the wait ends in the caller error naming its pid, and the holder lock stays', async () => {
    writeFileSync(lock, selfCreatorId() + '\n')
    expect(tryLock(lock)).toEqual({ taken: false, holder: selfCreatorId() })
    expect(() => withLockSync(lock, { waitMs: 30, pollMs: 5, busy }, () => 1)).toThrow(`held by ${process.pid}`)
    const waited: string[] = []
    await expect(withLock(lock, { waitMs: 30, pollMs: 5, busy, onWait: p => waited.push(p) }, async () => 1)).rejects.toThrow(`held by ${process.pid}`)
    expect(waited).toEqual([String(process.pid)])
    expect(existsSync(lock)).toBe(true)
    expect(lockStale(lock)).toBe(false)
  })

  it('a recycled pid is not the holder: same pid, other start time → stale, taken over', () => {
    writeFileSync(lock, `${process.pid}:1\n`)
    expect(lockStale(lock)).toBe(true)
    expect(tryLock(lock)).toEqual({ taken: true })
    expect(readFileSync(lock, 'utf8').trim()).toBe(selfCreatorId())
  })

  it('a bare pid from an older podshell, or a dead holder, is stale', () => {
    writeFileSync(lock, '999999999')
    expect(tryLock(lock).taken).toBe(true)
  })

  it('an empty lock is a holder still writing until it is 5 s old', () => {
    writeFileSync(lock, '')
    expect(tryLock(lock)).toEqual({ taken: false, holder: '' })
    age(lock, 6_000)
    expect(tryLock(lock).taken).toBe(true)
  })

  it('no lock file is not a stale lock', () => {
    expect(lockStale(lock)).toBe(false)
  })
})
