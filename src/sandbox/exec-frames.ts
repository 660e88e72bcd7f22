import { createHmac, timingSafeEqual } from 'node:crypto'

/**
 * The exec server's framing (native/execd.c): type (1 byte), payload length (u32 big endian, at
 * most MAX_FRAME), payload, tag (TAG_LEN bytes). Pure; no I/O.
 *
 * The tag is HMAC-SHA256(key, direction | seq u64 BE | id | server nonce | type | length | payload)
 * cut to 16 bytes: direction 'c' client->server, 's' server->client, each with its own sequence
 * from 0. The agent sees the FIFOs but never the key (native/execd.c says why), so a frame it
 * writes, replays, reorders or alters fails here or in the server.
 */
export const MAX_FRAME = 1 << 20
export const TAG_LEN = 16
/** Bytes of the sandbox's exec key (hex in sandboxes/NAME/execd.key and PODSHELL_EXECD_KEY). */
export const KEY_BYTES = 32

export interface Frame {
  type: string
  payload: Buffer
  tag: Buffer
}

export function frameTag(key: Buffer, dir: 'c' | 's', seq: bigint, id: string, nonce: Buffer, type: string, payload: Buffer): Buffer {
  const head = Buffer.alloc(9)
  head.write(dir, 0, 'latin1')
  head.writeBigUInt64BE(seq, 1)
  const t = Buffer.alloc(5)
  t.write(type, 0, 'latin1')
  t.writeUInt32BE(payload.length, 1)
  return createHmac('sha256', key).update(head).update(id, 'latin1').update(nonce).update(t).update(payload).digest().subarray(0, TAG_LEN)
}

function frameBytes(type: string, payload: Buffer, tag: Buffer): Buffer {
  if (type.length !== 1) throw new Error('frame type is one character')
  if (payload.length > MAX_FRAME) throw new Error(`frame payload over ${MAX_FRAME} bytes`)
  const h = Buffer.alloc(5)
  h.write(type, 0, 'latin1')
  h.writeUInt32BE(payload.length, 1)
  return Buffer.concat([h, payload, tag])
}

/**
 * Incremental decoder: push() what arrived, get the complete frames (tags not checked here). A
 * frame announcing more than MAX_FRAME bytes is an error (a flood is never buffered).
 */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0)
  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk
    const out: Frame[] = []
    for (;;) {
      if (this.buf.length < 5) break
      const len = this.buf.readUInt32BE(1)
      if (len > MAX_FRAME) throw new Error(`exec server frame of ${len} bytes (at most ${MAX_FRAME})`)
      if (this.buf.length < 5 + len + TAG_LEN) break
      out.push({ type: String.fromCharCode(this.buf[0]!), payload: this.buf.subarray(5, 5 + len), tag: this.buf.subarray(5 + len, 5 + len + TAG_LEN) })
      this.buf = this.buf.subarray(5 + len + TAG_LEN)
    }
    return out
  }
  get pending(): number {
    return this.buf.length
  }
}

/**
 * One session's authenticated channel, client side. The first server frame must be a valid H
 * (its payload is the server's nonce); every later frame is checked in order.
 */
export class ClientChannel {
  private nonce: Buffer | undefined
  private seqIn = 0n
  private seqOut = 0n
  constructor(
    private readonly key: Buffer,
    private readonly id: string,
  ) {
    if (key.length !== KEY_BYTES) throw new Error(`exec key must be ${KEY_BYTES} bytes`)
    if (!/^[0-9a-f]{32}$/.test(id)) throw new Error('exec session id must be 32 lowercase hex digits')
  }
  get ready(): boolean {
    return this.nonce !== undefined
  }
  /** Checks one server frame; throws when its tag is wrong or the hello is missing. */
  accept(f: Frame): Frame {
    const nonce = this.nonce ?? (f.type === 'H' && f.payload.length === 16 ? Buffer.from(f.payload) : undefined)
    if (!nonce) throw new Error('exec server did not start with its hello')
    const want = frameTag(this.key, 's', this.seqIn, this.id, nonce, f.type, f.payload)
    if (f.tag.length !== TAG_LEN || !timingSafeEqual(want, f.tag)) throw new Error('exec server frame failed authentication')
    this.seqIn++
    if (!this.nonce) {
      this.nonce = nonce
      return f
    }
    if (f.type === 'H') throw new Error('exec server sent a second hello')
    return f
  }
  /** A client frame, tagged. Only after the hello. */
  seal(type: string, payload: Buffer | string = Buffer.alloc(0)): Buffer {
    if (!this.nonce) throw new Error('exec channel: no hello yet')
    const p = typeof payload === 'string' ? Buffer.from(payload) : payload
    return frameBytes(type, p, frameTag(this.key, 'c', this.seqOut++, this.id, this.nonce, type, p))
  }
}

/** The request payload: tty, rows, cols, cwd, argc, argv…, env K=V…, each NUL-terminated. */
export function requestPayload(r: { tty: boolean; rows: number; cols: number; cwd?: string | undefined; command: readonly string[]; env: Readonly<Record<string, string>> }): Buffer {
  const fields = [r.tty ? '1' : '0', String(r.rows), String(r.cols), r.cwd ?? '', String(r.command.length), ...r.command, ...Object.entries(r.env).map(([k, v]) => `${k}=${v}`)]
  for (const f of fields) if (f.includes('\0')) throw new Error('exec request fields must not contain NUL')
  return Buffer.from(fields.map(f => f + '\0').join(''))
}

/** A server frame as native/execd.c writes it (tests; the server's side of the protocol). */
export function serverFrame(key: Buffer, id: string, nonce: Buffer, seq: bigint, type: string, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload
  return frameBytes(type, p, frameTag(key, 's', seq, id, nonce, type, p))
}

/** Signal numbers the client forwards (Linux). */
export const SIGNAL_NUMBERS: Readonly<Record<string, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 }
