/**
 * The exec server's framing (native/execd.c): type (1 byte), payload length (u32 big endian,
 * at most MAX_FRAME), payload. Pure; no I/O.
 */
export const MAX_FRAME = 1 << 20

export interface Frame {
  type: string
  payload: Buffer
}

export function encodeFrame(type: string, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload
  if (type.length !== 1) throw new Error('frame type is one character')
  if (p.length > MAX_FRAME) throw new Error(`frame payload over ${MAX_FRAME} bytes`)
  const h = Buffer.alloc(5)
  h.write(type, 0, 'latin1')
  h.writeUInt32BE(p.length, 1)
  return Buffer.concat([h, p])
}

/**
 * Incremental decoder: push() what arrived, get the complete frames. A frame announcing more than
 * MAX_FRAME bytes is an error (a flood is never buffered).
 */
export class FrameDecoder {
  private buf = Buffer.alloc(0)
  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk
    const out: Frame[] = []
    for (;;) {
      if (this.buf.length < 5) break
      const len = this.buf.readUInt32BE(1)
      if (len > MAX_FRAME) throw new Error(`exec server frame of ${len} bytes (at most ${MAX_FRAME})`)
      if (this.buf.length < 5 + len) break
      out.push({ type: String.fromCharCode(this.buf[0]!), payload: this.buf.subarray(5, 5 + len) })
      this.buf = this.buf.subarray(5 + len)
    }
    return out
  }
  get pending(): number {
    return this.buf.length
  }
}

/** The request: tty, rows, cols, cwd, argc, argv…, env K=V…, each NUL-terminated. */
export function encodeRequest(r: { tty: boolean; rows: number; cols: number; cwd?: string | undefined; command: readonly string[]; env: Readonly<Record<string, string>> }): Buffer {
  const fields = [r.tty ? '1' : '0', String(r.rows), String(r.cols), r.cwd ?? '', String(r.command.length), ...r.command, ...Object.entries(r.env).map(([k, v]) => `${k}=${v}`)]
  for (const f of fields) if (f.includes('\0')) throw new Error('exec request fields must not contain NUL')
  return encodeFrame('R', Buffer.from(fields.map(f => f + '\0').join('')))
}

/** Signal numbers the client forwards (Linux). */
export const SIGNAL_NUMBERS: Readonly<Record<string, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 }
