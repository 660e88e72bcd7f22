/**
 * PODSHELL_TRACE=1: timing lines on stderr (`trace +123ms label`), for finding where a command
 * spends its time. Off by default; never on stdout.
 */
const start = performance.timeOrigin
const on = process.env.PODSHELL_TRACE === '1'

export function trace(label: string): void {
  if (on) process.stderr.write(`trace +${Math.round(performance.timeOrigin + performance.now() - start)}ms ${label}\n`)
}

export const tracing = on
