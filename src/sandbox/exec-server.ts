import { spawn } from 'node:child_process'
import { closeSync, constants as C, existsSync, fstatSync, mkdirSync, openSync, writeSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { sandboxDir } from '../config/paths.js'
import type { SignalSource } from '../podman/interactive.js'
import { execServerStartArgs } from '../podman/exec-args.js'
import { agentContainer } from './naming.js'
import { encodeFrame, encodeRequest, FrameDecoder, SIGNAL_NUMBERS } from './exec-frames.js'

/**
 * The host side of a sandbox's exec server (native/execd.c; docs/architecture.md "Exec server").
 * Light on purpose (src/cli/fast-exec.ts loads it): node builtins only.
 *
 * Nothing read from the exec dir is trusted: the agent can write there. Every path is opened with
 * O_NOFOLLOW and must be a FIFO; what comes back is only bytes for this process's stdout/stderr
 * (as with `podman exec`) and an exit status in 0..255; frames are bounded (MAX_FRAME).
 */

/** The per-sandbox dir the server listens in (host side); mounted at EXECD_MOUNT in the agent. */
export const execServerDir = (data: string, name: string) => join(sandboxDir(data, name), 'execd')
/** Where the agent container sees the dir and the server binary. */
export const EXECD_MOUNT = '/run/podshell-execd'
export const EXECD_BIN = '/run/podshell-execd-server'
/** The static server binary, built by `npm run build` (scripts/build-execd.mjs) when a C compiler is there. */
export const EXECD_BINARY = fileURLToPath(new URL('../../dist/podshell-execd', import.meta.url))

/**
 * The agent container's exec-server mounts: its dir (made here, 0700) and the binary. Undefined
 * without the binary: that sandbox's execs all go through `podman exec`.
 */
export function prepareExecServer(data: string, name: string): { dir: string; binary: string } | undefined {
  if (!existsSync(EXECD_BINARY)) return undefined
  const dir = execServerDir(data, name)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  return { dir, binary: EXECD_BINARY }
}

/**
 * One exec through the sandbox's server when it answers; otherwise undefined (the caller runs
 * `podman exec`), after starting the server in the background for the next exec when the sandbox
 * has the mounts for it (a sandbox created before the server existed never gets one).
 */
export async function execThroughServer(data: string, name: string, podman: string, globalArgs: readonly string[], r: ServerExecRequest, signals: SignalSource | undefined): Promise<number | undefined> {
  const res = await serverExec(data, name, r, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, signals })
  if (typeof res === 'number') return res
  if (res === 'no-answer') process.stderr.write(`podshell: the exec server of sandbox ${name} did not answer; using podman exec\n`)
  if (res === 'no-server') {
    // Detached: it outlives this command; a second server exits at once (it holds a lock).
    spawn(podman, [...globalArgs, ...execServerStartArgs(agentContainer(name), EXECD_BIN, EXECD_MOUNT)], { detached: true, stdio: 'ignore' }).unref()
  }
  return undefined
}

export interface ServerExecRequest {
  command: readonly string[]
  tty: boolean
  workdir?: string | undefined
  env: Readonly<Record<string, string>>
  timeoutSeconds?: number | undefined
}

export interface ServerExecIO {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown }
  stdout: NodeJS.WritableStream & { rows?: number; columns?: number; on(ev: 'resize', f: () => void): unknown; off(ev: 'resize', f: () => void): unknown }
  stderr: NodeJS.WritableStream
  signals?: SignalSource | undefined
}

/** Why the server path was not taken: the caller falls back to `podman exec`. */
export type ServerUnavailable = 'no-dir' | 'no-server' | 'no-answer'

const HANDSHAKE_MS = 2000

function openFifo(path: string, flags: number): number | 'retry' {
  let fd: number
  try {
    fd = openSync(path, flags | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_CLOEXEC)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENXIO') return 'retry'
    throw e
  }
  if (!fstatSync(fd).isFIFO()) {
    closeSync(fd)
    throw new Error(`${path} is not a FIFO`)
  }
  return fd
}

/**
 * Runs one exec through the server. Resolves with the exit code, or with a ServerUnavailable
 * reason before anything ran (the command runs only once the request frame is sent, so a
 * fallback never runs it twice).
 */
