import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { connect } from 'node:net'
import { z } from 'zod'
import { sandboxDir } from '../config/paths.js'
import { listStateDirs } from '../sandbox/state.js'
import { writeFileAtomic, mkdirp } from '../util/fs.js'
import { creatorAlive } from '../util/process.js'

/**
 * Background forwards are remembered in the sandbox's state dir (`forwards/<port>.json`: the
 * serving process's identity, bind address and port), so deleting the sandbox's state removes
 * them, and the serving process, which checks for its file every second, ends. What `forward
 * list` shows is checked, not remembered: a record counts only while its process is alive (pid and
 * start time) AND its port accepts a connection; a record whose process is gone is removed.
 */
export const ForwardRecord = z.strictObject({
  sandbox: z.string(),
  bind: z.string(),
  port: z.number().int().min(1).max(65535),
  /** selfCreatorId() of the serving process. */
  process: z.string(),
  pid: z.number().int(),
  started_at: z.string(),
})
export type ForwardRecord = z.infer<typeof ForwardRecord>

export const forwardsDir = (data: string, name: string) => join(sandboxDir(data, name), 'forwards')
export const forwardFile = (data: string, name: string, port: number) => join(forwardsDir(data, name), `${port}.json`)

export function writeForward(data: string, r: ForwardRecord): void {
  mkdirp(forwardsDir(data, r.sandbox), 0o700)
  writeFileAtomic(forwardFile(data, r.sandbox, r.port), JSON.stringify(r) + '\n')
}

export function readForward(data: string, name: string, port: number): ForwardRecord | undefined {
  try {
    const r = ForwardRecord.safeParse(JSON.parse(readFileSync(forwardFile(data, name, port), 'utf8')))
    return r.success ? r.data : undefined
  } catch {
    return undefined
  }
}

export function removeForward(data: string, name: string, port: number): void {
  rmSync(forwardFile(data, name, port), { force: true })
}

/** Every record (of every sandbox, or of one), with dead ones removed. */
export function forwardRecords(data: string, only?: string): ForwardRecord[] {
  const out: ForwardRecord[] = []
  for (const name of only ? [only] : listStateDirs(data)) {
    let files: string[]
    try {
      files = readdirSync(forwardsDir(data, name))
    } catch {
      continue
    }
    for (const f of files) {
      const m = /^(\d{1,5})\.json$/.exec(f)
      if (!m) continue
      const r = readForward(data, name, Number(m[1]))
      if (!r || !forwardAlive(r)) {
        removeForward(data, name, Number(m[1]))
        continue
      }
      out.push(r)
    }
  }
  return out.sort((a, b) => a.sandbox.localeCompare(b.sandbox) || a.port - b.port)
}

/** Whether something accepts TCP connections on bind:port (wildcard binds are probed on loopback). */
export function listening(bind: string, port: number, timeoutMs = 1000): Promise<boolean> {
  const host = bind === '0.0.0.0' ? '127.0.0.1' : bind === '::' ? '::1' : bind
  return new Promise(resolve => {
    const s = connect({ host, port })
    const done = (ok: boolean) => {
      s.destroy()
      resolve(ok)
    }
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
    s.setTimeout(timeoutMs, () => done(false))
  })
}

/** The serving process runs: same pid and start time, and not a zombie nobody reaped yet. */
export function forwardAlive(r: ForwardRecord): boolean {
  if (!creatorAlive(r.process)) return false
  try {
    const stat = readFileSync(`/proc/${r.pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}
