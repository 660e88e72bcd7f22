/**
 * THE glob rule for L7 request fields (HTTP paths, query values, methods) and binary paths:
 * compiled once, matched in time linear in the input for a given pattern — never a backtracking
 * regular expression.
 *
 * Why: the gateway used to compile globs to RegExps (`*` → `[\s\S]*`). A pattern with several
 * stars against a long path backtracks polynomially: a request path of `/repos` + `/issues` × 1,850
 * (11 KB) took the gateway 13 s, and the gateway is one event loop shared by every sandbox. Here a
 * pattern is a list of single-character tokens and stars, matched with the two-pointer wildcard
 * algorithm: on a mismatch it returns to the LAST star only, so the work is bounded by
 * |value| × |tokens| steps (each star restart advances the value position by one) whatever the
 * pattern and input. Brace alternatives are expanded at compile time into at most
 * MAX_ALTERNATIVES patterns.
 *
 * Syntax (OpenShell's request-field globs): `*` and `**` both match any run of characters including
 * "/" (OpenShell documents that `*` does not stop at "/" in paths), `?` one character, `[abc]`,
 * `[a-z]`, `[!x]` / `[^x]` one character from / not from a class, `{a,b}` alternatives, `\x` a
 * literal x. An unclosed `[` is a literal "[". Unbalanced braces or too many alternatives make the
 * glob INVALID (`invalid` says why): callers decide what invalid means (an allow rule that can
 * never match; a deny rule that matches everything — both fail closed).
 */

/** Longest request target the gateway inspects (OpenShell: inspected headers 16 KiB). */
export const MAX_INSPECTED_HEADER_BYTES = 16 * 1024

/** Most alternatives one glob may expand to through `{a,b}` (products of nested braces included). */
export const MAX_ALTERNATIVES = 64

type Tok =
  | { readonly t: 'lit'; readonly c: string }
  | { readonly t: 'any' }
  | { readonly t: 'class'; readonly neg: boolean; readonly ranges: readonly (readonly [number, number])[] }
  | { readonly t: 'star' }

export interface Glob {
  readonly pattern: string
  /** True when the pattern has no wildcard (exact comparison). */
  readonly literal: boolean
  /** Why the pattern cannot be used (unbalanced braces, too many alternatives); undefined = valid. */
  readonly invalid: string | undefined
  /** Whether `value` matches. An invalid glob matches nothing. */
  test(value: string): boolean
}

/** Counts matcher steps, for tests that prove the bound (no timing assertions). */
export const globStats = { steps: 0 }

export function compileGlob(pattern: string): Glob {
  const expanded = expandBraces(pattern)
  if (typeof expanded === 'string') {
    return { pattern, literal: false, invalid: expanded, test: () => false }
  }
  const alts = expanded.map(tokenize)
  const literal = alts.length === 1 && alts[0]!.every(t => t.t === 'lit')
  if (literal) {
    const text = alts[0]!.map(t => (t as { c: string }).c).join('')
    return { pattern, literal: true, invalid: undefined, test: v => v === text }
  }
  return { pattern, literal: false, invalid: undefined, test: v => alts.some(a => matchTokens(a, v)) }
}

/** Why a glob is unusable, or undefined (for validation). */
export function globProblem(pattern: string): string | undefined {
  const e = expandBraces(pattern)
  return typeof e === 'string' ? e : undefined
}

/**
 * Expands `{a,b}` (nested, escaped with `\`) into plain patterns. Returns a reason string when
 * braces are unbalanced or the expansion exceeds MAX_ALTERNATIVES.
 */