export async function serverExec(data: string, name: string, r: ServerExecRequest, io: ServerExecIO): Promise<number | ServerUnavailable> {
  const dir = execServerDir(data, name)
  if (!existsSync(dir)) return 'no-dir'
  let req: number | 'retry'
  try {
    req = openFifo(join(dir, 'req'), C.O_WRONLY)
  } catch {
    return 'no-server'
  }
  if (req === 'retry') return 'no-server'
  const id = randomBytes(16).toString('hex')
  try {
    writeSync(req, `${id}\n`)
  } catch {
    return 'no-server'
  } finally {
    closeSync(req)
  }
  const deadline = Date.now() + HANDSHAKE_MS
  let inFd: number | 'retry' = 'retry'
  let outFd: number | 'retry' = 'retry'
  try {
    while (inFd === 'retry' || outFd === 'retry') {
      if (inFd === 'retry') inFd = openFifo(join(dir, `${id}.i`), C.O_WRONLY)
      if (inFd !== 'retry') outFd = openFifo(join(dir, `${id}.o`), C.O_RDONLY)
      if (inFd === 'retry' || outFd === 'retry') {
        if (Date.now() > deadline) {
          if (inFd !== 'retry') closeSync(inFd)
          return 'no-answer'
        }
        await new Promise(res => setTimeout(res, 1))
      }
    }
  } catch {
    if (typeof inFd === 'number') closeSync(inFd)
    return 'no-answer'
  }
  return runSession(new Socket({ fd: inFd, readable: false, writable: true }), new Socket({ fd: outFd, readable: true, writable: false }), r, io)
}

function runSession(toServer: Socket, fromServer: Socket, r: ServerExecRequest, io: ServerExecIO): Promise<number> {
  return new Promise(resolve => {
    const rows = io.stdout.rows ?? 24
    const cols = io.stdout.columns ?? 80
    const send = (type: string, payload?: Buffer | string) => {
      if (!toServer.destroyed) toServer.write(encodeFrame(type, payload))
    }
    toServer.on('error', () => undefined)
    toServer.write(encodeRequest({ tty: r.tty, rows, cols, cwd: r.workdir, command: r.command, env: r.env }))

    const raw = r.tty && io.stdin.isTTY === true && typeof io.stdin.setRawMode === 'function'
    if (raw) io.stdin.setRawMode!(true)
    const onData = (d: Buffer | string) => {
      const b = typeof d === 'string' ? Buffer.from(d) : d
      for (let o = 0; o < b.length; o += 65536) send('I', b.subarray(o, o + 65536))
    }
    const onEnd = () => send('E')
    io.stdin.on('data', onData)
    io.stdin.on('end', onEnd)
    const onResize = () => {
      const w = Buffer.alloc(4)
      w.writeUInt16BE(Math.min(io.stdout.rows ?? 24, 65535), 0)
      w.writeUInt16BE(Math.min(io.stdout.columns ?? 80, 65535), 2)
      send('W', w)
    }
    if (r.tty) io.stdout.on('resize', onResize)
    const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
    const handlers = sigs.map(sig => {
      const h = () => send('S', Buffer.from([SIGNAL_NUMBERS[sig]!]))
      io.signals?.on(sig, h)
      return [sig, h] as const
    })
    let timedOut = false
    let killTimer: NodeJS.Timeout | undefined
    const timer =
      r.timeoutSeconds && r.timeoutSeconds > 0
        ? setTimeout(() => {
            // Every process of the exec's session: TERM, then KILL (issue 9).
            timedOut = true
            send('K', Buffer.from([15]))
            killTimer = setTimeout(() => send('K', Buffer.from([9])), 2000)
          }, r.timeoutSeconds * 1000)
        : undefined

    let finished = false
    const finish = (code: number) => {
      if (finished) return
      finished = true
      if (timer) clearTimeout(timer)
      if (killTimer) clearTimeout(killTimer)
      for (const [sig, h] of handlers) io.signals?.off(sig, h)
      io.stdin.off('data', onData)
      io.stdin.off('end', onEnd)
      if (r.tty) io.stdout.off('resize', onResize)
      if (raw) io.stdin.setRawMode!(false)
      io.stdin.pause()
      toServer.destroy()
      fromServer.destroy()
      resolve(timedOut ? 124 : code)
    }
    const dec = new FrameDecoder()
    fromServer.on('data', (chunk: Buffer) => {
      let frames
      try {
        frames = dec.push(chunk)
      } catch (e) {
        io.stderr.write(`podshell: ${(e as Error).message}\n`)
        return finish(255)
      }
      for (const f of frames) {
        if (f.type === 'O') {
          if (!io.stdout.write(f.payload)) {
            fromServer.pause()
            io.stdout.once('drain', () => fromServer.resume())
          }
        } else if (f.type === 'X') io.stderr.write(f.payload)
        else if (f.type === 'Z' && f.payload.length === 4) {
          const code = f.payload.readUInt32BE(0)
          return finish(code <= 255 ? code : 255)
        }
      }
    })
    fromServer.on('error', () => undefined)
    fromServer.on('close', () => {
      if (!finished) io.stderr.write('podshell: the exec server ended the session without an exit status\n')
      finish(255)
    })
  })
}
