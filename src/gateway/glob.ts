/**
 * Glob patterns as OpenShell's policy engine interprets them, compiled once to anchored RegExps.
 *
 * Syntax: `*` any run of characters except the delimiter, `**` any run including the delimiter,
 * `?` one character except the delimiter, `[abc]` / `[a-z]` / `[!x]` classes, `{a,b}` alternatives,
 * `\x` a literal x. Everything else is literal.
 *
 * Delimiters (OpenShell's glob.match delimiter argument):
 *  - hosts use "." — `*` stays inside one DNS label, `**` spans labels (TLS wildcard semantics);
 *  - HTTP paths, query values and methods use none — OpenShell documents that `*` and `**` both
 *    cross "/" in paths ("do not rely on `*` to stop at `/`"), so podshell matches the same way.
 */
export interface Glob {
  readonly pattern: string
  readonly re: RegExp
  /** True when the pattern has no wildcard (exact comparison). */
  readonly literal: boolean
  test(value: string): boolean
}

const REGEX_SPECIAL = /[\\^$.*+?()[\]{}|/-]/g

export function compileGlob(pattern: string, delimiter: string | null, flags = ''): Glob {
  const delim = delimiter === null ? '' : escapeRe(delimiter)
  const notDelim = delimiter === null ? '[\\s\\S]' : `[^${delim}]`
  let re = ''
  let literal = true
  let depth = 0
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!
    if (c === '\\' && i + 1 < pattern.length) {
      re += escapeRe(pattern[++i]!)
    } else if (c === '*') {
      literal = false
      if (pattern[i + 1] === '*') {
        while (pattern[i + 1] === '*') i++
        re += '[\\s\\S]*'
      } else {
        re += `${notDelim}*`
      }
    } else if (c === '?') {
      literal = false
      re += notDelim
    } else if (c === '[') {
      const close = findClassEnd(pattern, i)
      if (close === -1) {
        re += '\\['
        continue
      }
      literal = false
      let body = pattern.slice(i + 1, close)
      let neg = false
      if (body.startsWith('!') || body.startsWith('^')) {
        neg = true
        body = body.slice(1)
      }
      const cls = body.replace(/[\\\]^[]/g, m => `\\${m}`)
      re += neg ? `(?:(?!${delim ? delim + '|' : ''}[${cls}])[\\s\\S])` : `[${cls}]`
      i = close
    } else if (c === '{') {
      literal = false
      depth++
      re += '(?:'
    } else if (c === '}' && depth > 0) {
      depth--
      re += ')'
    } else if (c === ',' && depth > 0) {
      re += '|'
    } else {
      re += escapeRe(c)
    }
  }
  // An unbalanced "{" is a pattern error in the policy: make it match nothing rather than guess.
  const compiled = depth === 0 ? new RegExp(`^(?:${re})$`, flags) : /(?!)/
  return { pattern, re: compiled, literal, test: (v: string) => compiled.test(v) }
}

function findClassEnd(p: string, start: number): number {
  let j = start + 1
  if (p[j] === '!' || p[j] === '^') j++
  if (p[j] === ']') j++
  for (; j < p.length; j++) if (p[j] === ']') return j
  return -1
}

function escapeRe(s: string): string {
  return s.replace(REGEX_SPECIAL, '\\$&')
}