function expandBraces(p: string): string[] | string {
  // Parse into a tree of sequences and alternatives.
  type Node = string | Node[][] // string = literal chunk (escapes kept), Node[][] = alternatives of sequences
  let i = 0
  const parseSeq = (inBrace: boolean): Node[] | string => {
    const seq: Node[] = []
    let chunk = ''
    while (i < p.length) {
      const c = p[i]!
      if (c === '\\' && i + 1 < p.length) {
        chunk += c + p[i + 1]
        i += 2
      } else if (c === '[') {
        // Copy a class verbatim so braces and commas inside it are literal.
        const close = classEnd(p, i)
        if (close === -1) {
          chunk += c
          i++
        } else {
          chunk += p.slice(i, close + 1)
          i = close + 1
        }
      } else if (c === '{') {
        i++
        const alts: Node[][] = []
        for (;;) {
          const s = parseSeq(true)
          if (typeof s === 'string') return s
          alts.push(s)
          if (p[i] === ',') {
            i++
            continue
          }
          if (p[i] === '}') {
            i++
            break
          }
          return `glob pattern '${p}' has unclosed '{'`
        }
        if (chunk) seq.push(chunk)
        chunk = ''
        seq.push(alts)
      } else if (inBrace && (c === ',' || c === '}')) {
        break
      } else if (c === '}') {
        return `glob pattern '${p}' has unmatched '}'`
      } else {
        chunk += c
        i++
      }
    }
    if (chunk) seq.push(chunk)
    return seq
  }
  const tree = parseSeq(false)
  if (typeof tree === 'string') return tree
  const tooMany = `glob pattern '${p}' expands to more than ${MAX_ALTERNATIVES} alternatives`
  const expandSeq = (seq: Node[]): string[] | undefined => {
    let out = ['']
    for (const n of seq) {
      if (typeof n === 'string') {
        out = out.map(o => o + n)
        continue
      }
      const options: string[] = []
      for (const alt of n) {
        const e = expandSeq(alt)
        if (!e) return undefined
        options.push(...e)
        if (options.length > MAX_ALTERNATIVES) return undefined
      }
      const next: string[] = []
      for (const o of out) for (const x of options) next.push(o + x)
      if (next.length > MAX_ALTERNATIVES) return undefined
      out = next
    }
    return out
  }
  return expandSeq(tree) ?? tooMany
}

function classEnd(p: string, start: number): number {
  let j = start + 1
  if (p[j] === '!' || p[j] === '^') j++
  if (p[j] === ']') j++
  for (; j < p.length; j++) if (p[j] === ']') return j
  return -1
}

function tokenize(p: string): Tok[] {
  const out: Tok[] = []
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!
    if (c === '\\' && i + 1 < p.length) {
      out.push({ t: 'lit', c: p[++i]! })
    } else if (c === '*') {
      while (p[i + 1] === '*') i++
      if (out.at(-1)?.t !== 'star') out.push({ t: 'star' })
    } else if (c === '?') {
      out.push({ t: 'any' })
    } else if (c === '[' && classEnd(p, i) !== -1) {
      const close = classEnd(p, i)
      let j = i + 1
      let neg = false
      if (p[j] === '!' || p[j] === '^') {
        neg = true
        j++
      }
      const ranges: [number, number][] = []
      const body = [...p.slice(j, close)]
      for (let k = 0; k < body.length; k++) {
        const a = body[k]!.codePointAt(0)!
        if (body[k + 1] === '-' && k + 2 < body.length) {
          const b = body[k + 2]!.codePointAt(0)!
          ranges.push([Math.min(a, b), Math.max(a, b)])
          k += 2
        } else {
          ranges.push([a, a])
        }
      }
      out.push({ t: 'class', neg, ranges })
      i = close
    } else {
      out.push({ t: 'lit', c })
    }
  }
  return out
}

function tokMatches(t: Tok, ch: string): boolean {
  switch (t.t) {
    case 'lit':
      return t.c === ch
    case 'any':
      return true
    case 'class': {
      const code = ch.codePointAt(0)!
      const hit = t.ranges.some(([a, b]) => code >= a && code <= b)
      return t.neg ? !hit : hit
    }
    case 'star':
      return false
  }
}

/**
 * The two-pointer wildcard match. Invariant for the bound: `starS` only grows, and between two
 * increments of it `s` advances at most |toks| times, so steps ≤ (|v| + 1) × (|toks| + 1).
 * Works on UTF-16 code units; classes compare code points of BMP characters (paths are ASCII
 * after percent-decoding of reserved bytes anyway).
 */
function matchTokens(toks: readonly Tok[], v: string): boolean {
  let p = 0
  let s = 0
  let starP = -1
  let starS = 0
  let steps = 0
  while (s < v.length) {
    steps++
    const t = toks[p]
    if (t !== undefined && t.t === 'star') {
      starP = p++
      starS = s
    } else if (t !== undefined && tokMatches(t, v[s]!)) {
      p++
      s++
    } else if (starP !== -1) {
      p = starP + 1
      s = ++starS
    } else {
      globStats.steps += steps
      return false
    }
  }
  while (p < toks.length && toks[p]!.t === 'star') p++
  globStats.steps += steps
  return p === toks.length
}
