import { describe, it, expect } from 'vitest'
import { spawn } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { ExecSessionProcesses } from '../../src/sandbox/signals.js'

/**
 * The exec-session process set on real host processes (no container): a session leader carrying
 * the marker, as runc makes every exec'd command, whose children drop the environment.
 */
function alive(tag: string): boolean {
  return readdirSync('/proc').filter(p => /^\d+$/.test(p)).some(p => {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'latin1')
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
      return cmd.includes(tag) && !/\) Z /.test(stat)
    } catch {
      return false
    }
  })
}

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms
  while (!cond() && Date.now() < end) await new Promise(r => setTimeout(r, 20))
  return cond()
}

describe('exec session processes', () => {
  it('children that drop the marker (env -i) and setsid children are members; SIGKILL ends them all', async () => {
    const marker = `t${process.pid}${Date.now()}`
    const t = String(Date.now() % 100000)
    // detached: the root is a session leader, like an exec'd command under runc.
    const root = spawn('sh', ['-c', `env -i sleep 61${t} & setsid sleep 62${t} & sleep 63${t}`], { detached: true, stdio: 'ignore', env: { ...process.env, PODSHELL_EXEC_ID: marker } })
    expect(await until(() => alive(`61${t}`) && alive(`62${t}`) && alive(`63${t}`))).toBe(true)
    const procs = new ExecSessionProcesses(marker)
    const members = procs.members()
    expect(members).toContain(root.pid)
    expect(members).not.toContain(process.pid)
    procs.signal('SIGKILL')
    expect(await until(() => !alive(`61${t}`) && !alive(`62${t}`) && !alive(`63${t}`))).toBe(true)
  })

  it('processes of other sessions without the marker are not members', async () => {
    const t = String(Date.now() % 100000)
    const other = spawn('sleep', [`64${t}`], { detached: true, stdio: 'ignore' })
    try {
      expect(await until(() => alive(`64${t}`))).toBe(true)
      expect(new ExecSessionProcesses('no-such-marker').members()).not.toContain(other.pid)
    } finally {
      other.kill('SIGKILL')
    }
  })
})
