import { lstatSync, readdirSync, readFileSync, readlinkSync, existsSync, createReadStream, type Stats } from 'node:fs'
import { basename, dirname, join, posix, resolve, relative, sep } from 'node:path'
import { pipeline } from 'node:stream/promises'
import ignore, { type Ignore } from 'ignore'
import tar from 'tar-stream'
import { PodshellError } from '../errors.js'
import type { Podman } from '../podman/podman.js'
import { execStream, firstLine } from './exec-stream.js'

/**
 * `sandbox upload` and `create --upload`: a local file or tree, streamed as a tar into the
 * sandbox (tar-stream on the host, the sandbox's own `tar -x` inside, as the agent).
 *
 * What goes in (planUpload, pure file-system reads):
 *   - `.gitignore` rules are honoured unless `gitIgnore: false`: every `.gitignore` in the tree
 *     (a deeper file overrides a shallower one, as git does), those of the enclosing repository
 *     between its root and the uploaded path, and `.git/info/exclude`; `.git` directories are
 *     never uploaded then (git does not track them either). A directory that is ignored is not
 *     entered, as in git.
 *   - symlinks are uploaded as symlinks, never followed (their targets are not read);
 *   - modes are kept without setuid/setgid/sticky; ownership is the agent's (the sandbox's `tar`
 *     runs as the agent and does not take owners from the archive);
 *   - FIFOs, sockets and devices are refused (one line naming the file), and so is a tree over
 *     the file-count or size limit: both before anything is sent.
 * Where it lands (OpenShell's rules): a directory goes to DEST/<its name>/… (`.` and `/` go
 * flat into DEST); a file to DEST/<its name>, or to DEST itself when DEST names a file (no
 * trailing `/`). DEST defaults to the sandbox's home; a relative DEST is under the home.
 * Nothing is half-written: the archive is extracted into a temporary directory inside DEST and
 * moved into place only when all of it arrived; on failure the temporary directory goes (and
 * DEST too, if the upload created it).
 */
export interface TransferLimits {
  maxFiles: number
  maxBytes: number
}

export const DEFAULT_LIMITS: TransferLimits = { maxFiles: 100_000, maxBytes: 2 * 1024 ** 3 }

export interface UploadEntry {
  /** Name in the archive (posix, relative). */
  name: string
  abs: string
  type: 'file' | 'directory' | 'symlink'
  mode: number
  size: number
  mtime: Date
  linkname?: string
}

export interface UploadPlan {
  entries: UploadEntry[]
  bytes: number
  /** Paths skipped because git ignores them (count). */
  ignored: number
  /** Filtering left nothing: the plan is unfiltered instead (OpenShell does the same). */
  filteredEmpty: boolean
}

interface Matcher {
  /** Directory the rules are relative to (absolute). */
  base: string
  ig: Ignore
}

/** Reads the ignore rules that apply at `dir` from its .gitignore; undefined when there is none. */
function readMatcher(base: string, file: string): Matcher | undefined {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
  return { base, ig: ignore().add(text) }
}

/** The enclosing git repository's root (a directory holding `.git`), if any. */
function repoRoot(start: string): string | undefined {
  for (let d = start; ; d = dirname(d)) {
    if (existsSync(join(d, '.git'))) return d
    if (dirname(d) === d) return undefined
  }
}

/** Deeper matchers override shallower ones, as git reads .gitignore files. */
function isIgnored(matchers: readonly Matcher[], abs: string, isDir: boolean): boolean {
  let ignored = false
  for (const m of matchers) {
    const rel = relative(m.base, abs).split(sep).join('/')
    if (!rel || rel.startsWith('..')) continue
    const r = m.ig.test(isDir ? rel + '/' : rel)
    if (r.ignored) ignored = true
    else if (r.unignored) ignored = false
  }
  return ignored
}

function kindOf(st: Stats): 'file' | 'directory' | 'symlink' | string {
  if (st.isFile()) return 'file'
  if (st.isDirectory()) return 'directory'
  if (st.isSymbolicLink()) return 'symlink'
  if (st.isFIFO()) return 'FIFO'
  if (st.isSocket()) return 'socket'
  return 'device file'
}

