/**
 * The upstream socket of a forwarded plain-HTTP request as Node's http client sees it. Node's
 * parser (llhttp, strict) reads every byte until it has parsed the response head; after that, for
 * a response whose length the parser has read from Content-Length, the body's remaining bytes are
 * taken raw (`takeBody`): counted against that length and written to the client from two reused
 * read buffers, like a CONNECT tunnel (tunnel.ts dial), instead of being copied by the parser into
 * a new buffer per chunk and pushed through two streams (that path costs ~5× the gateway CPU per
 * byte of a tunnel; bench/forward-cpu.mjs).
 *
 * Nothing about framing is decided here: the head, the status, whether a body follows (HEAD,
 * 1xx/204/304) and its length are the parser's. Only a response the parser left incomplete, with
 * a Content-Length and no Transfer-Encoding, is taken raw; any other (chunked, read-until-close)
 * stays with the parser. Bytes after the declared length are never relayed.
 */
import { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { ReadRelay } from '../proxy-io.js'

/** Bytes libuv may read per syscall into each of the two buffers (as a tunnel's RELAY_BUFFER). */
const READ_BUFFER = 256 * 1024

/** Where a raw body goes: `data` per chunk (its callback once the chunk's buffer is free again), `end` once complete. */
export interface BodySink {
  data(chunk: Buffer, written: () => void): void
  end(): void
}

export class HeadFeed implements ReadRelay {
  /** Give this to http.request's createConnection. */
  readonly stream: Duplex
  private up: Socket | undefined
  private readonly bufs = [Buffer.allocUnsafe(READ_BUFFER), Buffer.allocUnsafe(READ_BUFFER)]
  private next = 0
  private pushing = false
  private afterPush: (() => void) | undefined
  /** Raw phase: takes what was read (in a reused buffer); false pauses reading. */
  private raw: ((chunk: Buffer) => boolean) | undefined
  private rawEnded: (() => void) | undefined

  readonly onread = {
    buffer: (): Buffer => this.bufs[this.next]!,
    callback: (n: number, buf: Buffer): boolean => this.onRead(buf.subarray(0, n)),
  }

  constructor() {
    this.stream = new Duplex({
      read: () => {
        if (!this.raw) this.up?.resume()
      },
      write: (chunk: Buffer, _enc, cb) => {
        this.up!.write(chunk, cb)
      },
      final: cb => {
        this.up!.end()
        cb()
      },
      destroy: (err, cb) => {
        this.up?.destroy()
        cb(err)
      },
    })
  }

  /** The connected upstream socket (created with `onread`). */
  bind(up: Socket): void {
    this.up = up
    up.on('end', () => {
      if (this.rawEnded) this.rawEnded()
      else this.stream.push(null)
    })
    up.on('error', e => this.stream.destroy(e))
    up.on('close', () => this.stream.destroy())
  }

  arm(): void {}

  private onRead(chunk: Buffer): boolean {
    if (this.raw) return this.raw(chunk)
    // The parser's phase: it keeps what it is given, so it gets a copy.
    this.pushing = true
    const more = this.stream.push(Buffer.from(chunk))
    this.pushing = false
    const after = this.afterPush
    this.afterPush = undefined
    after?.()
    return this.raw ? true : more
  }

  /**
   * Called from the http client's 'response' handler: when the parser has emitted the head while
   * parsing a chunk this feed pushed, and the body is Content-Length framed and not yet complete,
   * the rest of the body goes to `sink` raw (after the part the parser already read). `onShort`
   * runs when the upstream ends before the declared length. Returns false (nothing changed, the
   * caller pipes `ures` as usual) for every other response.
   */
  takeBody(ures: IncomingMessage, sink: BodySink, onShort: () => void): boolean {
    if (!this.pushing || ures.complete) return false
    const cl = ures.headers['content-length']
    if (cl === undefined || ures.headers['transfer-encoding'] !== undefined || !/^\d{1,15}$/.test(cl)) return false
    let remaining = Number(cl)
    const done = () => {
      this.raw = () => false
      this.rawEnded = () => undefined
      sink.end()
    }
    // The parser is still inside the chunk that carried the head; the body bytes of that chunk
    // reach `ures` (and a body-less response is complete) before push() returns. They are taken
    // (and counted) once it has.
    this.afterPush = () => {
      let b: Buffer | null
      while ((b = ures.read() as Buffer | null) !== null) {
        remaining -= b.length
        sink.data(b, () => undefined)
      }
      // Complete already (a body that fit in that chunk, or none: HEAD, 204, 304, which the
      // parser knows by then): nothing is taken raw.
      if (ures.complete || remaining <= 0) return done()
      let inflight = 0
      let paused = false
      this.raw = chunk => {
        const n = Math.min(chunk.length, remaining)
        remaining -= n
        inflight++
        this.next ^= 1
        // Bytes past the declared length are dropped, never relayed.
        sink.data(n === chunk.length ? chunk : chunk.subarray(0, n), () => {
          inflight--
          if (paused && inflight < 2) {
            paused = false
            this.up?.resume()
          }
        })
        if (remaining === 0) {
          done()
          return false
        }
        if (inflight >= 2) {
          paused = true
          return false
        }
        return true
      }
      this.rawEnded = () => {
        if (remaining > 0) onShort()
      }
    }
    return true
  }
}
