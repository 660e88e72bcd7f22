import { spawn } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'
import { creatorAlive, creatorIdOf } from '../../src/util/process.js'
import { mkdtempSync, mkdirSync, existsSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { handOverOperation, markOperation, operationState } from '../../src/sandbox/state.js'

/**
 * Operation markers name a process by pid and start time (src/util/process.ts). A `--no-keep`
 * teardown is a detached process: killed, it is reparented and may stay a zombie until its new
 * parent reaps it. A zombie does no work: its marker must count as an interrupted operation.
 */
let parent: ReturnType<typeof spawn> | undefined
afterEach(() => {
  parent?.kill('SIGKILL')
  parent = undefined
})

const state = async (pid: number): Promise<string> => {
  const { readFileSync } = await import('node:fs')
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!
}

describe('creatorAlive', () => {
  it('a running process is alive; killed and not yet reaped (a zombie) it is not', async () => {
    // sh starts a child, prints its pid and becomes `sleep`, which never reaps it.
    parent = spawn('sh', ['-c', 'sleep 60 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] })
    const pid = await new Promise<number>(resolve => parent!.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))))
    const id = creatorIdOf(pid)
    expect(creatorAlive(id)).toBe(true)
    // Until sh has exec'd `sleep` it still reaps its children: kill only once the parent is sleep
    // (under load the pid arrives before the exec; sh then reaped the child and the test saw no zombie).
    const { readFileSync } = await import('node:fs')
    const parentComm = () => readFileSync(`/proc/${parent!.pid}/comm`, 'utf8').trim()
    for (let i = 0; i < 250 && parentComm() !== 'sleep'; i++) await new Promise(r => setTimeout(r, 20))
    expect(parentComm()).toBe('sleep')
    process.kill(pid, 'SIGKILL')
    for (let i = 0; i < 100 && (await state(pid)) !== 'Z'; i++) await new Promise(r => setTimeout(r, 20))
    expect(await state(pid)).toBe('Z') // still in the process table
    expect(creatorAlive(id)).toBe(false)
  })

  it('a pid whose start time differs (recycled) or that does not exist is not alive', () => {
    expect(creatorAlive(`${process.pid}:1`)).toBe(false)
    expect(creatorAlive(creatorIdOf(process.pid))).toBe(true)
    expect(creatorAlive('999999999:5')).toBe(false)
    expect(creatorAlive(undefined)).toBe(false)
  })
})

describe('handOverOperation', () => {
  it('renames the marker to the new owner while the state dir exists, and never re-creates a removed one', async () => {
    const data = mkdtempSync(join(tmpdir(), 'psh-handover-'))
    try {
      mkdirSync(join(data, 'sandboxes', 's1'), { recursive: true })
      markOperation(data, 's1')
      expect(operationState(data, 's1')).toBe('running')
      // A finished process as the new owner: the operation now counts as interrupted.
      const child = spawn('true')
      const pid = child.pid!
      const id = creatorIdOf(pid)
      await new Promise(r => child.once('exit', r))
      handOverOperation(data, 's1', id)
      expect(operationState(data, 's1')).toBe('interrupted')
      expect(readdirSync(join(data, 'sandboxes', 's1'))).toEqual(['creator'])
      // The new owner removed the state dir first: nothing comes back.
      rmSync(join(data, 'sandboxes', 's1'), { recursive: true })
      expect(() => handOverOperation(data, 's1', creatorIdOf(process.pid))).toThrow(/operation marker of sandbox s1/)
      expect(existsSync(join(data, 'sandboxes', 's1'))).toBe(false)
    } finally {
      rmSync(data, { recursive: true, force: true })
    }
  })
})
