import { randomBytes } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'
import { substituteBody, MAX_BODY_REWRITE_BYTES, type HeldCredential } from '../credential-substitution.js'

/**
 * `websocket_credential_rewrite` (issue 12, OpenShell's key): placeholders in the client→server
 * text messages of an upgraded connection are substituted like request bodies. Written here because
 * `ws` is not a dependency and its parser is internal (Receiver expects to own the socket); RFC 6455
 * framing for one direction is small:
 *
 *   byte 0: FIN | RSV1-3 | opcode   byte 1: MASK | len7   [len16 | len64]   [mask key ×4]   payload
 *
 * Rules (OpenShell's websocket relay, crates/openshell-supervisor-network/src/l7/websocket.rs):
 * - A text message (opcode 1 + continuations until FIN) is buffered unmasked up to 256 KiB (the
 *   body limit); larger = close 1009. It is then put under the request rule: every placeholder in it
 *   bound and held → all replaced and the message sent as ONE re-masked frame; otherwise close 1008
 *   (credential endpoint mismatch) to both sides, nothing of the message forwarded.
 * - Binary and control frames pass as they are (OpenShell does not inspect binary messages);
 *   control frames may arrive between the fragments of a text message (RFC 6455 5.4) and are
 *   forwarded at once.
 * - Client frames must be masked and RSV bits clear (the relay strips Sec-WebSocket-Extensions
 *   from the upgrade request, so no extension such as permessage-deflate is negotiated); anything
 *   else, an unknown opcode, a fragmented or oversized control frame, or a continuation without a
 *   message = close 1002.
 */

export interface WsFrame {
  readonly fin: boolean
  readonly rsv: number
  readonly opcode: number
  readonly masked: boolean
  /** Unmasked payload. */
  readonly payload: Buffer
  /** The frame's bytes as received (header + masked payload). */
  readonly raw: Buffer
}

export class WsProtocolError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message)
  }
}

/**
 * Incremental frame parser: push bytes, take whole frames. A frame whose declared payload is over
 * `maxPayload` is refused from its header (close 1009) before its payload is buffered.
 */
export class WsFrameReader {
  private buf: Buffer = Buffer.alloc(0)
  constructor(private readonly maxPayload: number) {}

  push(chunk: Buffer): WsFrame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    const out: WsFrame[] = []
    for (;;) {
      const f = this.next()
      if (!f) return out
      out.push(f)
    }
  }

  private next(): WsFrame | undefined {
    const b = this.buf
    if (b.length < 2) return undefined
    const fin = (b[0]! & 0x80) !== 0
    const rsv = (b[0]! & 0x70) >> 4
    const opcode = b[0]! & 0x0f
    const masked = (b[1]! & 0x80) !== 0
    let len = b[1]! & 0x7f
    let off = 2
    if (len === 126) {
      if (b.length < 4) return undefined
      len = b.readUInt16BE(2)
      off = 4
    } else if (len === 127) {
      if (b.length < 10) return undefined
      const big = b.readBigUInt64BE(2)
      if (big > BigInt(this.maxPayload)) throw new WsProtocolError(`frame of ${big} bytes is over the ${this.maxPayload}-byte limit`, 1009)
      len = Number(big)
      off = 10
    }
    if (len > this.maxPayload) throw new WsProtocolError(`frame of ${len} bytes is over the ${this.maxPayload}-byte limit`, 1009)
    const maskAt = off
    if (masked) off += 4
    if (b.length < off + len) return undefined
    const payload = Buffer.from(b.subarray(off, off + len))
    if (masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= b[maskAt + (i & 3)]!
    const raw = b.subarray(0, off + len)
    this.buf = b.subarray(off + len)
    return { fin, rsv, opcode, masked, payload, raw }
  }
}

/** One frame as a client sends it (masked with a fresh key) or as a server sends it (unmasked). */
export function encodeFrame(opcode: number, payload: Buffer, mask: boolean, fin = true): Buffer {
  const len = payload.length
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8
  const head = Buffer.alloc(2 + ext + (mask ? 4 : 0))
  head[0] = (fin ? 0x80 : 0) | opcode
  head[1] = (mask ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127)
  if (ext === 2) head.writeUInt16BE(len, 2)
  else if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2)
  if (!mask) return Buffer.concat([head, payload])
  const key = randomBytes(4)
  key.copy(head, 2 + ext)
  const body = Buffer.from(payload)
  for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!
  return Buffer.concat([head, body])
}

