import { describe, it, expect } from 'vitest'
import { WsFrameReader, WsProtocolError, encodeFrame, closeFrame, wsClientRewriter } from '../../src/gateway/http/websocket-rewrite.js'
import type { HeldCredential } from '../../src/gateway/credential-substitution.js'

const P = 'ghp_PLACEHOLDER0000000000'
const V = 'ghp_realvalue111111111111'
const creds: HeldCredential[] = [{ provider: 'gh', variable: 'GITHUB_TOKEN', placeholder: P, value: V }]

/** Runs `input` through a rewriter and returns the upstream bytes parsed back into frames. */
async function rewrite(input: Buffer[], o: { bound?: boolean; max?: number; values?: HeldCredential[] } = {}) {
  const violations: { code: number; reason: string }[] = []
  const used: string[][] = []
  const t = wsClientRewriter({
    credentials: () => o.values ?? creds,
    bound: () => o.bound ?? true,
    violation: (code, reason) => violations.push({ code, reason }),
    substituted: p => used.push([...p]),
    maxMessageBytes: o.max,
  })
  const out: Buffer[] = []
  t.on('data', (d: Buffer) => out.push(d))
  for (const b of input) t.write(b)
  t.end()
  await new Promise(r => t.once('end', r))
  const frames = new WsFrameReader(1 << 24).push(Buffer.concat(out))
  return { frames, violations, used }
}

describe('WsFrameReader', () => {
  it('parses masked frames of the three length encodings, split at every byte', () => {
    const payloads = [Buffer.from('hi'), Buffer.alloc(300, 'x'), Buffer.alloc(70000, 'y')]
    const bytes = Buffer.concat(payloads.map(p => encodeFrame(0x1, p, true)))
    const r = new WsFrameReader(1 << 20)
    const got = []
    for (let i = 0; i < bytes.length; i += 7) got.push(...r.push(bytes.subarray(i, i + 7)))
    expect(got.map(f => [f.opcode, f.fin, f.masked, f.payload.length])).toEqual([
      [1, true, true, 2],
      [1, true, true, 300],
      [1, true, true, 70000],
    ])
    expect(got.map(f => f.payload.toString())).toEqual(payloads.map(p => p.toString()))
    expect(Buffer.concat(got.map(f => f.raw))).toEqual(bytes)
  })

  it('refuses a frame whose declared length is over the limit from its header (1009), 64-bit lengths included', () => {
    const head = Buffer.from([0x81, 0xff, 0, 0, 1, 0, 0, 0, 0, 0])
    expect(() => new WsFrameReader(1024).push(head)).toThrow(WsProtocolError)
    try {
      new WsFrameReader(1024).push(encodeFrame(0x1, Buffer.alloc(2000), true))
    } catch (e) {
      expect((e as WsProtocolError).code).toBe(1009)
    }
    expect.assertions(2)
  })

  it('closeFrame carries the code', () => {
    const [f] = new WsFrameReader(200).push(closeFrame(1008, 'x', false))
    expect(f!.opcode).toBe(8)
    expect(f!.masked).toBe(false)
    expect(f!.payload.readUInt16BE(0)).toBe(1008)
  })
})

describe('wsClientRewriter', () => {
  it('substitutes a bound placeholder in a fragmented text message; control frames between fragments pass first', async () => {
    const msg = Buffer.from(`{"token":"${P}","é":1}`)
    const input = [encodeFrame(0x1, msg.subarray(0, 10), true, false), encodeFrame(0x9, Buffer.from('p'), true), encodeFrame(0x0, msg.subarray(10), true)]
    const { frames, violations, used } = await rewrite(input)
    expect(violations).toEqual([])
    expect(frames.map(f => f.opcode)).toEqual([9, 1])
    expect(frames[1]!.masked).toBe(true)
    expect(frames[1]!.fin).toBe(true)
    expect(frames[1]!.payload.toString()).toBe(`{"token":"${V}","é":1}`)
    expect(used).toEqual([['gh/GITHUB_TOKEN']])
  })

  it('passes text without placeholders and binary messages (not inspected) through', async () => {
    const bin = encodeFrame(0x2, Buffer.from(P), true)
    const { frames, violations } = await rewrite([encodeFrame(0x1, Buffer.from('hello'), true), bin])
    expect(violations).toEqual([])
    expect(frames.map(f => [f.opcode, f.payload.toString()])).toEqual([
      [1, 'hello'],
      [2, P],
    ])
  })

  it('unbound placeholder → 1008, nothing of the message forwarded', async () => {
    const { frames, violations } = await rewrite([encodeFrame(0x1, Buffer.from(`x ${P}`), true)], { bound: false })
    expect(frames).toEqual([])
    expect(violations).toHaveLength(1)
    expect(violations[0]!.code).toBe(1008)
    expect(violations[0]!.reason).toMatch(/credential_endpoint_mismatch/)
  })

  it('placeholder without a held value (provider deleted) → 1008 credential_unavailable', async () => {
    const { frames, violations } = await rewrite([encodeFrame(0x1, Buffer.from(P), true)], { values: [{ ...creds[0]!, value: undefined }] })
    expect(frames).toEqual([])
    expect(violations.map(v => v.code)).toEqual([1008])
    expect(violations[0]!.reason).toMatch(/credential_unavailable/)
  })

  it('a text message over the limit across fragments → 1009, nothing forwarded', async () => {
    const { frames, violations } = await rewrite([encodeFrame(0x1, Buffer.alloc(600, 'a'), true, false), encodeFrame(0x0, Buffer.alloc(600, 'a'), true)], { max: 1000 })
    expect(frames).toEqual([])
    expect(violations.map(v => v.code)).toEqual([1009])
  })

  it.each([
    ['an unmasked frame', [encodeFrame(0x1, Buffer.from('x'), false)]],
    ['RSV1 set (an extension nobody negotiated)', [Buffer.from([0xc1, 0x80, 0, 0, 0, 0])]],
    ['a continuation without a message', [encodeFrame(0x0, Buffer.from('x'), true)]],
    ['a new text message inside a fragmented one', [encodeFrame(0x1, Buffer.from('a'), true, false), encodeFrame(0x1, Buffer.from('b'), true)]],
    ['a fragmented control frame', [encodeFrame(0x9, Buffer.from('a'), true, false)]],
    ['an unknown opcode', [encodeFrame(0x3, Buffer.from('a'), true)]],
  ])('%s → 1002', async (_what, input) => {
    const { violations } = await rewrite(input)
    expect(violations.map(v => v.code)).toEqual([1002])
  })

  it('stops after a violation: later frames are dropped', async () => {
    const { frames, violations } = await rewrite([encodeFrame(0x1, Buffer.from(P), true), encodeFrame(0x1, Buffer.from('later'), true)], { bound: false })
    expect(frames).toEqual([])
    expect(violations).toHaveLength(1)
  })
})
