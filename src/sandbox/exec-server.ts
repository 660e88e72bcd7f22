import { chmodSync, closeSync, constants as C, copyFileSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { sandboxDir, type Env } from '../config/paths.js'
import type { SignalSource } from '../podman/interactive.js'
import { execServerStartArgs, EXECD_KEY_ENV } from '../podman/exec-args.js'
import { agentContainer } from './naming.js'
import { trace } from '../util/trace.js'
import { childProcess } from '../util/lazy-builtins.js'
import { ClientChannel, FrameDecoder, KEY_BYTES, requestPayload, SIGNAL_NUMBERS, type Frame } from './exec-frames.js'

/**
 * The host side of a sandbox's exec server (native/execd.c, which says how the channel is
 * protected; docs/architecture.md "Exec server"). Light on purpose (src/cli/fast-exec.ts loads
 * it): node builtins only.
 *
 * Nothing read from the exec dir is trusted: the agent can write there. Every path is opened with
 * O_NOFOLLOW and must be a FIFO; every frame must carry the tag of the sandbox's key (which only
 * the host and the server hold), in order, after the server's hello. Before a valid hello nothing
 * is sent, so falling back to `podman exec` never runs a command twice. What comes back is only
 * bytes for this process's stdout/stderr (as with `podman exec`) and an exit status in 0..255.
 *
 * PODSHELL_EXEC_SERVER=0 turns the server off (every exec through `podman exec`; new sandboxes
 * get no mounts for it).
 */

/** The per-sandbox dir the server listens in (host side); mounted at EXECD_MOUNT in the agent. */
export const execServerDir = (data: string, name: string) => join(sandboxDir(data, name), 'execd')
/** The sandbox's exec key (hex): in the sandbox's state dir, never mounted into a container. */
export const execServerKeyFile = (data: string, name: string) => join(sandboxDir(data, name), 'execd.key')
/** Where the agent container sees the dir and the server binary. */
export const EXECD_MOUNT = '/run/podshell-execd'
export const EXECD_BIN = '/run/podshell-execd-server'
/** The static server binary, built by `npm run build` (scripts/build-execd.mjs) when a C compiler is there. */
export const EXECD_BINARY = fileURLToPath(new URL('../../dist/podshell-execd', import.meta.url))

export const execServerEnabled = (env: Env = process.env) => env.PODSHELL_EXEC_SERVER !== '0'

/**
 * The execute-only copy of the server binary that sandboxes mount (mode 0111: the kernel then
 * makes the server non-dumpable at execve, so the agent cannot read its key from /proc). One per
 * data dir and build of the binary; made once, atomically.
 */
function executeOnlyBinary(data: string): string {
  const st = statSync(EXECD_BINARY)
  const dir = join(data, 'execd')
  const bin = join(dir, `podshell-execd-${st.size}-${Math.floor(st.mtimeMs)}`)
  if (existsSync(bin)) return bin
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const tmp = `${bin}.${process.pid}.${randomBytes(4).toString('hex')}`
  copyFileSync(EXECD_BINARY, tmp)
  chmodSync(tmp, 0o111)
  renameSync(tmp, bin)
  return bin
}

/**
 * The agent container's exec-server mounts: its dir (made here, 0700), its key (made once,
 * 0600, host only) and the execute-only binary. Undefined without the binary or when turned
 * off: that sandbox's execs all go through `podman exec`.
 */
export function prepareExecServer(data: string, name: string, env: Env = process.env): { dir: string; binary: string } | undefined {
  if (!execServerEnabled(env) || !existsSync(EXECD_BINARY)) return undefined
  const dir = execServerDir(data, name)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  try {
    writeFileSync(execServerKeyFile(data, name), randomBytes(KEY_BYTES).toString('hex'), { mode: 0o600, flag: 'wx' })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
  }
  return { dir, binary: executeOnlyBinary(data) }
}

function readKey(data: string, name: string): Buffer | undefined {
  try {
    const hex = readFileSync(execServerKeyFile(data, name), 'latin1')
    return /^[0-9a-f]{64}$/.test(hex) ? Buffer.from(hex, 'hex') : undefined
  } catch {
    return undefined
  }
}

/**
 * One exec through the sandbox's server when it answers; otherwise undefined (the caller runs
 * `podman exec`), after starting the server in the background for the next exec when the sandbox
 * has the mounts for it (a sandbox created before the server existed never gets one). A server
 * that is there but does not answer is told through `say` (the CLI's note line).
 */
export async function execThroughServer(data: string, name: string, podman: string, globalArgs: readonly string[], r: ServerExecRequest, o: { signals: SignalSource | undefined; say: (msg: string) => void }): Promise<number | undefined> {
  if (!execServerEnabled()) return undefined
  const res = await serverExec(data, name, r, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, signals: o.signals })
  if (typeof res === 'number') return res
  // Said by the caller (the CLI's note line): nothing below src/cli writes to the terminal itself.
  if (res === 'no-answer') o.say(`the exec server of sandbox ${name} did not answer (or failed authentication); using podman exec`)
  if (res === 'no-server') {
    const key = readKey(data, name)
    // Detached: it outlives this command; a second server exits at once (it holds a lock). The
    // key goes in podman's environment (`--env NAME` copies it from there), never in an argv.
    if (key)
      childProcess().spawn(podman, [...globalArgs, ...execServerStartArgs(agentContainer(name), EXECD_BIN, EXECD_MOUNT)], {
        detached: true,
        stdio: 'ignore',
        env: { ...process.env, [EXECD_KEY_ENV]: key.toString('hex') },
      }).unref()
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
/** Grace between TERM and KILL when --timeout ends an exec (as the podman exec path: issue 9). */
const TIMEOUT_GRACE_S = 2

function openFifo(path: string, flags: number): number | 'retry' {
  let fd: number
  try {
    fd = openSync(path, flags | C.O_NOFOLLOW | C.O_NONBLOCK)
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

/** The server's hello, checked: undefined when none came in time, 'forged' when it failed its tag. */
function awaitHello(from: Socket, dec: FrameDecoder, ch: ClientChannel, ms: number): Promise<Frame[] | 'forged' | undefined> {
  return new Promise(resolve => {
    const done = (v: Frame[] | 'forged' | undefined) => {
      clearTimeout(t)
      from.off('data', onData)
      from.off('close', onClose)
      from.pause()
      resolve(v)
    }
    const onData = (chunk: Buffer) => {
      try {
        const frames = dec.push(chunk)
        if (!frames.length) return
        ch.accept(frames[0]!)
        // Anything after the hello is checked by the session, in order.
        done(frames.slice(1))
      } catch {
        done('forged')
      }
    }
    const onClose = () => done(undefined)
    const t = setTimeout(() => done(undefined), ms)
    from.on('data', onData)
    from.on('close', onClose)
  })
}

/**
 * Runs one exec through the server. Resolves with the exit code, or with a ServerUnavailable
 * reason before anything ran (the request is sent only after the server's hello checked out, so
 * a fallback never runs the command twice).
 */
export async function serverExec(data: string, name: string, r: ServerExecRequest, io: ServerExecIO): Promise<number | ServerUnavailable> {
  const dir = execServerDir(data, name)
  const key = readKey(data, name)
  if (!key || !existsSync(dir)) return 'no-dir'
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
  trace('exec server: channel open')
  const toServer = new Socket({ fd: inFd, readable: false, writable: true })
  const fromServer = new Socket({ fd: outFd, readable: true, writable: false })
  toServer.on('error', () => undefined)
  fromServer.on('error', () => undefined)
  const ch = new ClientChannel(key, id)
  const dec = new FrameDecoder()
  const early = await awaitHello(fromServer, dec, ch, Math.max(0, deadline - Date.now()))
  if (!Array.isArray(early)) {
    toServer.destroy()
    fromServer.destroy()
    if (early === 'forged') await auditForged(data, name, 'hello')
    return 'no-answer'
  }
  trace('exec server: hello checked')
  const code = await runSession(toServer, fromServer, ch, dec, early, r, io)
  if (code === 'forged') {
    await auditForged(data, name, 'session')
    return 255
  }
  return code
}

/**
 * Something in the sandbox answered in the exec server's place without its key: recorded in the
 * sandbox's retained audit log (loaded only then: the fast path stays small).
 */
async function auditForged(data: string, name: string, stage: 'hello' | 'session'): Promise<void> {
  const { appendRetained } = await import('../gateway/audit.js')
  appendRetained(data, name, { event: 'exec_server_forged', stage, message: 'a frame on the exec server channel failed authentication (a process in the sandbox posing as the exec server)' })
}

/**
 * One exec session over the channel: the request, then stdin, terminal size, signals and the
 * timeout out; stdout, stderr and the exit status in. Long by design: every handler shares the
 * session's state (raw mode, the timer, `finished`) and `finish` must undo each of them exactly
 * once; split into functions, that state would travel as a bag of mutable fields.
 */
function runSession(toServer: Socket, fromServer: Socket, ch: ClientChannel, dec: FrameDecoder, early: Frame[], r: ServerExecRequest, io: ServerExecIO): Promise<number | 'forged'> {
  return new Promise(resolve => {
    const rows = io.stdout.rows ?? 24
    const cols = io.stdout.columns ?? 80
    const send = (type: string, payload?: Buffer | string) => {
      if (!toServer.destroyed) toServer.write(ch.seal(type, payload))
    }
    send('R', requestPayload({ tty: r.tty, rows, cols, cwd: r.workdir, command: r.command, env: r.env }))

    const raw = r.tty && io.stdin.isTTY === true && typeof io.stdin.setRawMode === 'function'
    if (raw) {
      io.stdin.setRawMode!(true)
      // libuv's raw mode keeps output processing (ONLCR): the sandbox's terminal already turned
      // "\n" into "\r\n", so this one must pass bytes as they are, as `podman exec -t` does.
      // setRawMode(false) restores the settings libuv saved before.
      if (io.stdin === process.stdin) childProcess().spawnSync('stty', ['-opost'], { stdio: ['inherit', 'ignore', 'ignore'] })
    }
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
    const timer =
      r.timeoutSeconds && r.timeoutSeconds > 0
        ? setTimeout(() => {
            // Every process the exec started: TERM, KILL after the grace (issue 9); the server
            // answers with the exit status once they are all gone.
            timedOut = true
            send('K', Buffer.from([TIMEOUT_GRACE_S]))
          }, r.timeoutSeconds * 1000)
        : undefined

    let finished = false
    const finish = (code: number | 'forged') => {
      if (finished) return
      finished = true
      if (timer) clearTimeout(timer)
      for (const [sig, h] of handlers) io.signals?.off(sig, h)
      io.stdin.off('data', onData)
      io.stdin.off('end', onEnd)
      if (r.tty) io.stdout.off('resize', onResize)
      if (raw) io.stdin.setRawMode!(false)
      io.stdin.pause()
      toServer.destroy()
      fromServer.destroy()
      resolve(timedOut && code !== 'forged' ? 124 : code)
    }
    const handle = (frames: Frame[]) => {
      for (const f0 of frames) {
        let f: Frame
        try {
          f = ch.accept(f0)
        } catch (e) {
          io.stderr.write(`podshell: ${(e as Error).message}\n`)
          return finish('forged')
        }
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
    }
    fromServer.on('data', (chunk: Buffer) => {
      let frames
      try {
        frames = dec.push(chunk)
      } catch (e) {
        io.stderr.write(`podshell: ${(e as Error).message}\n`)
        return finish(255)
      }
      handle(frames)
    })
    fromServer.on('close', () => {
      if (!finished) io.stderr.write('podshell: the exec server ended the session without an exit status\n')
      finish(255)
    })
    handle(early)
    fromServer.resume()
  })
}
