/**
 * The server name of a TLS ClientHello, read from the first bytes a client sends into a CONNECT
 * tunnel the gateway does not terminate (`tls: skip` and L4 endpoints). Node's TLS stack reads
 * SNI only on connections it terminates, so this is a small reader of RFC 8446 §4.1.2 / RFC 6066
 * §3 framing — bounded (at most `MAX_HELLO_BYTES` are ever buffered; every length is checked
 * against what is there), never throwing on hostile input, and unit-fuzzed
 * (test/unit/client-hello.test.ts).
 *
 * A ClientHello may span several TLS records (large post-quantum key shares): the handshake bytes
 * of consecutive handshake records are joined until the message is complete.
 */

/** More than any real ClientHello (Chrome's with an ML-KEM share is ~1.8 KB); larger is refused. */
export const MAX_HELLO_BYTES = 64 * 1024

export type HelloPeek =
  /** Too few bytes yet to decide; call again with more. */
  | { kind: 'need-more' }
  /** The first byte is not a TLS handshake record: not TLS (an L4 protocol such as SSH). */
  | { kind: 'not-tls' }
  /** A complete ClientHello; `sni` is its host_name, undefined when it has none. */
  | { kind: 'hello'; sni: string | undefined }
  /** TLS framing that no conforming client sends, or over the bound. */
  | { kind: 'invalid'; reason: string }

const HANDSHAKE = 0x16
const CLIENT_HELLO = 0x01
const EXT_SERVER_NAME = 0x0000
const HOST_NAME = 0x00

export function peekClientHello(buf: Buffer): HelloPeek {
  if (buf.length === 0) return { kind: 'need-more' }
  if (buf[0] !== HANDSHAKE) return { kind: 'not-tls' }
  // Join the handshake fragments of consecutive records.
  const parts: Buffer[] = []
  let have = 0
  let off = 0
  let need = -1 // total handshake message bytes (4 + length), once known
  while (need < 0 || have < need) {
    if (off + 5 > buf.length) return buf.length > MAX_HELLO_BYTES ? { kind: 'invalid', reason: 'ClientHello larger than 64 KiB' } : { kind: 'need-more' }
    if (buf[off] !== HANDSHAKE) return { kind: 'invalid', reason: 'ClientHello interrupted by a non-handshake record' }
    if (buf[off + 1] !== 0x03) return { kind: 'invalid', reason: 'unknown TLS record version' }
    const len = buf.readUInt16BE(off + 3)
    if (len === 0 || len > 16384 + 256) return { kind: 'invalid', reason: `TLS record length ${len} out of range` }
    if (off + 5 + len > buf.length) {
      // Incomplete record: judge the handshake header as soon as its 4 bytes are here.
      const early = need < 0 ? Buffer.concat([...parts, buf.subarray(off + 5)]) : undefined
      if (early && early.length >= 4) {
        if (early[0] !== CLIENT_HELLO) return { kind: 'invalid', reason: 'first handshake message is not a ClientHello' }
        if (4 + early.readUIntBE(1, 3) > MAX_HELLO_BYTES) return { kind: 'invalid', reason: 'ClientHello larger than 64 KiB' }
      }
      return off + 5 + len > MAX_HELLO_BYTES ? { kind: 'invalid', reason: 'ClientHello larger than 64 KiB' } : { kind: 'need-more' }
    }
    parts.push(buf.subarray(off + 5, off + 5 + len))
    have += len
    off += 5 + len
    if (need < 0 && have >= 4) {
      const hs = Buffer.concat(parts)
      if (hs[0] !== CLIENT_HELLO) return { kind: 'invalid', reason: 'first handshake message is not a ClientHello' }
      need = 4 + hs.readUIntBE(1, 3)
      if (need > MAX_HELLO_BYTES) return { kind: 'invalid', reason: 'ClientHello larger than 64 KiB' }
    }
  }
  const hello = Buffer.concat(parts).subarray(4, need)
  return parseHello(hello)
}

function parseHello(h: Buffer): HelloPeek {
  const bad = (reason: string): HelloPeek => ({ kind: 'invalid', reason: `malformed ClientHello: ${reason}` })
  let p = 2 + 32 // legacy_version, random
  if (p + 1 > h.length) return bad('truncated before session id')
  p += 1 + h[p]! // legacy_session_id
  if (p + 2 > h.length) return bad('truncated before cipher suites')
  p += 2 + h.readUInt16BE(p) // cipher_suites
  if (p + 1 > h.length) return bad('truncated before compression methods')
  p += 1 + h[p]! // legacy_compression_methods
  if (p === h.length) return { kind: 'hello', sni: undefined } // no extensions at all
  if (p + 2 > h.length) return bad('truncated extensions length')
  const end = p + 2 + h.readUInt16BE(p)
  if (end !== h.length) return bad('extensions length does not match the message')
  p += 2
  let sni: string | undefined
  let seen = false
  while (p < end) {
    if (p + 4 > end) return bad('truncated extension header')
    const type = h.readUInt16BE(p)
    const len = h.readUInt16BE(p + 2)
    const body = p + 4
    if (body + len > end) return bad('extension longer than the message')
    if (type === EXT_SERVER_NAME) {
      if (seen) return bad('two server_name extensions')
      seen = true
      if (len < 2 || h.readUInt16BE(body) !== len - 2) return bad('server_name list length')
      let q = body + 2
      while (q < body + len) {
        if (q + 3 > body + len) return bad('truncated server name entry')
        const nameType = h[q]!
        const nameLen = h.readUInt16BE(q + 1)
        if (q + 3 + nameLen > body + len) return bad('server name longer than its extension')
        if (nameType === HOST_NAME) {
          if (sni !== undefined) return bad('two host_name entries')
          if (nameLen === 0) return bad('empty host_name')
          sni = h.subarray(q + 3, q + 3 + nameLen).toString('latin1')
        }
        q += 3 + nameLen
      }
    }
    p = body + len
  }
  return { kind: 'hello', sni }
}
