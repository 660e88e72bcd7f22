/**
 * Canonical JSON: keys sorted at every level, `undefined` members left out (as JSON.stringify
 * does), `undefined` itself and array holes as `null`. The one serialisation behind the policy
 * hash (src/policy/document.ts), structural equality of rules in `policy update`
 * (src/policy/update.ts) and the enterprise ceiling's rule comparison (src/config/enterprise.ts):
 * two of them disagreeing would let a hash or a ceiling see two equal rules as different.
 */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null'
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  const o = v as Record<string, unknown>
  const keys = Object.keys(o)
    .filter(k => o[k] !== undefined)
    .sort()
  return `{${keys.map(k => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`
}
