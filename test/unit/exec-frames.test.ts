import { describe, it, expect } from 'vitest'
import { createHmac, randomBytes } from 'node:crypto'
import { ClientChannel, FrameDecoder, MAX_FRAME, TAG_LEN, frameTag, requestPayload, serverFrame } from '../../src/sandbox/exec-frames.js'

/** The exec server's framing and tags (src/sandbox/exec-frames.ts; the C side is native/execd.c). */
const key = randomBytes(32)
const id = randomBytes(16).toString('hex')
const nonce = randomBytes(16)

function opened(): ClientChannel {
  const ch = new ClientChannel(key, id)
  const [hello] = new FrameDecoder().push(serverFrame(key, id, nonce, 0n, 'H', nonce))
  ch.accept(hello!)
  return ch
}

describe('exec server frames', () => {
  it('the tag is HMAC-SHA256 over direction | seq | id | nonce | type | length | payload, cut to 16 bytes', () => {
    const p = Buffer.from('a')
    const seq = Buffer.alloc(8)
    seq.writeBigUInt64BE(5n)
    const len = Buffer.alloc(4)
    len.writeUInt32BE(1)
    const want = createHmac('sha256', key).update(Buffer.concat([Buffer.from('c'), seq, Buffer.from(id), nonce, Buffer.from('R'), len, p])).digest().subarray(0, 16)
    expect(frameTag(key, 'c', 5n, id, nonce, 'R', p).equals(want)).toBe(true)
    // A server frame's tag never verifies as a client's (no reflection).
    expect(frameTag(key, 's', 5n, id, nonce, 'R', p).equals(want)).toBe(false)
  })

  it('decodes frames split anywhere and refuses oversized lengths', () => {
    const bytes = Buffer.concat([serverFrame(key, id, nonce, 0n, 'H', nonce), serverFrame(key, id, nonce, 1n, 'O', 'hello')])
    const dec = new FrameDecoder()
    const got = []
    for (const b of bytes) got.push(...dec.push(Buffer.from([b])))
    expect(got.map(f => f.type)).toEqual(['H', 'O'])
    expect(got[1]!.payload.toString()).toBe('hello')
    const big = Buffer.alloc(5)
    big.write('O')
    big.writeUInt32BE(MAX_FRAME + 1, 1)
    expect(() => new FrameDecoder().push(big)).toThrow(/at most/)
  })

  it('accepts the server\'s frames in order and nothing else', () => {
    const ch = opened()
    const dec = new FrameDecoder()
    const [o1] = dec.push(serverFrame(key, id, nonce, 1n, 'O', 'a'))
    expect(ch.accept(o1!).payload.toString()).toBe('a')
    // Replayed (seq 1 again), reordered (seq 3 before 2), other session's id, other nonce, altered payload.
    expect(() => opened().accept(dec.push(serverFrame(key, id, nonce, 2n, 'O', 'x'))[0]!)).toThrow(/authentication/)
    const [replay] = dec.push(serverFrame(key, id, nonce, 1n, 'O', 'a'))
    expect(() => ch.accept(replay!)).toThrow(/authentication/)
  })

  it('rejects a hello without the key, from another session, or not first', () => {
    const other = randomBytes(32)
    for (const bytes of [
      serverFrame(other, id, nonce, 0n, 'H', nonce),
      serverFrame(key, randomBytes(16).toString('hex'), nonce, 0n, 'H', nonce),
      serverFrame(key, id, nonce, 0n, 'O', 'x'),
    ]) {
      const ch = new ClientChannel(key, id)
      expect(() => ch.accept(new FrameDecoder().push(bytes)[0]!)).toThrow()
      expect(ch.ready).toBe(false)
      expect(() => ch.seal('R', 'x')).toThrow(/no hello/)
    }
    const f = serverFrame(key, id, nonce, 1n, 'O', 'x')
    f[6] ^= 1
    expect(() => opened().accept(new FrameDecoder().push(f)[0]!)).toThrow(/authentication/)
  })

  it('seals client frames with increasing sequence numbers', () => {
    const ch = opened()
    const a = ch.seal('I', 'x')
    const b = ch.seal('I', 'x')
    expect(a.equals(b)).toBe(false)
    expect(a.subarray(a.length - TAG_LEN).equals(frameTag(key, 'c', 0n, id, nonce, 'I', Buffer.from('x')))).toBe(true)
    expect(b.subarray(b.length - TAG_LEN).equals(frameTag(key, 'c', 1n, id, nonce, 'I', Buffer.from('x')))).toBe(true)
  })

  it('request fields are NUL-separated and may not contain NUL', () => {
    expect(requestPayload({ tty: false, rows: 24, cols: 80, command: ['sh', '-c', 'x'], env: { A: 'b' } }).toString()).toBe('0\x0024\x0080\x00\x003\x00sh\x00-c\x00x\x00A=b\x00')
    expect(() => requestPayload({ tty: false, rows: 1, cols: 1, command: ['a\0b'], env: {} })).toThrow(/NUL/)
  })
})
