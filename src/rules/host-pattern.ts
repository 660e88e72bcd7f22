/**
 * THE host-pattern rule: one parser and one matcher for every place a policy names hosts — the
 * gateway's decision (src/gateway/policy-engine.ts), policy validation and overlap checks
 * (src/policy/schema.ts) and the enterprise network_ceiling (src/config/enterprise.ts). Before this
 * module there were three matchers that disagreed (`api-[ab].example.com` was a character class in
 * one and "any character" in another): an enterprise ceiling could be bypassed by the difference.
 *
 * Semantics (OpenShell's host wildcards):
 *  - a pattern is a sequence of DNS labels, compared case-insensitively; one trailing dot is
 *    ignored on both the pattern and the host;
 *  - a label `*` matches exactly one whole label;
 *  - a label `**` matches one or more whole labels (`**.example.com` matches `a.example.com` and
 *    `a.b.example.com`, never `example.com`);
 *  - `*` inside a label (`*-api.example.com`, `api-*`) matches any run of characters within that
 *    one label, never a dot;
 *  - nothing else is a wildcard: `?`, `[...]`, `{a,b}`, `\` and every character outside letters,
 *    digits, `-`, `_` and `*` make the pattern INVALID (a validation error wherever a host pattern
 *    is accepted), so no component can read them differently from another.
 *
 * Cost: matching is label-by-label with the two-pointer wildcard algorithm (no regular
 * expressions, no recursion), O(labels(host) × labels(pattern)) label comparisons each linear in
 * the label; hosts are at most 253 bytes, so a decision costs microseconds whatever the input.
 */

/** A host as written in a policy, with its matcher. Immutable. */
export class HostPattern {
  /** Normalised text: lower case, no trailing dot. */
  readonly source: string
  private readonly labels: readonly string[]

  private constructor(source: string) {
    this.source = source
    this.labels = source.split('.')
  }

  /** Parses a pattern; undefined when `hostPatternProblem` reports a problem. */
  static parse(pattern: string): HostPattern | undefined {
    return hostPatternProblem(pattern) ? undefined : new HostPattern(normalizeHostPattern(pattern))
  }

  /** True when the pattern contains a wildcard. */
  get wildcard(): boolean {
    return this.source.includes('*')
  }

  /** The host itself when it contains no wildcard. */
  literal(): string | undefined {
    return this.wildcard ? undefined : this.source
  }

  /** `**` alone: matches every name (refused for endpoint hosts by the schema, allowed in selectors). */
  isUniversal(): boolean {
    return this.source === '**'
  }

  /** Whether the DNS name `host` (any case, optional trailing dot) matches. */
  matches(host: string): boolean {
    const h = normalizeHostPattern(host)
    if (h === '') return false
    const labels = h.split('.')
    if (labels.some(l => l === '')) return false
    return matchLabels(this.labels, labels)
  }

  /** Whether some concrete host matches both patterns (conservative only through label globs). */
  overlaps(other: HostPattern): boolean {
    return sequencesIntersect(this.labels, other.labels)
  }

  /**
   * Whether every host `inner` matches is matched by this pattern (subset). Conservative: when
   * coverage cannot be proven label by label it answers false — a ceiling refuses what it cannot
   * show it contains.
   */
  covers(inner: HostPattern): boolean {
    if (!inner.wildcard) return this.matches(inner.source)
    return sequenceCovers(this.labels, inner.labels)
  }
}

