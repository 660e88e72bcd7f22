import { PodshellError } from '../errors.js'

/**
 * Replaces credential values podshell knows in this process with `***` in text it is about to
 * show (errors, podman's stderr, anything echoed). Built from the values the process itself read
 * (from the environment or flags at `provider create/update`); podshell never reads a value back
 * from Podman, so a process that handles no value has nothing to redact and needs nothing.
 *
 * Each value is matched in the forms in which it typically reaches text: as is, JSON-escaped
 * (a quoted value in a JSON error body), percent-encoded (a token in a URL) and base64 (a token
 * in a Basic or bearer header some tool prints). Longer forms are matched first, so a value that
 * contains another is replaced whole.
 *
 * Values shorter than MIN_REDACT_LENGTH are NOT redacted. A 1-3 character string occurs by chance
 * in almost any text ("abc" in a path, "1" in every number): replacing it everywhere would
 * mangle every message without protecting anything, because a value that short is guessable
 * anyway. `provider create` warns when a credential is that short (see `shortValues`).
 */
export const MIN_REDACT_LENGTH = 4
export const MASK = '***'

export class Redactor {
  private readonly forms = new Set<string>()
  private readonly short = new Set<string>()
  /** Forms, longest first (so a value containing another is replaced whole); built lazily. */
  private ordered: string[] | undefined

  constructor(values: Iterable<string> = []) {
    for (const v of values) this.add(v)
  }

  /** Adds a value (and its encoded forms). Returns this, for chaining. */
  add(value: string): this {
    if (value.length < MIN_REDACT_LENGTH) {
      if (value.length > 0) this.short.add(value)
      return this
    }
    const forms = [value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value), Buffer.from(value).toString('base64')]
    for (const f of forms) if (f.length >= MIN_REDACT_LENGTH) this.forms.add(f)
    this.ordered = undefined
    return this
  }

  /** How many values (with their forms) are redacted. */
  get size(): number {
    return this.forms.size
  }

  /** Values that were given but are too short to redact. Count only; never print them. */
  get shortValues(): number {
    return this.short.size
  }

  redact(text: string): string {
    if (this.forms.size === 0 || text.length === 0) return text
    // Plain string search, not one big RegExp: V8 refuses a pattern built from a 128 KiB value
    // ("Regular expression too large"), and literal search has no metacharacters to escape.
    this.ordered ??= [...this.forms].sort((a, b) => b.length - a.length)
    let out = text
    for (const f of this.ordered) if (out.includes(f)) out = out.split(f).join(MASK)
    return out
  }

  /**
   * The same error with every value redacted from its message and hint. The cause is dropped:
   * it can hold podman's raw stderr, which is what redaction is for.
   */
  redactError(e: unknown): unknown {
    if (this.forms.size === 0) return e
    if (e instanceof PodshellError) {
      return new PodshellError(this.redact(e.message), {
        hint: e.hint === undefined ? undefined : this.redact(e.hint),
        code: e.code,
        exitCode: e.exitCode,
      })
    }
    if (e instanceof Error) {
      const r = new Error(this.redact(e.message))
      r.name = e.name
      return r
    }
    return this.redact(String(e))
  }
}
