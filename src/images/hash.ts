import { createHash } from 'node:crypto'
import { readFileSync, readdirSync, statSync, type Stats } from 'node:fs'
import { join, relative, sep } from 'node:path'
import { writeFileAtomic } from '../util/fs.js'

/**
 * Build inputs and their content hash. An image is rebuilt only when this hash changes, so it
 * covers everything that can change the image: the Containerfile text, every file of the build
 * context (path, permission bits, content), the build arguments and the base image's id.
 */

/** A file of a build context: where it goes (`dest`, relative, "/"-separated) and where it comes from. */
export interface ContextFile {
  dest: string
  src: string
}

/** A context file with what the hash needs. */
export interface HashedFile {
  dest: string
  mode: number
  sha256: string
}

export interface HashInputs {
  containerfile: string
  buildArgs: Readonly<Record<string, string>>
  baseImageId: string
  files: readonly HashedFile[]
}

/** Bumped when the hash layout changes, so old labels never match by accident. */
const HASH_FORMAT = 'podshell-image-input/1'

/** Pure: the same inputs in any order give the same hash; any changed byte, mode, arg or base gives another. */
export function computeInputHash(i: HashInputs): string {
  const h = createHash('sha256')
  h.update(`${HASH_FORMAT}\n`)
  h.update(`containerfile\0${sha256(i.containerfile)}\n`)
  for (const k of Object.keys(i.buildArgs).sort()) h.update(`arg\0${k}\0${i.buildArgs[k]}\n`)
  h.update(`base\0${i.baseImageId}\n`)
  h.update(filesDigest(i.files))
  return h.digest('hex')
}

/** Digest of a file list alone (the gateway's app hash: podshell + node, without the base). */
export function filesDigest(files: readonly HashedFile[]): string {
  const h = createHash('sha256')
  const sorted = [...files].sort((a, b) => (a.dest < b.dest ? -1 : a.dest > b.dest ? 1 : 0))
  for (const f of sorted) h.update(`file\0${f.dest}\0${(f.mode & 0o777).toString(8)}\0${f.sha256}\n`)
  return h.digest('hex')
}

/** The mode a context file gets in the image: 0755 if the source is executable by anyone, else 0644. */
export function contextMode(mode: number): number {
  return mode & 0o111 ? 0o755 : 0o644
}

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * All files under `dir` as context files below `destPrefix`, sorted, symlinks followed (podman
 * copies what a link points to). `skip` gets the path relative to `dir` ("/"-separated).
 */
export function walkDir(dir: string, destPrefix: string, skip: (rel: string, isDir: boolean) => boolean = () => false): ContextFile[] {
  const out: ContextFile[] = []
  const visit = (abs: string, depth: number) => {
    if (depth > 64) return
    for (const name of readdirSync(abs).sort()) {
      const p = join(abs, name)
      const rel = relative(dir, p).split(sep).join('/')
      const st = statSync(p)
      if (skip(rel, st.isDirectory())) continue
      if (st.isDirectory()) visit(p, depth + 1)
      else if (st.isFile()) out.push({ dest: destPrefix ? `${destPrefix}/${rel}` : rel, src: p })
    }
  }
  visit(dir, 0)
  return out
}

interface DigestEntry {
  size: number
  mtimeMs: number
  ino: number
  sha256: string
}

/**
 * Per-file content hashes cached by (size, mtime, inode), like git's index: checking whether the
 * gateway image is current then stats a few hundred files instead of reading the ~100 MB node
 * binary. A file whose stat changed is read again, so a stale entry can only cost time.
 */
export class DigestCache {
  private entries: Record<string, DigestEntry>
  private dirty = false
  private readonly touched = new Set<string>()

  constructor(private readonly file: string) {
    try {
      const parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown
      this.entries = parsed && typeof parsed === 'object' ? (parsed as Record<string, DigestEntry>) : {}
    } catch {
      this.entries = {}
    }
  }

  hashFile(path: string, st: Stats = statSync(path)): string {
    this.touched.add(path)
    const e = this.entries[path]
    if (e && e.size === st.size && e.mtimeMs === st.mtimeMs && e.ino === st.ino && typeof e.sha256 === 'string') return e.sha256
    const digest = sha256(readFileSync(path))
    this.entries[path] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, sha256: digest }
    this.dirty = true
    return digest
  }

  hashFiles(files: readonly ContextFile[]): HashedFile[] {
    return files.map(f => {
      const st = statSync(f.src)
      return { dest: f.dest, mode: contextMode(st.mode), sha256: this.hashFile(f.src, st) }
    })
  }

  save(): void {
    if (!this.dirty) return
    // Bounded: old checkouts' paths are dropped once the cache grows large.
    if (Object.keys(this.entries).length > 20_000) {
      this.entries = Object.fromEntries(Object.entries(this.entries).filter(([k]) => this.touched.has(k)))
    }
    try {
      writeFileAtomic(this.file, JSON.stringify(this.entries))
      this.dirty = false
    } catch {
      // A cache we cannot write only costs re-reading files next time.
    }
  }
}
