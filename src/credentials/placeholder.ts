import { randomInt } from 'node:crypto'

/**
 * Placeholder credentials (issue 12): what the agent's environment holds instead of a provider's
 * real value. A placeholder keeps the value's SHAPE so SDKs that check a token's format before any
 * I/O (`ghp_`, `sk-ant-`, `xoxb-`) accept it: the same length and the same leading prefix, the rest
 * random per sandbox and per credential. The gateway swaps the real value in on the provider's own
 * endpoints only (src/gateway/credential-substitution.ts).
 *
 * The prefix: the leading letters/digits up to and including the first `_` or `-` (`ghp_`, `xoxb-`,
 * `sk-`), extended by further all-lowercase-letter segments (`sk-ant-`, `github_pat_`), at most
 * MAX_PREFIX characters, and only while at least MIN_RANDOM characters stay random. A value without
 * a separator keeps no prefix. The prefix is the only part of the real value the agent sees.
 */
export const MAX_PREFIX = 16
export const MIN_RANDOM = 16
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

/** The part of `value` a placeholder keeps ('' when none). */
export function credentialPrefix(value: string): string {
  const first = /^[A-Za-z0-9]+[_-]/.exec(value)
  if (!first) return ''
  let prefix = first[0]
  const more = /^[a-z]+[_-]/
  for (let m = more.exec(value.slice(prefix.length)); m && prefix.length + m[0].length <= MAX_PREFIX; m = more.exec(value.slice(prefix.length))) prefix += m[0]
  if (prefix.length > MAX_PREFIX || value.length - prefix.length < MIN_RANDOM) return ''
  return prefix
}

/**
 * A placeholder for `value`: same length, same prefix, the rest drawn from [A-Za-z0-9] with a CSPRNG.
 * Never equal to the value, and never equal to any of `taken` (other placeholders of the sandbox).
 * `random` is injectable for tests.
 */
export function makePlaceholder(value: string, taken: ReadonlySet<string> = new Set(), random: (n: number) => number = randomInt): string {
  const prefix = credentialPrefix(value)
  const n = Math.max(value.length - prefix.length, 0)
  for (let attempt = 0; attempt < 100; attempt++) {
    let rest = ''
    for (let i = 0; i < n; i++) rest += ALPHABET[random(ALPHABET.length)]
    const p = prefix + rest
    if (p !== value && !taken.has(p) && p.length >= 8) return p
    if (n < 8) break
  }
  // Too short to randomise usefully: a fixed-shape fallback that is still unique per call.
  let rest = ''
  for (let i = 0; i < 24; i++) rest += ALPHABET[random(ALPHABET.length)]
  return `${prefix}${rest}`
}
