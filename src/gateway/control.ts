/**
 * The gateway's control socket: one JSON request per line from the CLI (`podshell policy set`,
 * `provider update`, create/delete, stats), one JSON reply per line. The socket is 0600 in the
 * gateway's own dir (no sandbox mounts it); a line over MAX_CONTROL_LINE ends the connection. This
 * module parses and dispatches; the gateway (src/gateway/server.ts) acts.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { chmodSync, lstatSync, unlinkSync } from 'node:fs'
import type { PingResult, ReloadResult, StatsResult } from './client.js'

const MAX_CONTROL_LINE = 64 * 1024

/** What the control socket drives. */
export interface ControlTarget {
  ping(): PingResult
  stats(): StatsResult
  reload(name: string): Promise<ReloadResult>
  remove(name: string): Promise<boolean>
  /** Number of values held, or undefined: no such sandbox. */
  setCredentials(name: string, list: readonly unknown[], line: string): Promise<number | undefined>
  rotateCredentials(provider: string, values: Record<string, unknown>, line: string): Promise<number>
  dropCredentials(provider: string, line: string): Promise<number>
}

/** One control request → one reply object. Never throws. */
export async function handleControlLine(t: ControlTarget, line: string): Promise<Record<string, unknown>> {
  let req: { id?: unknown; op?: unknown; sandbox?: unknown }
  try {
    req = JSON.parse(line) as typeof req
  } catch {
    return { ok: false, error: 'invalid JSON' }
  }
  const id = typeof req.id === 'number' ? req.id : null
  try {
    switch (req.op) {
      case 'ping':
        return { id, ok: true, ...t.ping() }
      case 'stats':
        return { id, ok: true, ...t.stats() }
      case 'reload':
        if (typeof req.sandbox !== 'string') return { id, ok: false, error: 'sandbox is required' }
        return { id, ok: true, ...(await t.reload(req.sandbox)) }
      case 'credentials': {
        if (typeof req.sandbox !== 'string') return { id, ok: false, error: 'sandbox is required' }
        const list = (req as { credentials?: unknown }).credentials
        if (!Array.isArray(list)) return { id, ok: false, error: 'credentials must be a list' }
        const held = await t.setCredentials(req.sandbox, list as unknown[], line)
        if (held === undefined) return { id, ok: false, error: `no sandbox ${req.sandbox}` }
        return { id, ok: true, held }
      }
      case 'credentials-rotate': {
        const r = req as { provider?: unknown; values?: unknown }
        if (typeof r.provider !== 'string' || typeof r.values !== 'object' || r.values === null)
          return { id, ok: false, error: 'provider and values are required' }
        return { id, ok: true, rotated: await t.rotateCredentials(r.provider, r.values as Record<string, unknown>, line) }
      }
      case 'credentials-drop': {
        const provider = (req as { provider?: unknown }).provider
        if (typeof provider !== 'string') return { id, ok: false, error: 'provider is required' }
        return { id, ok: true, dropped: await t.dropCredentials(provider, line) }
      }
      case 'remove':
        if (typeof req.sandbox !== 'string') return { id, ok: false, error: 'sandbox is required' }
        return { id, ok: true, removed: await t.remove(req.sandbox) }
      default:
        return { id, ok: false, error: `unknown op ${JSON.stringify(req.op)}` }
    }
  } catch (e) {
    return { id, ok: false, error: (e as Error).message }
  }
}

/** Listens on `path` (0600; a stale socket or symlink there is replaced); tracks open connections in `sockets`. */
export function listenControlSocket(path: string, t: ControlTarget, sockets: Set<Socket>): Promise<Server> {
  try {
    const st = lstatSync(path)
    if (st.isSocket() || st.isSymbolicLink()) unlinkSync(path)
  } catch {
    // none
  }
  const server = createServer(sock => onControl(t, sock, sockets))
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    const old = process.umask(0o177)
    try {
      server.listen(path, () => {
        server.off('error', reject)
        try {
          chmodSync(path, 0o600)
        } catch {
          // umask made it 0600 already
        }
        resolve(server)
      })
    } finally {
      process.umask(old)
    }
  })
}

function onControl(t: ControlTarget, sock: Socket, sockets: Set<Socket>): void {
  sockets.add(sock)
  sock.on('close', () => sockets.delete(sock))
  sock.on('error', () => sock.destroy())
  sock.setEncoding('utf8')
  let buf = ''
  sock.on('data', (chunk: string) => {
    buf += chunk
    if (buf.length > MAX_CONTROL_LINE) {
      sock.end(JSON.stringify({ ok: false, error: 'request too large' }) + '\n')
      return
    }
    let nl: number
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      void handleControlLine(t, line).then(reply => {
        if (!sock.destroyed) sock.write(JSON.stringify(reply) + '\n')
      })
    }
  })
}
