import { constants, closeSync, copyFileSync, fsyncSync, futimesSync, lstatSync, mkdirSync, mkdtempSync, openSync, renameSync, rmSync, symlinkSync, unlinkSync, writeSync, type Stats } from 'node:fs'
import { dirname, join, posix, resolve } from 'node:path'
import type { Readable } from 'node:stream'
import tar from 'tar-stream'
import { PodshellError } from '../errors.js'
import type { Podman } from '../podman/podman.js'
import { copyOutStream, execStream, firstLine, type ExecStream } from './exec-stream.js'
import { DEFAULT_LIMITS, type TransferLimits } from './upload.js'

/**
 * `sandbox download`: a tar made in the sandbox, extracted on the host. The archive is made by
 * whatever answers to `tar` in the sandbox, so the agent controls every byte of it (its image's
 * PATH may hold a directory it can write): extractSafe treats it as hostile.
 *
 *   - names: no absolute paths, no `..` component, no NUL; `./` prefixes are dropped;
 *   - nothing is written through a symlink: every existing path component under DEST is checked
 *     with lstat and must be a real directory; files are opened O_EXCL|O_NOFOLLOW;
 *   - a symlink entry is created as a symlink; its target is stored, never resolved on the host;
 *   - a hard link must name a regular file extracted earlier from the same archive (it is copied);
 *     anything else is refused;
 *   - no device files, FIFOs or unknown entry types; no setuid/setgid/sticky bits (modes & 0777);
 *   - at most `maxFiles` entries and `maxBytes` bytes, checked from the header before a byte of
 *     the entry is written (a 4 GiB sparse file or a million empty files stop at the limit);
 *   - existing host files are not overwritten unless `force` (then the old entry is unlinked,
 *     never written through); an existing directory is merged into, never replaced.
 * A refusal stops the download with one line; what was extracted before it stays, inside DEST.
 */
export interface DownloadOptions extends TransferLimits {
  force: boolean
}

export class ExtractRefused extends PodshellError {}

const refuse = (what: string, hint = 'the archive from the sandbox is malformed or hostile; nothing was written outside the destination') =>
  new ExtractRefused(what, { hint, code: 'DOWNLOAD_REFUSED' })

/** Normalises an archive path; undefined for the archive's root entry (`.`, `./`). */
export function safeName(raw: string): string | undefined {
  if (raw.includes('\0')) throw refuse(`archive entry name contains NUL`)
  if (raw.startsWith('/')) throw refuse(`archive entry ${JSON.stringify(raw.slice(0, 200))} is an absolute path`)
  const parts = raw.split('/').filter(p => p !== '' && p !== '.')
  if (parts.includes('..')) throw refuse(`archive entry ${JSON.stringify(raw.slice(0, 200))} climbs out with ..`)
  if (parts.length === 0) return undefined
  const n = parts.join('/')
  if (n.length > 4096) throw refuse('archive entry name is longer than 4096 characters')
  return n
}

