import { existsSync, realpathSync } from 'node:fs'
import { PodshellError } from '../errors.js'

/**
 * Refuses a sandbox mount whose source contains the data dir (or is inside it): the data dir holds
 * the CA key and every sandbox's state. Paths are compared after resolving symlinks.
 */
export function refuseDataDirMount(source: string, data: string, what: string): void {
  const real = (p: string) => {
    try {
      return realpathSync(p)
    } catch {
      return p
    }
  }
  const src = real(source).replace(/\/+$/, '') || '/'
  const d = existsSync(data) ? real(data) : data
  const within = (a: string, b: string) => a === b || a.startsWith(b === '/' ? '/' : b + '/')
  if (within(d, src) || within(src, d)) {
    throw new PodshellError(`${what} ${source} would expose podshell's data dir ${d} (the gateway's CA key and every sandbox's state) inside the sandbox`, {
      hint: 'mount a directory that does not contain the data dir, or move the data dir (PODSHELL_HOME) out of it',
      exitCode: 2,
      code: 'INVALID_INPUT',
    })
  }
}
