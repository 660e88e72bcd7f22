import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { hostDir } from '../helpers/cli.js'

/**
 * The watcher daemon (one process per user and data dir serving every sandbox, src/watch/lifecycle.ts)
 * driven through the runtime's own hook (dist/), without containers: a write on the host tree is the
 * same inotify event as the agent's write through the bind mount. What sharing one process must not
 * lose: each sandbox's findings go to its own log; a daemon never serves a sandbox of another data
 * dir, even when a want file names one; one sandbox flooding the daemon with events does not stop it
 * from protecting another.
 */

type Lifecycle = typeof import('../../src/watch/lifecycle.js')
let watchHook: Lifecycle['watchHook']

const GIT_ENV = { GIT_CONFIG_NOSYSTEM: '1' }
const PLANT = `[core]\n\trepositoryformatversion = 0\n\tfsmonitor = touch /tmp/podshell-daemon-ran #\n`

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`)
    await new Promise(r => setTimeout(r, 20))
  }
}

const read = (p: string) => {
  try {
    return readFileSync(p, 'utf8')
  } catch {
    return ''
  }
}
const log = (data: string, name: string) => read(join(data, 'quarantine', name, 'watch.log'))
const servedBy = (data: string, name: string) => read(join(data, 'sandboxes', name, 'watch', 'watcher.pid')).trim()
const daemonOf = (data: string) => read(join(data, 'watchd', 'pid')).trim()

/** A sandbox as the watcher sees it: a state dir and one writable root, a git repo. */
async function sandbox(data: string, name: string): Promise<string> {
  const root = hostDir(`wd-${name}`)
  expect((await execa('git', ['init', '-q', root], { env: { ...process.env, ...GIT_ENV } })).exitCode).toBe(0)
  mkdirSync(join(data, 'sandboxes', name), { recursive: true })
  await watchHook(data, name, 'create', { mounts: [{ source: root, mode: 'rw' }], env: { ...process.env, PODSHELL_HOME: data } })
  return root
}

const d1 = hostDir('wd-data1')
const d2 = hostDir('wd-data2')
let a = ''
let b = ''
let c = ''
const flooders: ChildProcess[] = []

beforeAll(async () => {
  ;({ watchHook } = (await import('../../dist/watch/lifecycle.js')) as Lifecycle)
  a = await sandbox(d1, 'wd-a')
  b = await sandbox(d1, 'wd-b')
  c = await sandbox(d2, 'wd-c')
})

afterAll(async () => {
  for (const f of flooders) f.kill('SIGKILL')
  for (const [d, n] of [[d1, 'wd-a'], [d1, 'wd-b'], [d2, 'wd-c']] as const) await watchHook(d, n, 'delete', {})
})

describe('one watcher daemon per data dir', () => {
  it('two sandboxes of a data dir share its daemon; another data dir has its own; a plant is fixed and logged in its own sandbox only', async () => {
    const one = daemonOf(d1)
    expect(one).toMatch(/^\d+:\d+$/)
    expect(servedBy(d1, 'wd-a')).toBe(one)
    expect(servedBy(d1, 'wd-b')).toBe(one)
    expect(daemonOf(d2)).toMatch(/^\d+:\d+$/)
    expect(daemonOf(d2)).not.toBe(one)
    expect(servedBy(d2, 'wd-c')).toBe(daemonOf(d2))
    writeFileSync(join(b, '.git', 'config'), PLANT)
    await until("wd-b's fsmonitor removed", () => !read(join(b, '.git', 'config')).includes('fsmonitor'))
    await until("wd-b's log", () => log(d1, 'wd-b').includes('fsmonitor'))
    expect(log(d1, 'wd-a')).not.toContain('fsmonitor')
    expect(log(d2, 'wd-c')).not.toContain('fsmonitor')
  })

  it("a want file naming another data dir's sandbox: the daemon does not serve it (nothing of that name in its own data dir) and removes the want", async () => {
    const one = daemonOf(d1)
    // wd-c exists only in d2; a want for it appears in d1 (as a confused or hostile writer would make).
    writeFileSync(join(d1, 'watchd', 'want', 'wd-c'), JSON.stringify({ patterns: [], errors: [], reserve: { bytes: 0 } }) + '\n')
    writeFileSync(join(d1, 'watchd', 'want', '..bad'), '{}\n')
    await until('the stray want removed', () => !existsSync(join(d1, 'watchd', 'want', 'wd-c')))
    expect(existsSync(join(d1, 'sandboxes', 'wd-c'))).toBe(false) // not resurrected
    expect(servedBy(d2, 'wd-c')).toBe(daemonOf(d2))
    expect(servedBy(d2, 'wd-c')).not.toBe(one)
    // wd-c is still protected by its own daemon, and its fix logged in d2 only.
    writeFileSync(join(c, '.git', 'config'), PLANT)
    await until("wd-c's fsmonitor removed", () => !read(join(c, '.git', 'config')).includes('fsmonitor'))
    await until("wd-c's log in d2", () => log(d2, 'wd-c').includes('fsmonitor'))
    expect(existsSync(join(d1, 'quarantine', 'wd-c'))).toBe(false)
  })

  it('sandbox A creating files in a tight loop (two processes): the shared daemon still fixes a plant in sandbox B, logged in B', async () => {
    const before = log(d1, 'wd-b').split('\n').filter(l => l.includes('fsmonitor')).length
    const flood = `const fs = require('fs'); const d = process.argv[1]; let i = 0; for (;;) { const p = d + '/f' + (i % 4096); fs.writeFileSync(p, 'x'); if (i % 2) fs.unlinkSync(p); i++ }`
    for (const k of [0, 1]) {
      mkdirSync(join(a, `flood${k}`))
      flooders.push(spawn(process.execPath, ['-e', flood, join(a, `flood${k}`)], { stdio: 'ignore' }))
    }
    await new Promise(r => setTimeout(r, 1500))
    for (let i = 0; i < 3; i++) {
      writeFileSync(join(b, '.git', 'config'), PLANT)
      await until(`wd-b's fsmonitor removed during the flood (${i})`, () => !read(join(b, '.git', 'config')).includes('fsmonitor'))
    }
    for (const f of flooders) f.kill('SIGKILL')
    await until("wd-b's log", () => log(d1, 'wd-b').split('\n').filter(l => l.includes('fsmonitor')).length >= before + 3)
    expect(log(d1, 'wd-a')).not.toContain('fsmonitor')
    expect(servedBy(d1, 'wd-b')).toBe(daemonOf(d1)) // the same daemon, not a replacement
  })
})