/** Lower case, one trailing dot removed. */
export function normalizeHostPattern(p: string): string {
  const lower = p.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

const LABEL_CHARS = /^[a-z0-9_*-]+$/

/**
 * Why `pattern` is not a valid host pattern, or undefined when it is. One sentence, suitable for a
 * one-line validation error. IP literals are not host patterns (callers check `isIP` first).
 */
export function hostPatternProblem(pattern: string): string | undefined {
  if (pattern.length === 0) return 'host pattern must not be empty'
  if (/\s/u.test(pattern)) return 'host pattern must not contain whitespace'
  const p = normalizeHostPattern(pattern)
  if (p.length === 0) return 'host pattern must not be empty'
  if (p.length > 253) return 'host pattern is longer than 253 characters'
  const bad = /[^a-z0-9_.*-]/.exec(p)
  if (bad) {
    const c = bad[0]
    const what = c === '{' || c === '}' ? 'brace alternates are not supported; list each host separately'
      : c === '[' || c === ']' ? 'character classes are not supported'
      : c === '?' ? "'?' is not a host wildcard"
      : 'hosts contain only letters, digits, "-", "_" and "."'
    return `host pattern '${pattern}' contains '${c}': ${what}; the only wildcards are '*' (within one DNS label) and '**' (one or more labels)`
  }
  const labels = p.split('.')
  for (const l of labels) {
    if (l === '') return `host pattern '${pattern}' has an empty DNS label`
    if (l.length > 63) return `host pattern '${pattern}' has a label longer than 63 characters`
    if (!LABEL_CHARS.test(l)) return `host pattern '${pattern}' has an invalid label '${l}'`
    if (l !== '**' && l.includes('**')) return `host pattern '${pattern}': recursive wildcard '**' must be an entire DNS label, got '${l}'`
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------------

/**
 * One label against a label glob whose only wildcard is `*` (any run within the label): the
 * two-pointer algorithm, O(|pattern| × |label|) worst case, no recursion.
 */
export function labelMatches(pattern: string, label: string): boolean {
  if (pattern === '*') return true
  if (!pattern.includes('*')) return pattern === label
  let p = 0
  let s = 0
  let starP = -1
  let starS = 0
  while (s < label.length) {
    if (p < pattern.length && pattern[p] === '*') {
      starP = p++
      starS = s
    } else if (p < pattern.length && pattern[p] === label[s]) {
      p++
      s++
    } else if (starP !== -1) {
      p = starP + 1
      s = ++starS
    } else {
      return false
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++
  return p === pattern.length
}

/**
 * Label sequence matching. A `**` label is "one label, then any number more": the same
 * two-pointer algorithm as labelMatches, over labels, with `**` as its star.
 */
function matchLabels(pat: readonly string[], host: readonly string[]): boolean {
  // Expand `**` into [ONE, STAR] so the star itself may match zero labels.
  const toks: (string | null)[] = []
  for (const l of pat) {
    if (l === '**') toks.push('*', null)
    else toks.push(l)
  }
  let p = 0
  let s = 0
  let starP = -1
  let starS = 0
  while (s < host.length) {
    const t = p < toks.length ? toks[p] : undefined
    if (t === null) {
      starP = p++
      starS = s
    } else if (t !== undefined && labelMatches(t, host[s]!)) {
      p++
      s++
    } else if (starP !== -1) {
      p = starP + 1
      s = ++starS
    } else {
      return false
    }
  }
  while (p < toks.length && toks[p] === null) p++
  return p === toks.length
}

/** Whether two label globs (`*` within the label only) can match a common label. Table DP. */
function labelsIntersect(a: string, b: string): boolean {
  if (a === '*' || b === '*') return true
  if (!a.includes('*')) return labelMatches(b, a)
  if (!b.includes('*')) return labelMatches(a, b)
  // reach[i][j]: prefixes a[..i] and b[..j] can produce a common string.
  const w = b.length + 1
  const reach = new Uint8Array((a.length + 1) * w)
  reach[0] = 1
  for (let i = 0; i <= a.length; i++) {
    for (let j = 0; j <= b.length; j++) {
      if (!reach[i * w + j]) continue
      const x = a[i]
      const y = b[j]
      if (x === '*') reach[(i + 1) * w + j] = 1
      if (y === '*') reach[i * w + j + 1] = 1
      if (x === '*' && y !== undefined) reach[i * w + j + 1] = 1
      if (y === '*' && x !== undefined) reach[(i + 1) * w + j] = 1
      if (x !== undefined && y !== undefined && x !== '*' && y !== '*' && x === y) reach[(i + 1) * w + j + 1] = 1
    }
  }
  return reach[a.length * w + b.length] === 1
}

/** Whether two label sequences (with `**` = one or more labels) can match a common host. */
function sequencesIntersect(a: readonly string[], b: readonly string[]): boolean {
  const w = b.length + 1
  const reach = new Uint8Array((a.length + 1) * w)
  reach[0] = 1
  for (let i = 0; i <= a.length; i++) {
    for (let j = 0; j <= b.length; j++) {
      if (!reach[i * w + j] || i === a.length || j === b.length) continue
      const ra = a[i] === '**'
      const rb = b[j] === '**'
      // Each step consumes one shared concrete label; a `**` may stay to consume more.
      if (!(ra || rb || labelsIntersect(a[i]!, b[j]!))) continue
      reach[(i + 1) * w + j + 1] = 1
      if (ra) reach[i * w + j + 1] = 1
      if (rb) reach[(i + 1) * w + j] = 1
    }
  }
  return reach[a.length * w + b.length] === 1
}

/** One user label covered by one outer label (neither is `**`, handled by the caller). */
function labelCovers(outer: string, inner: string): boolean {
  if (outer === inner) return true
  if (outer === '*') return true
  if (inner.includes('*')) return false // a wildcard label only by an identical one or `*`
  return labelMatches(outer, inner)
}

/** Subset over label sequences: every host `inner` matches, `outer` matches. Table DP, conservative. */
function sequenceCovers(outer: readonly string[], inner: readonly string[]): boolean {
  const w = inner.length + 1
  const reach = new Uint8Array((outer.length + 1) * w)
  reach[0] = 1
  for (let i = 0; i <= outer.length; i++) {
    for (let j = 0; j <= inner.length; j++) {
      if (!reach[i * w + j] || i === outer.length || j === inner.length) continue
      if (outer[i] === '**') {
        // `**` consumes one or more inner labels of any kind (an inner `**` included).
        reach[(i + 1) * w + j + 1] = 1
        reach[i * w + j + 1] = 1
      } else if (inner[j] !== '**' && labelCovers(outer[i]!, inner[j]!)) {
        reach[(i + 1) * w + j + 1] = 1
      }
    }
  }
  return reach[outer.length * w + inner.length] === 1
}
