/**
 * The upstream socket of a forwarded plain-HTTP request (and of a TLS-inspected request's pooled
 * upstream connection: tls-terminate.ts, `bindStream`) as Node's http client sees it, fed one
 * response head at a time. The socket is read into reused buffers (`onread`);
 * the bytes are held here until the end of a head (the first CRLF CRLF, at most MAX_HEAD bytes),
 * and Node's parser (llhttp, strict) is given exactly that head and nothing after it. The parser
 * then decides (its events, not the timing of its internals):
 *  - `information` (1xx): the next head is fed the same way;
 *  - `response`: `takeBody` looks at the parsed head. Only a body the parser framed by one
 *    Content-Length (no Transfer-Encoding; not HEAD, not 1xx/204/304) is relayed raw: exactly that
 *    many bytes from what is held and then from the socket's reads, written to the client from the
 *    reused buffers like a CONNECT tunnel (tunnel.ts dial), instead of being copied by the parser
 *    into a new buffer per chunk and pushed through two streams (~5x the gateway CPU per byte of a
 *    tunnel; bench/forward-cpu.mjs). Bytes after the declared length are never relayed.
 *    Every other response (chunked, read-until-close, body-less) gets the held bytes and all later
 *    reads through the parser, as a plain socket would.
 *
 * Nothing about framing is decided here: the head, the status, whether a body follows and its
 * length are the parser's. This module only finds where a head ends, and a head with a bare LF
 * (which the strict parser refuses anyway) goes to the parser whole with everything after it, so
 * the parser can never have read a head that ends elsewhere than where the raw count starts.
 */
import { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { ReadRelay } from '../proxy-io.js'

/** Bytes libuv may read per syscall into each of the two buffers (as a tunnel's RELAY_BUFFER). */
const READ_BUFFER = 256 * 1024
/** The longest response head looked for (Node's default maxHeaderSize); past it the parser decides (and refuses). */
export const MAX_HEAD = 16 * 1024
const EMPTY = Buffer.alloc(0)
const CRLFCRLF = Buffer.from('\r\n\r\n')

/** Where a raw body goes: `data` per chunk (its callback once the chunk's buffer is free again), `end` once complete. */
export interface BodySink {
  data(chunk: Buffer, written: () => void): void
  end(): void
}

/** True when a LF in `head` is not preceded by CR (a line end the strict parser refuses). */
function bareLf(head: Buffer): boolean {
  for (let i = head.indexOf(10); i !== -1; i = head.indexOf(10, i + 1)) if (i === 0 || head[i - 1] !== 13) return true
  return false
}

/** A response the parser knows has no body (HEAD, 1xx, 204, 304). */
function bodyless(method: string, ures: IncomingMessage): boolean {
  const s = ures.statusCode ?? 0
  return method === 'HEAD' || s < 200 || s === 204 || s === 304
}

/**
 * Whether a parsed response's body may be relayed raw: one Content-Length, no Transfer-Encoding,
 * and a status and method that carry a body. Returns the length, or undefined.
 */
export function rawBodyLength(method: string, ures: IncomingMessage): number | undefined {
  if (bodyless(method, ures)) return undefined
  let cl: string | undefined
  for (let i = 0; i < ures.rawHeaders.length; i += 2) {
    const k = ures.rawHeaders[i]!.toLowerCase()
    if (k === 'transfer-encoding') return undefined
    if (k === 'content-length') {
      if (cl !== undefined) return undefined
      cl = ures.rawHeaders[i + 1]!
    }
  }
  return cl !== undefined && /^\d{1,15}$/.test(cl) ? Number(cl) : undefined
}

type Phase = 'head' | 'verdict' | 'parser' | 'count' | 'raw' | 'done'

/**
 * A feed over a pooled keep-alive connection (the TLS-inspected path): a body shorter than
 * `rawMin` goes to the parser, exactly its declared length, and the next head is fed as before,
 * so the connection can be reused; a longer one is relayed raw and the connection is closed after
 * it (one handshake per download of at least `rawMin` bytes).
 */
export interface FeedOptions {
  rawMin: number
  /**
   * The reused read buffers (count x bytes); default 2 x 256 KiB, as a tunnel. A TLS socket reads
   * one record (<= 16 KiB) per callback, so it gets more, smaller ones.
   */
  readBuffers: number
  readBufferBytes: number
}

/** Bytes of owned (not reused) chunks written and not yet flushed before reading pauses. */
const OWNED_INFLIGHT = 512 * 1024

export class HeadFeed implements ReadRelay {
  /** Give this to http.request's createConnection. */
  readonly stream: Duplex
  private up: Socket | undefined
  /** The reused read buffers (`onread`), each allocated on first use. */
  private readonly bufs: Buffer[] = []
  private next = 0
  /**
   * head: looking for the end of a head; verdict: the parser has one head and nothing else, reading
   * paused; parser: every byte goes to the parser; raw: the body is relayed; done: nothing more is read.
   */
  private phase: Phase = 'head'
  /** Bytes read and given to no one yet (a copy). */
  private held: Buffer = EMPTY
  private upEnded = false
  private raw: ((chunk: Buffer, slot: number) => boolean) | undefined
  /** Which reused buffers the client side still holds (written, not yet flushed). */
  private busy: boolean[] = []
  /** The reused buffer the next read goes into, or -1: a fresh one (every reused one is busy). */
  private given = -1
  private rawEnded: (() => void) | undefined
  /** Chunks come from 'data' events (each a buffer of its own), not from the two reused buffers. */
  private owned = false
  /** Body bytes still owed to the parser in the `count` phase. */
  private counting = 0
  private readonly rawMin: number
  private readonly nbufs: number
  private readonly bufBytes: number

  readonly onread = {
    // A reused buffer is given only while nothing written from it is pending: a TLS socket may
    // deliver more records after its callback returned false (it decrypts what it already has).
    buffer: (): Buffer => {
      this.given = this.busy[this.next] === true ? -1 : this.next
      // Each allocated when first used: outside a raw body only the first is (a pooled connection holds one).
      return this.given === -1 ? Buffer.allocUnsafe(this.bufBytes) : (this.bufs[this.next] ??= Buffer.allocUnsafe(this.bufBytes))
    },
    callback: (n: number, buf: Buffer): boolean => this.onRead(buf.subarray(0, n), this.given),
  }

  constructor(opts: Partial<FeedOptions> = {}) {
    this.rawMin = opts.rawMin ?? 0
    this.nbufs = Math.max(2, opts.readBuffers ?? 2)
    this.bufBytes = opts.readBufferBytes ?? READ_BUFFER
    this.stream = new Duplex({
      read: () => {
        if (this.phase === 'parser' || this.phase === 'head' || this.phase === 'count') this.up?.resume()
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
    up.on('end', () => this.onEnd())
    up.on('error', e => this.stream.destroy(e))
    up.on('close', () => this.stream.destroy())
  }

  /**
   * A socket an http Agent made (created with `onread`, or read here through 'data' events);
   * `stream` then stands in for it towards the Agent (the socket methods an Agent and
   * ClientRequest call).
   */
  bindStream(up: Socket, reads: 'onread' | 'data' = 'data'): Duplex {
    this.bind(up)
    if (reads === 'data') {
      this.owned = true
      up.on('data', (c: Buffer) => {
        if (!this.onRead(c)) up.pause()
      })
    }
    up.on('timeout', () => this.stream.emit('timeout'))
    for (const ev of ['connect', 'secureConnect']) up.on(ev, (...a: unknown[]) => this.stream.emit(ev, ...a))
    const s = this.stream as Duplex & Record<string, unknown>
    Object.defineProperty(s, 'remoteAddress', { get: () => up.remoteAddress })
    Object.defineProperty(s, 'remotePort', { get: () => up.remotePort })
    Object.defineProperty(s, 'timeout', { get: () => up.timeout })
    Object.defineProperty(s, 'connecting', { get: () => up.connecting })
    s.setKeepAlive = (...a: Parameters<Socket['setKeepAlive']>) => (up.setKeepAlive(...a), s)
    s.setNoDelay = (...a: Parameters<Socket['setNoDelay']>) => (up.setNoDelay(...a), s)
    s.ref = () => (up.ref(), s)
    s.unref = () => (up.unref(), s)
    s.setTimeout = (ms: number, cb?: () => void) => {
      up.setTimeout(ms)
      if (cb) s.once('timeout', cb)
      return s
    }
    return this.stream
  }

  arm(): void {}

  private onRead(chunk: Buffer, slot = -1): boolean {
    switch (this.phase) {
      case 'raw':
        return this.raw!(chunk, slot)
      case 'parser':
        // The parser keeps what it is given, so it gets a copy (of a reused buffer).
        return this.stream.push(this.owned ? chunk : Buffer.from(chunk))
      case 'count':
        return this.count(this.owned ? chunk : Buffer.from(chunk))
      case 'done':
        return false
      default:
        this.held = this.held.length === 0 ? (this.owned ? chunk : Buffer.from(chunk)) : Buffer.concat([this.held, chunk])
        if (this.phase === 'head') this.feedHead()
        // feedHead may have moved on: reading goes on while a head is sought or the parser reads.
        return (this.phase as Phase) === 'head' || (this.phase as Phase) === 'parser'
    }
  }

  private onEnd(): void {
    this.upEnded = true
    if (this.phase === 'parser' || this.phase === 'count') this.stream.push(null)
    else if (this.phase === 'head') this.toParser()
    else if (this.phase === 'raw') this.rawEnded?.()
    // verdict: delivered once the parser's verdict is in; done: nothing to deliver.
  }

  /** Gives the parser the next complete head from what is held, or everything when there is none within MAX_HEAD. */
  private feedHead(): void {
    const end = this.held.indexOf(CRLFCRLF)
    if (end === -1 || end + 4 > MAX_HEAD) {
      if (this.held.length >= MAX_HEAD || end !== -1) this.toParser()
      return
    }
    const head = this.held.subarray(0, end + 4)
    if (bareLf(head)) return this.toParser()
    this.held = this.held.subarray(end + 4)
    this.phase = 'verdict'
    this.up?.pause()
    this.stream.push(head)
  }

  /** From now on the parser reads everything: what is held, then every read, then the end. */
  private toParser(): void {
    this.phase = 'parser'
    const held = this.held
    this.held = EMPTY
    if (held.length > 0) this.stream.push(held)
    if (this.upEnded) this.stream.push(null)
    else this.up?.resume()
  }

  /**
   * The http client's `information` event (a 1xx head): the next head is fed. Deferred: the parser
   * emits the event from inside its execute(), which must not be re-entered.
   */
  informational(): void {
    process.nextTick(() => {
      if (this.phase !== 'verdict') return
      this.phase = 'head'
      this.feedHead()
      if (this.phase === 'head') {
        if (this.upEnded) this.toParser()
        else this.up?.resume()
      }
    })
  }

  /**
   * Called from the http client's `response` handler. When the parser was given exactly this
   * response's head and the body is Content-Length framed (`rawBodyLength`), the body goes to
   * `sink` raw and true is returned; `onShort` runs when the upstream ends before the declared
   * length. Otherwise false: the parser gets everything from here on and the caller pipes `ures`.
   */
  takeBody(method: string, ures: IncomingMessage, sink: BodySink, onShort: () => void): boolean {
    if (this.phase !== 'verdict') return false
    const length = rawBodyLength(method, ures)
    // Deferred: the parser emits `response` from inside its execute(), which must not be re-entered.
    if (this.rawMin > 0 && (length !== undefined ? length < this.rawMin : bodyless(method, ures))) {
      // A pooled connection: the parser gets exactly the declared body (none for HEAD/204/304),
      // then the next head is fed again.
      process.nextTick(() => this.toCount(length ?? 0))
      return false
    }
    if (length === undefined) {
      process.nextTick(() => this.toParser())
      return false
    }
    this.phase = 'raw'
    process.nextTick(() => this.relay(length, sink, onShort))
    return true
  }

  private toCount(length: number): void {
    if (this.phase !== 'verdict') return
    this.phase = 'count'
    this.counting = length
    const held = this.held
    this.held = EMPTY
    if (this.count(held) && this.phase === 'count') {
      if (this.upEnded) this.stream.push(null)
      else this.up?.resume()
    }
  }

  /** Gives the parser the rest of a counted body; past its end, the feed looks for the next head. */
  private count(chunk: Buffer): boolean {
    const n = Math.min(chunk.length, this.counting)
    this.counting -= n
    const more = n > 0 ? this.stream.push(n === chunk.length ? chunk : chunk.subarray(0, n)) : true
    if (this.counting > 0) return more
    this.phase = 'head'
    if (n < chunk.length) {
      // Bytes after a complete response that nothing asked for yet: this connection is not
      // reused (once the parser has finished the response it has).
      this.phase = 'done'
      setImmediate(() => this.stream.destroy())
      return false
    }
    if (this.upEnded) this.toParser()
    return true
  }

  private relay(length: number, sink: BodySink, onShort: () => void): void {
    let remaining = length
    let inflight = 0
    let paused = false
    const limit = this.owned ? OWNED_INFLIGHT : this.nbufs
    const done = () => {
      this.phase = 'done'
      this.raw = undefined
      this.rawEnded = undefined
      this.held = EMPTY
      sink.end()
    }
    if (this.phase !== 'raw') return
    // What was read after the head (a copy of its own): up to the declared length.
    const held = this.held.subarray(0, Math.min(this.held.length, remaining))
    this.held = EMPTY
    if (held.length > 0) {
      remaining -= held.length
      sink.data(held, () => undefined)
    }
    if (remaining === 0) return done()
    this.raw = (chunk, slot) => {
      const n = Math.min(chunk.length, remaining)
      remaining -= n
      // In flight: reused buffers still held by the client side (reading pauses when all are;
      // a read that still comes then gets a fresh buffer), or bytes of owned chunks.
      const w = this.owned ? n : slot >= 0 ? 1 : 0
      inflight += w
      if (slot >= 0) {
        this.busy[slot] = true
        this.next = (slot + 1) % this.nbufs
      }
      // Bytes past the declared length are dropped, never relayed.
      sink.data(n === chunk.length ? chunk : chunk.subarray(0, n), () => {
        if (slot >= 0) this.busy[slot] = false
        inflight -= w
        if (paused && inflight < limit && this.phase === 'raw') {
          paused = false
          this.up?.resume()
        }
      })
      if (remaining === 0) {
        done()
        return false
      }
      if (inflight >= limit) {
        paused = true
        return false
      }
      return true
    }
    this.rawEnded = () => {
      this.phase = 'done'
      onShort()
    }
    if (this.upEnded) this.rawEnded()
    else this.up?.resume()
  }
}