/**
 * Walks `local` and lists what to upload under `tarName` ('.' = the tree's contents at the top).
 * Throws a PodshellError for a missing path, a special file, or a tree over the limits.
 */
export function planUpload(local: string, o: { gitIgnore: boolean; tarName: string; limits: TransferLimits }): UploadPlan {
  const root = resolve(local)
  let st: Stats
  try {
    st = lstatSync(root)
  } catch {
    throw new PodshellError(`local path does not exist: ${local}`, { hint: 'give an existing file or directory', exitCode: 2, code: 'INVALID_INPUT' })
  }
  const plan = walk(root, st, o, o.gitIgnore)
  if (o.gitIgnore && plan.ignored > 0 && plan.entries.filter(e => e.type !== 'directory').length === 0 && st.isDirectory()) {
    return { ...walk(root, st, o, false), filteredEmpty: true }
  }
  return plan
}

function walk(root: string, st: Stats, o: { tarName: string; limits: TransferLimits }, gitIgnore: boolean): UploadPlan {
  const entries: UploadEntry[] = []
  let bytes = 0
  let ignored = 0
  const add = (abs: string, name: string, s: Stats) => {
    const kind = kindOf(s)
    if (kind !== 'file' && kind !== 'directory' && kind !== 'symlink') {
      throw new PodshellError(`cannot upload ${abs}: it is a ${kind}`, {
        hint: gitIgnore ? 'remove it, or list it in .gitignore' : 'remove it, or upload without --no-git-ignore and list it in .gitignore',
        exitCode: 2,
        code: 'INVALID_INPUT',
      })
    }
    if (entries.length + 1 > o.limits.maxFiles) {
      throw new PodshellError(`${root} has more than ${o.limits.maxFiles} files and directories`, { hint: 'upload a smaller tree, or raise the limit with --max-files', exitCode: 2, code: 'TRANSFER_LIMIT' })
    }
    const e: UploadEntry = { name, abs, type: kind, mode: s.mode & 0o777, size: kind === 'file' ? s.size : 0, mtime: s.mtime }
    if (kind === 'symlink') e.linkname = readlinkSync(abs)
    bytes += e.size
    if (bytes > o.limits.maxBytes) {
      throw new PodshellError(`${root} holds more than ${o.limits.maxBytes} bytes`, { hint: 'upload a smaller tree, or raise the limit with --max-bytes', exitCode: 2, code: 'TRANSFER_LIMIT' })
    }
    entries.push(e)
  }
  const top = o.tarName === '.' ? '' : o.tarName
  if (!st.isDirectory()) {
    add(root, top || basename(root), st)
    return { entries, bytes, ignored, filteredEmpty: false }
  }
  // Ignore rules that apply above the uploaded directory: the repository's, from its root down.
  const matchers: Matcher[] = []
  if (gitIgnore) {
    const repo = repoRoot(root)
    if (repo) {
      const ex = readMatcher(repo, join(repo, '.git', 'info', 'exclude'))
      if (ex) matchers.push(ex)
      const chain: string[] = []
      for (let d = dirname(root); d.startsWith(repo) && d.length >= repo.length; d = dirname(d)) {
        chain.unshift(d)
        if (d === repo) break
      }
      for (const d of chain) {
        const m = readMatcher(d, join(d, '.gitignore'))
        if (m) matchers.push(m)
      }
    }
  }
  if (top) add(root, top, st)
  const visit = (dir: string, name: string, inherited: Matcher[]) => {
    const here = gitIgnore ? readMatcher(dir, join(dir, '.gitignore')) : undefined
    const ms = here ? [...inherited, here] : inherited
    for (const child of readdirSync(dir).sort()) {
      const abs = join(dir, child)
      const s = lstatSync(abs)
      const isDir = s.isDirectory()
      if (gitIgnore && (child === '.git' || isIgnored(ms, abs, isDir))) {
        ignored++
        continue
      }
      const n = name ? `${name}/${child}` : child
      add(abs, n, s)
      if (isDir) visit(abs, n, ms)
    }
  }
  visit(root, top, matchers)
  return { entries, bytes, ignored, filteredEmpty: false }
}

