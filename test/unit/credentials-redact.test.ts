import { describe, it, expect } from 'vitest'
import { Redactor, MASK, MIN_REDACT_LENGTH } from '../../src/credentials/redact.js'
import { PodshellError } from '../../src/errors.js'

const V = 'sk-ant-api03-Zq9+/x"y\\z'

describe('Redactor', () => {
  it('replaces every occurrence of a value with ***', () => {
    const r = new Redactor([V])
    expect(r.redact(`a ${V} b ${V}${V}`)).toBe(`a ${MASK} b ${MASK}${MASK}`)
  })

  it('replaces the JSON-escaped, percent-encoded and base64 forms too', () => {
    const r = new Redactor([V])
    const json = JSON.stringify({ token: V })
    expect(r.redact(json)).toBe(`{"token":"${MASK}"}`)
    expect(r.redact(`https://x/?t=${encodeURIComponent(V)}`)).toBe(`https://x/?t=${MASK}`)
    expect(r.redact(`Authorization: Basic ${Buffer.from(V).toString('base64')}`)).toBe(`Authorization: Basic ${MASK}`)
  })

  it('treats regex metacharacters in values literally', () => {
    const r = new Redactor(['a.b*c'])
    expect(r.redact('a.b*c axbbbc')).toBe(`${MASK} axbbbc`)
  })

  it('replaces a value that contains another value whole (longest first)', () => {
    const r = new Redactor(['token', 'token-extended'])
    expect(r.redact('x token-extended y token')).toBe(`x ${MASK} y ${MASK}`)
  })

  it(`does not redact values shorter than ${MIN_REDACT_LENGTH} characters, and counts them`, () => {
    const r = new Redactor(['abc', 'x'])
    expect(r.redact('abc x /abc/x')).toBe('abc x /abc/x')
    expect(r.shortValues).toBe(2)
    expect(r.size).toBe(0)
  })

  it('redacts a 4-character value', () => {
    expect(new Redactor(['abcd']).redact('xabcdx')).toBe(`x${MASK}x`)
  })

  it('is a no-op without values', () => {
    const r = new Redactor()
    expect(r.redact(`text ${V}`)).toBe(`text ${V}`)
  })

  it('redacts message and hint of a PodshellError, keeps code and exit code, drops the cause', () => {
    const r = new Redactor([V])
    const e = new PodshellError(`podman failed: bad ${V}`, { hint: `retry without ${V}`, code: 'X', exitCode: 3, cause: new Error(V) })
    const out = r.redactError(e) as PodshellError
    expect(out).toBeInstanceOf(PodshellError)
    expect(out.oneLine()).toBe(`podman failed: bad ${MASK}: retry without ${MASK}`)
    expect(out.code).toBe('X')
    expect(out.exitCode).toBe(3)
    expect(out.cause).toBeUndefined()
  })

  it('redacts plain errors and non-errors', () => {
    const r = new Redactor([V])
    expect((r.redactError(new TypeError(`x${V}`)) as Error).message).toBe(`x${MASK}`)
    expect(r.redactError(`s ${V}`)).toBe(`s ${MASK}`)
  })

  it('handles a 128 KiB value', () => {
    const big = 'q'.repeat(128 * 1024 - 10)
    const r = new Redactor([big])
    expect(r.redact(`<${big}>`)).toBe(`<${MASK}>`)
  })
})