function lstatOrUndefined(p: string): Stats | undefined {
  try {
    return lstatSync(p)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
}

/**
 * Makes sure every directory from `dest` down to `rel` (exclusive of its last component when
 * `parentOnly`) exists as a real directory, creating what is missing. A symlink or a
 * non-directory on the way is refused.
 */
function ensureDirs(dest: string, rel: string, parentOnly: boolean, dirMode = 0o755, known?: Set<string>): void {
  const parts = rel.split('/')
  if (parentOnly) parts.pop()
  let cur = dest
  for (const p of parts) {
    cur = join(cur, p)
    // A directory checked (or made) earlier in this extraction is still one: only this process
    // writes under DEST meanwhile, and it never replaces a directory (clearTarget refuses).
    if (known?.has(cur)) continue
    const st = lstatOrUndefined(cur)
    if (!st) mkdirSync(cur, { mode: (dirMode & 0o777) | 0o700 })
    else if (st.isSymbolicLink()) throw refuse(`archive entry ${JSON.stringify(rel)} would be written through the symlink ${JSON.stringify(cur)}`)
    else if (!st.isDirectory()) throw refuse(`archive entry ${JSON.stringify(rel)} needs ${JSON.stringify(cur)} to be a directory, and it is not`)
    known?.add(cur)
  }
}

/** Clears the way for a new entry at `abs`: refused when something is there, unless force. */
function clearTarget(abs: string, rel: string, force: boolean): void {
  const st = lstatOrUndefined(abs)
  if (!st) return
  if (st.isDirectory()) throw refuse(`${abs} is a directory; the archive has a file there`, 'remove it or download elsewhere')
  if (!force) throw new PodshellError(`${abs} exists`, { hint: 'pass --force to overwrite, or download to another destination', code: 'DOWNLOAD_EXISTS' })
  unlinkSync(abs) // removes a symlink itself, never its target
  void rel
}

export interface ExtractResult {
  files: number
  bytes: number
}

/** Extracts a hostile tar stream into `dest` (an existing directory) under the rules above. */
export async function extractSafe(input: Readable, dest: string, o: DownloadOptions): Promise<ExtractResult> {
  const ex = tar.extract()
  let files = 0
  let bytes = 0
  const regular = new Set<string>()
  const dirs = new Set<string>()
  const done = new Promise<void>((resolveDone, reject) => {
    ex.on('finish', () => resolveDone())
    ex.on('error', reject)
  })
  input.on('error', e => ex.destroy(e))
  input.pipe(ex)
  try {
    for await (const entry of ex) {
      const h = entry.header
      const rel = safeName(h.name)
      if (++files > o.maxFiles) throw new PodshellError(`the download has more than ${o.maxFiles} entries`, { hint: 'download a smaller path, or raise the limit with --max-files', code: 'TRANSFER_LIMIT' })
      if (rel === undefined) {
        entry.resume()
        continue
      }
      const abs = join(dest, rel)
      const mode = (h.mode ?? 0o644) & 0o777
      switch (h.type) {
        case 'directory': {
          ensureDirs(dest, rel, false, mode, dirs)
          entry.resume()
          break
        }
        case 'file':
        case 'contiguous-file': {
          const size = h.size ?? 0
          if (bytes + size > o.maxBytes) throw new PodshellError(`the download is larger than ${o.maxBytes} bytes (entry ${JSON.stringify(rel)} alone is ${size})`, { hint: 'download a smaller path, or raise the limit with --max-bytes', code: 'TRANSFER_LIMIT' })
          ensureDirs(dest, rel, true, 0o755, dirs)
          const written = await writeEntry(entry as AsyncIterable<Buffer>, abs, rel, size, mode, h.mtime, o.force)
          bytes += written
          regular.add(rel)
          break
        }
        case 'symlink': {
          ensureDirs(dest, rel, true)
          clearTarget(abs, rel, o.force)
          // The target is stored as text; it is never resolved on the host, and later entries
          // cannot be written through it (ensureDirs refuses symlinks on the way).
          symlinkSync(h.linkname ?? '', abs)
          entry.resume()
          break
        }
        case 'link': {
          const target = safeName(h.linkname ?? '')
          if (target === undefined || !regular.has(target)) throw refuse(`archive entry ${JSON.stringify(rel)} is a hard link to ${JSON.stringify((h.linkname ?? '').slice(0, 200))}, not to a file extracted before it`)
          const st = linkEntry(dest, target, abs, rel, bytes, o)
          bytes += st.size
          regular.add(rel)
          entry.resume()
          break
        }
        default:
          throw refuse(`archive entry ${JSON.stringify(rel)} is a ${h.type ?? 'entry of an unknown type'}, which is not extracted`)
      }
    }
    await done
  } catch (e) {
    ex.destroy()
    input.destroy()
    throw e
  }
  return { files, bytes }
}

/**
 * What `sandbox_path` is, asked in the sandbox: 'dir', 'link' (a symlink that does not lead to a
 * directory), 'file' or 'missing'; then the directory relative paths are taken from (its home).
 */
const PROBE = 'cd "$HOME" 2>/dev/null || cd /; if [ -d "$1" ]; then echo dir; elif [ -L "$1" ]; then echo link; elif [ -e "$1" ]; then echo file; else echo missing; fi; pwd'
const TAR_FILE = 'cd "$HOME" 2>/dev/null || cd /; exec tar -c -f - -C "$1" -- "$2"'

/**
 * Downloads `sandboxPath` to `dest` (OpenShell's rules): a directory's contents go into `dest`
 * (created); a file goes to `dest`/<its name> when `dest` is a directory, else to `dest` itself.
 *
 * The archive of a directory or a file is made by `podman cp` (podman reads the agent container's
 * file system; nothing the agent installed runs): `tar -c` through `podman exec` was 3-4x slower,
 * its bytes crossing conmon's attach socket. A symlink named directly is archived as a symlink by
 * the sandbox's `tar` (podman cp would follow it). Either way the archive holds what the agent
 * wrote and is extracted as hostile (extractSafe).
 */
export async function download(podman: Podman, sandbox: string, sandboxPath: string, dest: string, o: DownloadOptions = { ...DEFAULT_LIMITS, force: false }): Promise<ExtractResult & { target: string }> {
  const probe = execStream(podman, sandbox, PROBE, [sandboxPath])
  probe.child.stdin.end()
  let probeOut = ''
  probe.child.stdout.on('data', (d: Buffer) => {
    if (probeOut.length < 8192) probeOut += d.toString('utf8')
  })
  const pr = await probe.done
  const [kind = '', cwd = ''] = probeOut.split('\n')
  if (pr.code !== 0 || !['dir', 'link', 'file', 'missing'].includes(kind)) {
    throw new PodshellError(`cannot look at ${sandboxPath} in sandbox ${sandbox}: ${firstLine(pr.stderr)}`, { hint: 'check that the sandbox is running (`podshell sandbox get`)', code: 'DOWNLOAD_FAILED' })
  }
  if (kind === 'missing') throw new PodshellError(`${sandboxPath} does not exist in sandbox ${sandbox}`, { hint: 'give a path that exists there (relative paths are under its home)', exitCode: 2, code: 'NOT_FOUND' })
  // The path podman cp reads: absolute, relative ones under the directory the probe answered from.
  if (!sandboxPath.startsWith('/') && !cwd.startsWith('/')) throw new PodshellError(`cannot resolve ${sandboxPath} in sandbox ${sandbox}: its home is not an absolute path`, { hint: 'give an absolute path', exitCode: 2, code: 'INVALID_INPUT' })
  const inSandbox = posix.resolve(cwd.startsWith('/') ? cwd : '/', sandboxPath)
  const destAbs = resolve(dest)
  if (kind === 'dir') {
    const st = lstatOrUndefined(destAbs)
    if (st && !st.isDirectory()) throw new PodshellError(`cannot extract directory ${sandboxPath} over ${dest}, which is not a directory`, { hint: 'give a directory as destination', exitCode: 2, code: 'INVALID_INPUT' })
    mkdirSync(destAbs, { recursive: true, mode: 0o755 })
    const r = await run(sandbox, copyOutStream(podman, sandbox, `${inSandbox.replace(/\/$/, '')}/.`), destAbs, o)
    return { ...r, target: destAbs }
  }
  // A file: into a staging dir next to its final place, then renamed (atomic on one file system).
  const name = posix.basename(sandboxPath.replace(/\/+$/, ''))
  const destSt = lstatOrUndefined(destAbs)
  const final = destSt?.isDirectory() ? join(destAbs, name) : destAbs
  mkdirSync(dirname(final), { recursive: true, mode: 0o755 })
  const finalSt = lstatOrUndefined(final)
  if (finalSt?.isDirectory()) throw new PodshellError(`cannot overwrite directory ${final} with a file`, { hint: 'give another destination', exitCode: 2, code: 'INVALID_INPUT' })
  if (finalSt && !o.force) throw new PodshellError(`${final} exists`, { hint: 'pass --force to overwrite, or download to another destination', code: 'DOWNLOAD_EXISTS' })
  const staging = mkdtempSync(join(dirname(final), '.podshell-download-'))
  try {
    const x = kind === 'link' ? execStream(podman, sandbox, TAR_FILE, [posix.dirname(sandboxPath) || '.', name]) : copyOutStream(podman, sandbox, inSandbox)
    const r = await run(sandbox, x, staging, { ...o, force: false })
    const got = join(staging, name)
    const st = lstatOrUndefined(got)
    if (!st || !(st.isFile() || st.isSymbolicLink())) throw refuse(`the archive for ${sandboxPath} does not hold the file ${name}`)
    if (finalSt) unlinkSync(final)
    renameSync(got, final)
    try {
      const fd = openSync(dirname(final), 'r')
      fsyncSync(fd)
      closeSync(fd)
    } catch {
      // durability of the rename is best effort
    }
    return { ...r, target: final }
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
}

async function run(sandbox: string, x: ExecStream, into: string, o: DownloadOptions): Promise<ExtractResult> {
  x.child.stdin.end()
  let result: ExtractResult
  try {
    result = await extractSafe(x.child.stdout, into, o)
  } catch (e) {
    x.child.kill('SIGKILL')
    await x.done
    throw e
  }
  const r = await x.done
  if (r.code !== 0) {
    throw new PodshellError(`reading the archive from sandbox ${sandbox} failed: ${firstLine(r.stderr)}`, { hint: 'check the path and its permissions inside the sandbox', code: 'DOWNLOAD_FAILED' })
  }
  return result
}

/**
 * Writes one regular file of the archive. O_EXCL|O_NOFOLLOW: never through a symlink, never over
 * anything; only when something is there does clearTarget decide (refuse, or unlink it with
 * --force) and the open is retried. Returns the bytes written (never more than the header's size).
 */
async function writeEntry(entry: AsyncIterable<Buffer>, abs: string, rel: string, size: number, mode: number, mtime: Date | undefined, force: boolean): Promise<number> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW
  let fd: number
  try {
    fd = openSync(abs, flags, mode)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    clearTarget(abs, rel, force)
    fd = openSync(abs, flags, mode)
  }
  let written = 0
  try {
    for await (const chunk of entry) {
      written += chunk.length
      if (written > size) throw refuse(`archive entry ${JSON.stringify(rel)} holds more data than its header says`)
      let off = 0
      while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off)
    }
    if (mtime) futimesSync(fd, mtime, mtime)
  } finally {
    closeSync(fd)
  }
  return written
}

/** A hard link entry, made as a copy of the regular file extracted before it; returns that file's stat. */
function linkEntry(dest: string, target: string, abs: string, rel: string, bytes: number, o: DownloadOptions): Stats {
  const src = join(dest, target)
  const st = lstatSync(src)
  if (!st.isFile()) throw refuse(`hard link ${JSON.stringify(rel)} points at something that is no longer a regular file`)
  if (bytes + st.size > o.maxBytes) throw new PodshellError(`the download is larger than ${o.maxBytes} bytes`, { hint: 'download a smaller path, or raise the limit with --max-bytes', code: 'TRANSFER_LIMIT' })
  ensureDirs(dest, rel, true)
  clearTarget(abs, rel, o.force)
  copyFileSync(src, abs, constants.COPYFILE_EXCL)
  return st
}