/** Where the archive is extracted and under which top name, from OpenShell's rules. */
export function uploadTarget(local: string, dest: string | undefined, localIsDir: boolean): { dir: string; tarName: string } {
  const given = local.replace(/\/+$/, '')
  const last = given.split('/').pop() ?? ''
  if (!localIsDir && dest !== undefined && !dest.endsWith('/')) {
    const parent = posix.dirname(dest)
    if (parent !== '/') return { dir: parent, tarName: posix.basename(dest) }
  }
  if (localIsDir && (last === '' || last === '.' || last === '..')) return { dir: dest ?? '', tarName: '.' }
  return { dir: dest ?? '', tarName: basename(resolve(local)) }
}

/**
 * In the sandbox, as the agent: extract into a temporary directory inside DEST, then move (or,
 * when the name exists, merge with `cp -a`) each top-level entry into DEST. $1 = DEST ('' = home).
 */
const EXTRACT_SCRIPT = `set -e
cd "$HOME" 2>/dev/null || cd /
d=\${1:-.}
made=
if [ ! -d "$d" ]; then mkdir -p -- "$d"; made=1; fi
t=$(mktemp -d "$d/.podshell-upload.XXXXXX") || { [ -n "$made" ] && rmdir -- "$d" 2>/dev/null; exit 1; }
ok=
trap 'rm -rf -- "$t"; if [ -z "$ok" ] && [ -n "$made" ]; then rm -rf -- "$d"; fi' EXIT
tar -x -p -f - -C "$t" --no-same-owner
for e in "$t"/* "$t"/.[!.]* "$t"/..?*; do
  [ -e "$e" ] || [ -L "$e" ] || continue
  b=\${e##*/}
  if [ -e "$d/$b" ] || [ -L "$d/$b" ]; then cp -a -- "$e" "$d/"; else mv -- "$e" "$d/"; fi
done
ok=1
`

/** Streams the plan into the sandbox. Throws a one-line PodshellError when the sandbox side fails. */
export async function streamUpload(podman: Podman, sandbox: string, plan: UploadPlan, dir: string): Promise<void> {
  const x = execStream(podman, sandbox, EXTRACT_SCRIPT, [dir])
  const pack = tar.pack()
  const uid = process.getuid?.() ?? 0
  const gid = process.getgid?.() ?? 0
  const feed = (async () => {
    for (const e of plan.entries) {
      const header = { name: e.name, mode: e.mode, mtime: e.mtime, uid, gid, type: e.type, size: e.size, ...(e.linkname !== undefined ? { linkname: e.linkname } : {}) }
      if (e.type === 'file') {
        const sink = pack.entry(header)
        await pipeline(createReadStream(e.abs), sink)
      } else {
        await new Promise<void>((res, rej) => pack.entry(header, err => (err ? rej(err) : res())))
      }
    }
    pack.finalize()
  })()
  const sent = pipeline(pack, x.child.stdin).catch(() => undefined) // the exit code tells
  let feedError: unknown
  try {
    await feed
  } catch (e) {
    feedError = e
    pack.destroy()
    x.child.kill('SIGKILL')
  }
  await sent
  const r = await x.done
  if (feedError) {
    throw new PodshellError(`upload failed reading ${feedError instanceof Error ? feedError.message : String(feedError)}`, { hint: 'a file changed or vanished while it was read; retry', code: 'UPLOAD_FAILED' })
  }
  if (r.code !== 0) {
    throw new PodshellError(`upload into sandbox ${sandbox} failed: ${firstLine(r.stderr)}`, {
      hint: 'choose a destination the agent can write (its home, its workdir, /tmp); nothing was left behind',
      code: 'UPLOAD_FAILED',
    })
  }
}
