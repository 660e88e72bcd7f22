/**
 * PODSHELL_TRACE=1: timing lines on stderr (`trace +123ms label`, from the process's start), for
 * finding where a command spends its time. Off by default; never on stdout. Off, it touches
 * nothing: the `performance` global alone loads perf_hooks (a dozen modules) on the fast exec path.
 */
const on = process.env.PODSHELL_TRACE === '1'

export function trace(label: string): void {
  if (on) process.stderr.write(`trace +${Math.round(performance.now())}ms ${label}\n`)
}

export const tracing = on
