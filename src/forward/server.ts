import { createServer, type Server, type Socket } from 'node:net'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import type { Podman } from '../podman/podman.js'
import { infraContainer } from '../sandbox/naming.js'
import { sandboxDir } from '../config/paths.js'
import { selfCreatorId } from '../util/process.js'
import { readForward, removeForward, writeForward } from './state.js'

/**
 * A port forward: a TCP listener on the host (loopback unless an address is given) whose every
 * connection is relayed to 127.0.0.1:PORT inside the sandbox's network namespace.
 *
 * The relay of one connection is `podman unshare nsenter --net=/proc/<infra pid>/ns/net socat
 * STDIO TCP:127.0.0.1:PORT`: the host's socat, run in rootless Podman's user namespace (whose
 * root may enter the pod's network namespace) and in the pod's network namespace only. Nothing
 * changes for the sandbox: it keeps only `lo`, gains no route and no egress; the connection is
 * made from inside its namespace to its own loopback, as a local client would. Nothing of the
 * sandbox's images is used (an agent image without socat works, and a killed bridge container
 * does not matter): the infra container's pid is looked up per connection, so a restarted
 * sandbox is reached again without restarting the forward.
 *
 * A background forward records itself (state.ts) and ends when its record goes: `forward stop`,
 * `sandbox delete` (which stops its forwards and removes the state dir) or a record replaced by
 * another process. Nothing here installs signal handlers or exits the process: the caller does.
 */
export interface ForwardOptions {
  podman: Podman
  dataDir: string
  sandbox: string
  bind: string
  port: number
  /** Record the forward for `forward list|stop` (background forwards). */
  record: boolean
  log: (line: string) => void
}

export interface RunningForward {
  server: Server
  /** Resolves when the forward has stopped (closed, or its record is gone). */
  stopped: Promise<void>
  close(): Promise<void>
}

export async function startForward(o: ForwardOptions): Promise<RunningForward> {
  const sockets = new Set<Socket>()
  const server = createServer(socket => relay(o, socket, sockets))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: o.bind, port: o.port, exclusive: true }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const me = selfCreatorId()
  if (o.record) writeForward(o.dataDir, { sandbox: o.sandbox, bind: o.bind, port: o.port, process: me, pid: process.pid, started_at: new Date().toISOString() })
  let closing: Promise<void> | undefined
  let resolveStopped!: () => void
  const stopped = new Promise<void>(r => (resolveStopped = r))
  const close = () => {
    closing ??= (async () => {
      clearInterval(watch)
      for (const s of sockets) s.destroy()
      await new Promise<void>(r => server.close(() => r()))
      const rec = o.record ? readForward(o.dataDir, o.sandbox, o.port) : undefined
      if (rec && rec.process === me) removeForward(o.dataDir, o.sandbox, o.port)
      resolveStopped()
    })()
    return closing
  }
  // The record is the forward's lease: gone (stopped, sandbox deleted) or taken over → stop.
  const watch = setInterval(() => {
    const gone = !existsSync(sandboxDir(o.dataDir, o.sandbox)) || (o.record && readForward(o.dataDir, o.sandbox, o.port)?.process !== me)
    if (gone) {
      o.log(`forward of port ${o.port}: ${existsSync(sandboxDir(o.dataDir, o.sandbox)) ? 'record removed' : 'sandbox deleted'}; stopping`)
      void close()
    }
  }, 1000)
  watch.unref()
  return { server, stopped, close }
}

function relay(o: ForwardOptions, socket: Socket, sockets: Set<Socket>): void {
  sockets.add(socket)
  socket.pause()
  let child: ReturnType<typeof spawn> | undefined
  const end = () => {
    sockets.delete(socket)
    socket.destroy()
    if (child && child.exitCode === null) child.kill('SIGTERM')
  }
  socket.on('close', end)
  socket.on('error', end)
  void (async () => {
    const pid = await infraPid(o.podman, o.sandbox)
    if (socket.destroyed) return
    if (!pid) {
      o.log(`forward of port ${o.port}: sandbox ${o.sandbox} is not running; connection refused`)
      return end()
    }
    const { file, args } = o.podman.spawnArgs(['unshare', 'nsenter', `--net=/proc/${pid}/ns/net`, 'socat', 'STDIO', `TCP:127.0.0.1:${o.port}`])
    // `podman unshare` takes no --runtime; spawnArgs puts global flags first, which unshare accepts.
    child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    child.stderr!.on('data', (d: Buffer) => o.log(`forward of port ${o.port}: ${d.toString('utf8').trim().slice(0, 300)}`))
    child.on('error', end)
    child.on('close', end)
    child.stdin!.on('error', () => undefined)
    socket.pipe(child.stdin!)
    child.stdout!.pipe(socket)
    socket.resume()
  })()
}

/** The pid of the pod's infra process (the owner of its network namespace), or undefined. */
async function infraPid(podman: Podman, sandbox: string): Promise<number | undefined> {
  const r = await podman.run(['inspect', '--format', '{{.State.Pid}}', infraContainer(sandbox)], { reject: false })
  const pid = Number(r.stdout.trim())
  return r.exitCode === 0 && Number.isInteger(pid) && pid > 0 ? pid : undefined
}
