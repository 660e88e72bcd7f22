import { spawn } from 'node:child_process'
import { PodshellError } from '../errors.js'

/**
 * Spawning podman as a transparent foreground child. Kept free of heavy imports: `sandbox exec`
 * loads only this (src/cli/fast-exec.ts), so its cost over `podman exec` stays small.
 */
export interface InteractiveOptions {
  /** Called for SIGINT, SIGTERM and SIGHUP reaching podshell (default: pass them to podman). */
  onSignal?: (sig: NodeJS.Signals) => void
  timeoutMs?: number | undefined
  onTimeout?: () => void
  /** Extra environment for podman itself (values podman passes on for `--env NAME`). */
  env?: Record<string, string>
}

/**
 * The terminal (or pipes) are inherited, so podman itself handles the TTY, raw mode and window
 * resizes (SIGWINCH). Resolves with the child's exit code (128+n when it died of signal n; 124
 * after the timeout fired).
 */
export function spawnInteractive(file: string, args: readonly string[], opts: InteractiveOptions = {}): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, { stdio: 'inherit', ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) })
    const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
    const handlers = sigs.map(sig => {
      const h = () => {
        if (opts.onSignal) opts.onSignal(sig)
        else child.kill(sig)
      }
      process.on(sig, h)
      return [sig, h] as const
    })
    let timer: NodeJS.Timeout | undefined
    let timedOut = false
    if (opts.timeoutMs && opts.timeoutMs > 0) {
      timer = setTimeout(() => {
        timedOut = true
        opts.onTimeout?.()
      }, opts.timeoutMs)
    }
    const done = () => {
      for (const [sig, h] of handlers) process.off(sig, h)
      if (timer) clearTimeout(timer)
    }
    child.on('error', e => {
      done()
      reject(new PodshellError(`cannot start podman: ${e.message}`, { hint: 'run `podshell doctor`' }))
    })
    child.on('exit', (code, signal) => {
      done()
      if (timedOut) resolvePromise(124)
      else resolvePromise(code ?? (signal ? 128 + signalNumber(signal) : 1))
    })
  })
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 }
export function signalNumber(sig: string): number {
  return SIGNALS[sig] ?? 15
}
