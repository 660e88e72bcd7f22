import { mkdirSync, writeFileSync, renameSync, rmSync, openSync, fsyncSync, closeSync, accessSync, existsSync, constants, readSync, readFileSync } from 'node:fs'
import { dirname, basename, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { PodshellError } from '../errors.js'

/**
 * Atomic write: temp file in the same directory, fsync, rename. A crash or a full disk leaves
 * either the old file or the new one, never half of one (podshell killed mid-write, ENOSPC, EROFS).
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  const dir = dirname(path)
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    writeFileSync(tmp, data, { mode })
    const fd = openSync(tmp, 'r')
    try { fsyncSync(fd) } finally { closeSync(fd) }
    renameSync(tmp, path)
  } catch (e) {
    rmSync(tmp, { force: true })
    throw fsError(`cannot write ${path}`, realCause(dir, e))
  }
}

/**
 * Node's recursive mkdir reports ENOENT when it cannot create a missing parent, whatever the
 * reason (measured on a read-only bind mount: ENOENT, not EROFS). The user needs the real one, so
 * for ENOENT the nearest existing ancestor is checked for writability and its error is used.
 */
function realCause(path: string, e: unknown): unknown {
  if ((e as NodeJS.ErrnoException)?.code !== 'ENOENT') return e
  let cur = path
  while (!existsSync(cur)) {
    const up = dirname(cur)
    if (up === cur) return e
    cur = up
  }
  try {
    accessSync(cur, constants.W_OK)
  } catch (why) {
    return why
  }
  return e
}

/** Turns an fs errno into a one-line PodshellError with a fix. */
export function fsError(what: string, e: unknown): PodshellError {
  const code = (e as NodeJS.ErrnoException)?.code
  const hint =
    code === 'ENOSPC' ? 'the filesystem is full; free space or set PODSHELL_HOME to another directory'
    : code === 'EROFS' ? 'the filesystem is read-only; set PODSHELL_HOME to a writable directory'
    : code === 'EACCES' || code === 'EPERM' ? 'permission denied; check the owner of the directory or set PODSHELL_HOME'
    : code === 'EDQUOT' ? 'disk quota exceeded; free space or set PODSHELL_HOME elsewhere'
    : `${(e as Error)?.message ?? String(e)}`
  return new PodshellError(`${what} (${code ?? 'error'})`, { hint, code: 'STATE_DIR' , cause: e })
}

export function mkdirp(path: string, mode = 0o700): void {
  try {
    mkdirSync(path, { recursive: true, mode })
  } catch (e) {
    throw fsError(`cannot create ${path}`, realCause(path, e))
  }
}

/**
 * Reads a descriptor to its end, at most `max` bytes (a FIFO or stdin as well as a file: no
 * stat-based size). Returns undefined when the input is larger than `max`; read errors are
 * rethrown as they come (EAGAIN is retried) for the caller to word.
 */
export function readFdBounded(fd: number, max: number): Buffer | undefined {
  const chunks: Buffer[] = []
  const buf = Buffer.alloc(64 * 1024)
  let total = 0
  for (;;) {
    let n: number
    try {
      n = readSync(fd, buf, 0, buf.length, null)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'EAGAIN') continue
      if (code === 'EOF') break
      throw e
    }
    if (n === 0) break
    total += n
    if (total > max) return undefined
    chunks.push(Buffer.from(buf.subarray(0, n)))
  }
  return Buffer.concat(chunks)
}

/** A file's text, or undefined when it does not exist; other errors as one-line PodshellErrors. */
export function readFileIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw fsError(`cannot read ${path}`, e)
  }
}
