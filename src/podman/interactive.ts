import { childProcess } from '../util/lazy-builtins.js'
import { PodshellError } from '../errors.js'

/**
 * Spawning podman as a transparent foreground child. Kept free of heavy imports: `sandbox exec`
 * loads only this (src/cli/fast-exec.ts), so its cost over `podman exec` stays small.
 */
/**
 * Where interrupts come from. Only the CLI layer holds the process: it passes `process` (which has
 * this shape); library code never installs process signal handlers itself.
 */
export interface SignalSource {
  on(sig: NodeJS.Signals, handler: () => void): unknown
  off(sig: NodeJS.Signals, handler: () => void): unknown
}

export interface InteractiveOptions {
  /** Source of SIGINT, SIGTERM and SIGHUP to relay; absent: none are relayed. */
  signals?: SignalSource | undefined
  /** Called for each relayed signal (default: pass it to podman). */
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
    const child = childProcess().spawn(file, args, { stdio: 'inherit', ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) })
    const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
    const handlers = sigs.map(sig => {
      const h = () => {
        if (opts.onSignal) opts.onSignal(sig)
        else child.kill(sig)
      }
      opts.signals?.on(sig, h)
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
      for (const [sig, h] of handlers) opts.signals?.off(sig, h)
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
