/** Reading raw HTTP/1.1 response bytes in tests that speak to the gateway over a socket. */

/** The status code of the first response in `out` (0: none). */
export const statusOf = (out: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0)

/** Decodes a chunked body at the start of `s`: the body and what follows the last chunk. */
export function dechunk(s: string): { body: string; rest: string } {
  let body = ''
  let i = 0
  for (;;) {
    const e = s.indexOf('\r\n', i)
    if (e === -1) return { body, rest: '' }
    const n = parseInt(s.slice(i, e), 16)
    i = e + 2
    if (n === 0) return { body, rest: s.slice(i + 2) }
    body += s.slice(i, i + n)
    i += n + 2
  }
}
