import { describe, expect, it } from 'vitest'
import { connect as tlsConnect } from 'node:tls'
import { createServer, type Socket } from 'node:net'
import { MAX_HELLO_BYTES, peekClientHello } from '../../src/gateway/client-hello.js'

/** The real first flight of Node's TLS client (OpenSSL) for `servername`. */
async function realHello(servername: string | undefined): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const srv = createServer((s: Socket) => {
      const chunks: Buffer[] = []
      s.on('data', d => {
        chunks.push(d)
        const b = Buffer.concat(chunks)
        if (peekClientHello(b).kind !== 'need-more') {
          resolve(b)
          s.destroy()
          srv.close()
        }
      })
    })
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      const c = tlsConnect({ host: '127.0.0.1', port, ...(servername !== undefined ? { servername } : {}), rejectUnauthorized: false })
      c.on('error', () => undefined)
    })
    setTimeout(() => reject(new Error('no hello')), 5000).unref()
  })
}

/** A hand-built ClientHello record (TLS 1.2 framing) with the given extensions. */
function hello(exts: Buffer, recordSplit?: number): Buffer {
  const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32), Buffer.from([0]), Buffer.from([0, 2, 0x13, 0x01]), Buffer.from([1, 0]), u16(exts.length), exts])
  const hs = Buffer.concat([Buffer.from([1]), u24(body.length), body])
  if (recordSplit === undefined) return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(hs.length), hs])
  const a = hs.subarray(0, recordSplit)
  const b = hs.subarray(recordSplit)
  return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(a.length), a, Buffer.from([0x16, 3, 1]), u16(b.length), b])
}
const u16 = (n: number) => Buffer.from([n >> 8, n & 255])
const u24 = (n: number) => Buffer.from([n >> 16, (n >> 8) & 255, n & 255])
const sniExt = (name: string) => {
  const n = Buffer.from(name, 'latin1')
  const entry = Buffer.concat([Buffer.from([0]), u16(n.length), n])
  const list = Buffer.concat([u16(entry.length), entry])
  return Buffer.concat([u16(0), u16(list.length), list])
}

describe('peekClientHello (SNI of tunnelled TLS)', () => {
  it("reads the SNI of OpenSSL's real ClientHello, and its absence", async () => {
    expect(peekClientHello(await realHello('api.example.com'))).toEqual({ kind: 'hello', sni: 'api.example.com' })
    expect(peekClientHello(await realHello(undefined))).toEqual({ kind: 'hello', sni: undefined })
  })

  it('needs more bytes until the whole hello is there, at every prefix', async () => {
    const h = await realHello('front.example.com')
    for (let i = 0; i < h.length; i++) expect(peekClientHello(h.subarray(0, i)).kind).toBe('need-more')
  })

  it('joins a hello split across two records', () => {
    expect(peekClientHello(hello(sniExt('split.example'), 10))).toEqual({ kind: 'hello', sni: 'split.example' })
  })

  it('non-TLS first bytes (SSH, HTTP) are not TLS', () => {
    expect(peekClientHello(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')).kind).toBe('not-tls')
    expect(peekClientHello(Buffer.from('GET / HTTP/1.1\r\n')).kind).toBe('not-tls')
  })

  it('refuses hostile framing: two SNI extensions, two names, lengths that lie, a hello over 64 KiB', () => {
    expect(peekClientHello(hello(Buffer.concat([sniExt('a.test'), sniExt('b.test')]))).kind).toBe('invalid')
    const two = Buffer.concat([Buffer.from([0]), u16(6), Buffer.from('a.test'), Buffer.from([0]), u16(6), Buffer.from('b.test')])
    expect(peekClientHello(hello(Buffer.concat([u16(0), u16(two.length + 2), u16(two.length), two]))).kind).toBe('invalid')
    const lying = sniExt('x.test')
    lying.writeUInt16BE(200, 2)
    expect(peekClientHello(hello(lying)).kind).toBe('invalid')
    const huge = Buffer.concat([Buffer.from([0x16, 3, 1, 0x40, 0x00, 1]), u24(MAX_HELLO_BYTES + 10)])
    expect(peekClientHello(huge).kind).toBe('invalid')
    expect(peekClientHello(Buffer.concat([Buffer.from([0x16, 3, 1, 0, 5]), Buffer.from([2, 0, 0, 1, 0])])).kind).toBe('invalid')
  })

  it('a NUL or a 64 KiB name is returned as is (the caller refuses it by the SNI rule)', () => {
    expect(peekClientHello(hello(sniExt('a\0.test')))).toEqual({ kind: 'hello', sni: 'a\0.test' })
  })

  it('never throws on random or mutated input (10,000 cases, bounded)', async () => {
    const base = await realHello('fuzz.example.com')
    let seed = 42
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff)
    for (let i = 0; i < 10_000; i++) {
      const b = Buffer.from(base)
      for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256)
      const cut = b.subarray(0, Math.floor(rnd() * (b.length + 1)))
      const r = peekClientHello(i % 2 ? b : cut)
      expect(['need-more', 'not-tls', 'hello', 'invalid']).toContain(r.kind)
    }
  })
})