/** A close frame with `code` and a short reason. */
export function closeFrame(code: number, reason: string, mask: boolean): Buffer {
  const p = Buffer.alloc(2 + Buffer.byteLength(reason))
  p.writeUInt16BE(code, 0)
  p.write(reason, 2)
  return encodeFrame(0x8, p, mask)
}

export interface WsRewriteOptions {
  /** The sandbox's placeholders and held values, read at each message (rotation applies at once). */
  credentials(): readonly HeldCredential[]
  /** Whether the provider's binding covers this connection's host, port and path. */
  bound(provider: string): boolean
  /**
   * The stream stops: close frames with `code` go to both sides and the connection ends. `reason`
   * is the audit line. Called once.
   */
  violation(code: number, reason: string): void
  /** A message had placeholders substituted (audit). */
  substituted?(providers: readonly string[]): void
  maxMessageBytes?: number
}

/**
 * The client→server side of an upgraded connection with `websocket_credential_rewrite`: a Transform
 * to pipe between the client and upstream sockets.
 */
export function wsClientRewriter(opts: WsRewriteOptions): Transform {
  const max = opts.maxMessageBytes ?? MAX_BODY_REWRITE_BYTES
  const reader = new WsFrameReader(max)
  let text: Buffer[] | undefined
  let textBytes = 0
  let inBinary = false
  let stopped = false
  const stop = (code: number, reason: string, cb: TransformCallback) => {
    stopped = true
    opts.violation(code, reason)
    cb()
  }
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (stopped) return cb()
      let frames: WsFrame[]
      try {
        frames = reader.push(chunk)
      } catch (e) {
        const err = e as WsProtocolError
        return stop(err.code ?? 1002, `websocket: ${err.message}`, cb)
      }
      for (const f of frames) {
        if (!f.masked) return stop(1002, 'websocket: unmasked client frame', cb)
        if (f.rsv !== 0) return stop(1002, 'websocket: RSV bits set without a negotiated extension', cb)
        if (f.opcode >= 0x8) {
          if (f.opcode > 0xa) return stop(1002, `websocket: unknown control opcode ${f.opcode}`, cb)
          if (!f.fin || f.payload.length > 125) return stop(1002, 'websocket: fragmented or oversized control frame', cb)
          this.push(f.raw)
          continue
        }
        if (f.opcode === 0x2 || (f.opcode === 0x0 && inBinary)) {
          if (text !== undefined) return stop(1002, 'websocket: new message inside a fragmented text message', cb)
          if (f.opcode === 0x2 && inBinary) return stop(1002, 'websocket: new message inside a fragmented binary message', cb)
          inBinary = !f.fin
          this.push(f.raw)
          continue
        }
        if (f.opcode === 0x1) {
          if (text !== undefined || inBinary) return stop(1002, 'websocket: new message inside a fragmented message', cb)
          text = []
          textBytes = 0
        } else if (f.opcode !== 0x0 || text === undefined) {
          return stop(1002, f.opcode === 0x0 ? 'websocket: continuation frame without a message' : `websocket: unknown opcode ${f.opcode}`, cb)
        }
        textBytes += f.payload.length
        if (textBytes > max) return stop(1009, `websocket: text message over ${max} bytes on an endpoint with websocket_credential_rewrite (buffer limit); not forwarded`, cb)
        text.push(f.payload)
        if (!f.fin) continue
        const message = Buffer.concat(text)
        text = undefined
        const r = substituteBody(message, opts.credentials(), p => opts.bound(p), 'websocket text')
        if (r.kind === 'mismatch') return stop(1008, `credential_endpoint_mismatch: placeholder of provider ${r.provider} (${r.variable}) in a websocket text message is not bound to this endpoint; connection closed, message not forwarded`, cb)
        if (r.kind === 'unavailable') return stop(1008, `credential_unavailable: the gateway holds no value for provider ${r.provider} (${r.variable}); websocket closed, message not forwarded`, cb)
        if (r.kind === 'substituted') opts.substituted?.(r.providers)
        this.push(encodeFrame(0x1, r.kind === 'substituted' ? r.body : message, true))
      }
      cb()
    },
  })
}
