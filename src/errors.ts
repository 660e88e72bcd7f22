/**
 * One error type for everything a user can get wrong or a host can lack.
 *
 * The CLI prints exactly one line: `podshell: <what failed>: <how to fix it>` and exits with
 * `exitCode`. Library callers get the same fields. Nothing else in podshell prints errors.
 */
export class PodshellError extends Error {
  readonly hint: string | undefined
  readonly exitCode: number
  /** Machine-readable code (UPPER_SNAKE), stable for scripts such as DevAIFlow. */
  readonly code: string

  constructor(message: string, opts: { hint?: string; exitCode?: number; code?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'PodshellError'
    this.hint = opts.hint
    this.exitCode = opts.exitCode ?? 1
    this.code = opts.code ?? 'ERROR'
  }

  /** The single line the CLI prints. Newlines inside messages are flattened so it stays one line. */
  oneLine(): string {
    const flat = (s: string) => s.replace(/\s*\n\s*/g, ' ').trim()
    return this.hint ? `${flat(this.message)}: ${flat(this.hint)}` : flat(this.message)
  }
}

export function isPodshellError(e: unknown): e is PodshellError {
  return e instanceof PodshellError
}
