/** Socket-level helpers of the sandbox proxy: the relay buffer, response heads, JSON refusals, timeouts. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

export function hostHeaderCount(req: IncomingMessage): number {
  let n = 0
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === 'host') n++
  return n
}

/** Bytes libuv may read per syscall on a relaying upstream socket (two such buffers per tunnel). */
const RELAY_BUFFER = 256 * 1024

/**
 * The upstream→client half of a tunnel without per-chunk allocation or copy (see dial()). Until
 * `arm()`, reads are queued as copies (a server that speaks first must not overtake the CONNECT
 * reply); after it they are written from the two alternating buffers.
 */
/** Reads of an upstream socket into buffers its owner provides (net.connect `onread`), bound once connected. */
export interface ReadRelay {
  readonly onread: { buffer: () => Buffer; callback: (n: number, buf: Buffer) => boolean }
  bind(s: Socket): void
  arm(): void
}

export function relayInto(sink: Socket): ReadRelay {
  const bufs = [Buffer.allocUnsafe(RELAY_BUFFER), Buffer.allocUnsafe(RELAY_BUFFER)]
  let next = 0
  let inflight = 0
  let paused = false
  let armed = false
  let early: Buffer[] = []
  let src: Socket | undefined
  const resume = () => {
    inflight--
    if (paused && inflight < 2) {
      paused = false
      src?.resume()
    }
  }
  return {
    onread: {
      buffer: () => bufs[next]!,
      callback: (n: number, buf: Buffer) => {
        if (!armed) {
          early.push(Buffer.from(buf.subarray(0, n)))
          return true
        }
        if (sink.destroyed) return false
        inflight++
        next ^= 1
        sink.write(buf.subarray(0, n), resume)
        if (inflight >= 2) {
          paused = true
          return false
        }
        return true
      },
    },
    bind(s: Socket) {
      src = s
    },
    arm() {
      armed = true
      for (const b of early) sink.write(b)
      early = []
    },
  }
}

/** A response head re-serialised from Node's parsed response (status line + the given raw header list). */
export function responseHead(res: IncomingMessage, raw: readonly string[]): string {
  const lines = [`HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}`]
  for (let i = 0; i < raw.length; i += 2) lines.push(`${raw[i]}: ${raw[i + 1]}`)
  return lines.join('\r\n') + '\r\n\r\n'
}

/** A JSON answer on a raw client socket (CONNECT, upgrades), then the connection closes. */
export function endJson(client: Socket, status: number, text: string, body: Record<string, unknown>): void {
  const json = JSON.stringify(body)
  client.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`)
}

export function sendJson(res: ServerResponse, status: number, text: string, body: Record<string, unknown>): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const json = JSON.stringify(body)
  // Denials close the connection: the request body (if any) is never read, so keeping the
  // connection would leave the client's body bytes to be parsed as the next request.
  res.writeHead(status, text, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(json)), Connection: 'close' })
  res.end(json)
}

export function withTimeout<T>(p: Promise<T>, ms: number, msg: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(msg)), ms)
    p.then(
      v => {
        clearTimeout(t)
        resolve(v)
      },
      e => {
        clearTimeout(t)
        reject(e as Error)
      },
    )
  })
}
